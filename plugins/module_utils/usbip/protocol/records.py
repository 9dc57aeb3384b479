# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The 312-byte device record and the 4-byte interface records after it.

OP_REP_DEVLIST sends each record followed by its interfaces; OP_REP_IMPORT
sends the record alone although ``bNumInterfaces`` keeps its real value.
Hence the ``with_interfaces`` switch rather than two record types.
"""

from __future__ import annotations

import struct

from ..device import Speed, UsbDevice, UsbInterface
from .errors import BadCount
from .fields import Cursor, decode_string, encode_string, pack, to_enum

PATH_SIZE = 256
BUSID_SIZE = 32

_DEVICE = struct.Struct(">%ds%dsIIIHHHBBBBBB" % (PATH_SIZE, BUSID_SIZE))
_INTERFACE = struct.Struct(">BBBx")


def encode_device(device: UsbDevice, with_interfaces: bool) -> bytes:
    """Encode one record; DEVLIST needs ``interfaces`` to match the count."""
    record = pack(
        _DEVICE,
        encode_string(device.path, PATH_SIZE, "path"),
        encode_string(device.busid, BUSID_SIZE, "busid"),
        device.busnum,
        device.devnum,
        to_enum(Speed, device.speed, "speed"),
        device.id_vendor,
        device.id_product,
        device.bcd_device,
        device.device_class,
        device.device_subclass,
        device.device_protocol,
        device.configuration_value,
        device.num_configurations,
        device.num_interfaces,
    )
    if not with_interfaces:
        return record
    if len(device.interfaces) != device.num_interfaces:
        raise BadCount(
            "%s: num_interfaces is %d but %d interfaces are given"
            % (device.busid, device.num_interfaces, len(device.interfaces))
        )
    return record + b"".join(
        pack(_INTERFACE, i.interface_class, i.interface_subclass, i.interface_protocol) for i in device.interfaces
    )


def read_device(cursor: Cursor, with_interfaces: bool) -> UsbDevice:
    """Read one record, and its interfaces for DEVLIST.

    The interface records' padding byte is not checked: nothing reads it,
    so a peer that leaves garbage there is still speaking the protocol.
    """
    raw = cursor.unpack(_DEVICE)
    path = decode_string(raw[0], "path")
    busid = decode_string(raw[1], "busid")
    speed = to_enum(Speed, raw[4], "speed")
    interfaces = ()
    if with_interfaces:
        interfaces = tuple(UsbInterface(*cursor.unpack(_INTERFACE)) for _index in range(raw[13]))
    return UsbDevice(path, busid, raw[2], raw[3], speed, *raw[5:], interfaces=interfaces)
