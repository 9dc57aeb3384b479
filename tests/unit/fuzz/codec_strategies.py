# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hypothesis strategies for every message of the wire codec.

``valid_*`` build messages the encoder must accept (every field in its wire
range, counts agreeing with what they count); ``wild_*`` fill the same fields
with any integer or text, which the encoder must either encode or refuse with
a :class:`ProtocolError`.
"""

from __future__ import annotations

from hypothesis import strategies as st

from usbip.device import Speed, UsbDevice, UsbInterface
from usbip.protocol import (
    MAX_ENDPOINT,
    MAX_TRANSFER_LENGTH,
    NO_ISO_PACKETS,
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

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
s32 = st.integers(-(2**31), 2**31 - 1)
#: Any integer a caller could pass, far outside every field's range too.
wild_int = st.one_of(st.integers(), st.sampled_from([-1, 2**31, 2**32, 2**64]))
printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def ascii_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(printable, max_size=max_size)


#: Any text: control characters, NUL, non-ASCII, too long.
wild_text = st.one_of(st.text(max_size=300), ascii_text(300), st.sampled_from(["../../x", "1-1\n", "1-1\0x", ""]))

interfaces = st.builds(UsbInterface, u8, u8, u8)


@st.composite
def devices(draw, with_interfaces: bool = True) -> UsbDevice:
    found = tuple(draw(st.lists(interfaces, max_size=6))) if with_interfaces else ()
    return UsbDevice(
        path=draw(ascii_text(255)),
        busid=draw(ascii_text(31)),
        busnum=draw(u32),
        devnum=draw(u32),
        speed=draw(st.sampled_from(Speed)),
        id_vendor=draw(u16),
        id_product=draw(u16),
        bcd_device=draw(u16),
        device_class=draw(u8),
        device_subclass=draw(u8),
        device_protocol=draw(u8),
        configuration_value=draw(u8),
        num_configurations=draw(u8),
        num_interfaces=len(found) if with_interfaces else draw(u8),
        interfaces=found,
    )


iso_packets = st.builds(IsoPacketDescriptor, u32, u32, u32, s32)
not_ok = st.sampled_from([s for s in Status if s != Status.OK])

valid_requests = st.one_of(st.just(DevlistRequest()), st.builds(ImportRequest, ascii_text(31)))


@st.composite
def valid_replies(draw):
    """(reply, the request it answers)."""
    kind = draw(st.sampled_from(["devlist", "devlist-failed", "import", "import-failed"]))
    if kind == "devlist":
        return DevlistReply(tuple(draw(st.lists(devices(), max_size=4)))), DevlistRequest()
    if kind == "devlist-failed":
        return DevlistReply((), draw(not_ok)), DevlistRequest()
    if kind == "import":
        device = draw(devices(with_interfaces=False))
        return ImportReply(Status.OK, device), ImportRequest(device.busid)
    return ImportReply(draw(not_ok)), ImportRequest(draw(ascii_text(31)))


@st.composite
def valid_submits(draw, direction=None) -> CmdSubmit:
    direction = draw(st.sampled_from(Direction)) if direction is None else direction
    packets = tuple(draw(st.lists(iso_packets, max_size=4)))
    number = len(packets) if packets else draw(st.sampled_from([0, NO_ISO_PACKETS]))
    if direction is Direction.OUT:
        data = draw(st.binary(max_size=64))
        length = len(data)
    else:
        data = b""
        length = draw(st.one_of(st.integers(0, 4096), st.just(MAX_TRANSFER_LENGTH)))
    return CmdSubmit(draw(u32), draw(u32), direction, draw(st.integers(0, MAX_ENDPOINT)), draw(u32), length,
                     draw(u32), number, draw(u32), draw(st.binary(min_size=8, max_size=8)), data, packets)


valid_unlinks = st.builds(CmdUnlink, u32, u32, u32)
valid_commands = st.one_of(valid_submits(), valid_unlinks)


@st.composite
def valid_ret_submits(draw, direction: Direction, seqnum=None) -> RetSubmit:
    seqnum = draw(u32) if seqnum is None else seqnum
    iso = draw(st.lists(st.tuples(u32, u32, st.integers(0, 16), s32), max_size=4))
    packets = tuple(IsoPacketDescriptor(*p) for p in iso)
    number = len(packets) if packets else draw(st.sampled_from([0, NO_ISO_PACKETS]))
    if packets:
        actual = sum(p.actual_length for p in packets)
    elif direction is Direction.IN:
        actual = draw(st.integers(0, 64))
    else:
        actual = draw(st.integers(0, MAX_TRANSFER_LENGTH))
    data = draw(st.binary(min_size=actual, max_size=actual)) if direction is Direction.IN else None
    return RetSubmit(seqnum, draw(s32), actual, draw(u32), number, draw(u32), data, packets)


valid_ret_unlinks = st.builds(RetUnlink, u32, s32)


@st.composite
def valid_returns(draw):
    """(return, direction of the command it answers)."""
    direction = draw(st.sampled_from(Direction))
    message = draw(st.one_of(valid_ret_submits(direction), valid_ret_unlinks))
    return message, direction


# -- wild: any values, for the encoders ------------------------------------------
@st.composite
def wild_devices(draw) -> UsbDevice:
    found = tuple(draw(st.lists(st.builds(UsbInterface, wild_int, wild_int, wild_int), max_size=3)))
    return UsbDevice(draw(wild_text), draw(wild_text), draw(wild_int), draw(wild_int), draw(wild_int), draw(wild_int),
                     draw(wild_int), draw(wild_int), draw(wild_int), draw(wild_int), draw(wild_int), draw(wild_int),
                     draw(wild_int), draw(st.one_of(st.just(len(found)), wild_int)), found)


wild_iso = st.builds(IsoPacketDescriptor, wild_int, wild_int, wild_int, wild_int)
wild_data = st.one_of(st.none(), st.binary(max_size=40))
wild_messages = st.one_of(
    st.builds(ImportRequest, wild_text),
    st.builds(DevlistReply, st.lists(wild_devices(), max_size=2).map(tuple), wild_int),
    st.builds(ImportReply, wild_int, st.one_of(st.none(), wild_devices())),
    st.builds(CmdSubmit, wild_int, wild_int, wild_int, wild_int, wild_int, wild_int, wild_int, wild_int, wild_int,
              st.binary(max_size=10), st.binary(max_size=40), st.lists(wild_iso, max_size=3).map(tuple)),
    st.builds(CmdUnlink, wild_int, wild_int, wild_int),
    st.builds(RetSubmit, wild_int, wild_int, wild_int, wild_int, wild_int, wild_int, wild_data,
              st.lists(wild_iso, max_size=3).map(tuple)),
    st.builds(RetUnlink, wild_int, wild_int),
    wild_iso,
)
