"""Byte-exact wire vectors, written by hand from the protocol tables.

Nothing here is produced by the codec under test: every field is spelt out
in hex (or as ASCII text plus explicit NUL padding) next to its meaning.
"""

import dataclasses

from usbip.device import Speed, UsbDevice, UsbInterface
from usbip.protocol import (
    CmdSubmit,
    CmdUnlink,
    DevlistReply,
    DevlistRequest,
    Direction,
    ImportReply,
    ImportRequest,
    IsoPacketDescriptor,
    RetSubmit,
    RetUnlink,
    Status,
)

# The layout of these literals mirrors the wire tables; keep the formatter off it.
# fmt: off

# ---------------------------------------------------------------- records

PATH = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"  # 45 characters
RECORD = (
    b"/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1" + b"\0" * 211  # path[256]
    + b"1-1" + b"\0" * 29  # busid[32]
    + bytes.fromhex(
        "00000001"  # busnum 1
        "00000002"  # devnum 2
        "00000003"  # speed: high
        "046d c52b"  # idVendor, idProduct
        "1211"  # bcdDevice
        "00 00 00"  # class, subclass, protocol
        "01 01 02"  # bConfigurationValue, bNumConfigurations, bNumInterfaces
    )
)
INTERFACES = bytes.fromhex("03 01 01 00" "03 00 00 00")
DEVICE_WITHOUT_INTERFACES = UsbDevice(
    path=PATH, busid="1-1", busnum=1, devnum=2, speed=Speed.HIGH,
    id_vendor=0x046D, id_product=0xC52B, bcd_device=0x1211,
    device_class=0, device_subclass=0, device_protocol=0,
    configuration_value=1, num_configurations=1, num_interfaces=2,
)
DEVICE = dataclasses.replace(DEVICE_WITHOUT_INTERFACES, interfaces=(UsbInterface(3, 1, 1), UsbInterface(3, 0, 0)))

# A device-mode (usbip-vudc) record: no interface records follow it.
VUDC_RECORD = (
    b"/sys/devices/platform/usbip-vudc.0" + b"\0" * 222
    + b"usbip-vudc.0" + b"\0" * 20
    + bytes.fromhex("00000000 00000000 00000002 1d6b 0104 0100 ef 02 01 01 01 00")
)
VUDC_DEVICE = UsbDevice(
    path="/sys/devices/platform/usbip-vudc.0", busid="usbip-vudc.0", busnum=0, devnum=0, speed=Speed.FULL,
    id_vendor=0x1D6B, id_product=0x0104, bcd_device=0x0100,
    device_class=0xEF, device_subclass=2, device_protocol=1,
    configuration_value=1, num_configurations=1, num_interfaces=0,
)

# ---------------------------------------------------------------- control

DEVLIST_REQUEST = bytes.fromhex("0111 8005 00000000")
IMPORT_REQUEST = bytes.fromhex("0111 8003 00000000") + b"1-1" + b"\0" * 29
DEVLIST_REPLY = bytes.fromhex("0111 0005 00000000" "00000001") + RECORD + INTERFACES
DEVLIST_REPLY_TWO = bytes.fromhex("0111 0005 00000000" "00000002") + RECORD + INTERFACES + VUDC_RECORD
DEVLIST_REPLY_EMPTY = bytes.fromhex("0111 0005 00000000" "00000000")
IMPORT_REPLY_OK = bytes.fromhex("0111 0003 00000000") + RECORD
IMPORT_REPLY_NODEV = bytes.fromhex("0111 0003 00000004")

REQUESTS = [
    (DevlistRequest(), DEVLIST_REQUEST),
    (ImportRequest("1-1"), IMPORT_REQUEST),
]
REPLIES = [  # (message, the request it answers, wire)
    (DevlistReply((DEVICE,)), DevlistRequest(), DEVLIST_REPLY),
    (DevlistReply((DEVICE, VUDC_DEVICE)), DevlistRequest(), DEVLIST_REPLY_TWO),
    (DevlistReply(()), DevlistRequest(), DEVLIST_REPLY_EMPTY),
    (ImportReply(Status.OK, DEVICE_WITHOUT_INTERFACES), ImportRequest("1-1"), IMPORT_REPLY_OK),
    (ImportReply(Status.NODEV), ImportRequest("1-1"), IMPORT_REPLY_NODEV),
]

# ---------------------------------------------------------------- URBs

SETUP_GET_DEVICE_DESCRIPTOR = bytes.fromhex("80 06 0001 0000 1200")

CMD_SUBMIT_OUT = bytes.fromhex(
    "00000001 00000001 00010002 00000000 00000002"  # CMD_SUBMIT, seqnum 1, devid 1-2, OUT, ep 2
    "00000000 00000004 00000000 00000000 00000000"  # flags, length 4, start_frame, packets, interval
    "0000000000000000"  # setup
    "deadbeef"  # OUT data
)
CMD_SUBMIT_IN = bytes.fromhex(
    "00000001 00000002 00010002 00000001 00000000"  # seqnum 2, IN, ep 0
    "00000200 00000012 00000000 00000000 00000000"  # URB_DIR_IN, length 18
    "8006000100001200"  # GET_DESCRIPTOR(device); no data follows an IN command
)
CMD_SUBMIT_ISO_OUT = bytes.fromhex(
    "00000001 00000005 00010002 00000000 00000003"  # seqnum 5, OUT, ep 3
    "00000002 00000006 00000000 00000002 00000001"  # ISO_ASAP, length 6, 2 packets, interval 1
    "0000000000000000"
    "a1a2a3 b1b2b3"  # data
    "00000000 00000003 00000000 00000000"  # packet 0: offset 0, length 3
    "00000003 00000003 00000000 00000000"  # packet 1: offset 3, length 3
)
CMD_UNLINK = bytes.fromhex(
    "00000002 00000008 00010002 00000000 00000000"  # CMD_UNLINK, seqnum 8
    "00000002"  # unlink seqnum 2
    "000000000000000000000000000000000000000000000000"
)
COMMANDS = [
    (CmdSubmit(1, 0x10002, Direction.OUT, 2, transfer_buffer_length=4, data=bytes.fromhex("deadbeef")), CMD_SUBMIT_OUT),
    (
        CmdSubmit(2, 0x10002, Direction.IN, 0, 0x200, 18, setup=SETUP_GET_DEVICE_DESCRIPTOR),
        CMD_SUBMIT_IN,
    ),
    (
        CmdSubmit(
            5, 0x10002, Direction.OUT, 3, 2, 6, 0, 2, 1,
            data=bytes.fromhex("a1a2a3b1b2b3"),
            iso_packets=(IsoPacketDescriptor(0, 3), IsoPacketDescriptor(3, 3)),
        ),
        CMD_SUBMIT_ISO_OUT,
    ),
    (CmdUnlink(8, 0x10002, 2), CMD_UNLINK),
]

RET_SUBMIT_OUT = bytes.fromhex(
    "00000003 00000001 00000000 00000000 00000000"  # RET_SUBMIT, seqnum 1
    "00000000 00000004 00000000 00000000 00000000"  # status 0, actual_length 4
    "0000000000000000"  # no data: it answers an OUT command
)
RET_SUBMIT_IN = bytes.fromhex(
    "00000003 00000002 00000000 00000000 00000000"
    "00000000 00000012 00000000 00000000 00000000"  # actual_length 18
    "0000000000000000"
    "12010002000000409a0b0100000101020001"  # the device descriptor
)
RET_SUBMIT_STALL = bytes.fromhex(
    "00000003 00000002 00000000 00000000 00000000"
    "ffffffe0 00000000 00000000 00000000 00000000"  # status -EPIPE, nothing transferred
    "0000000000000000"
)
RET_SUBMIT_ISO_IN = bytes.fromhex(
    "00000003 00000007 00000000 00000000 00000000"
    "00000000 00000006 00000010 00000002 00000000"  # actual_length 6, start_frame 16, 2 packets
    "0000000000000000"
    "010203040506"  # packet data, packed back to back
    "00000000 00000008 00000004 00000000"  # packet 0: 4 of 8 bytes
    "00000008 00000008 00000002 00000000"  # packet 1: 2 of 8 bytes
)
RET_UNLINK = bytes.fromhex(
    "00000004 00000008 00000000 00000000 00000000"  # RET_UNLINK, seqnum 8
    "ffffff98"  # -ECONNRESET
    "000000000000000000000000000000000000000000000000"
)
RETURNS = [  # (message, direction of the command answered, wire)
    (RetSubmit(1, 0, 4), Direction.OUT, RET_SUBMIT_OUT),
    (
        RetSubmit(2, 0, 18, data=bytes.fromhex("12010002000000409a0b0100000101020001")),
        Direction.IN,
        RET_SUBMIT_IN,
    ),
    (RetSubmit(2, -32, 0, data=b""), Direction.IN, RET_SUBMIT_STALL),
    (
        RetSubmit(
            7, 0, 6, 16, 2, 0,
            data=bytes.fromhex("010203040506"),
            iso_packets=(IsoPacketDescriptor(0, 8, 4, 0), IsoPacketDescriptor(8, 8, 2, 0)),
        ),
        Direction.IN,
        RET_SUBMIT_ISO_IN,
    ),
    (RetUnlink(8, -104), Direction.OUT, RET_UNLINK),
]
# fmt: on
