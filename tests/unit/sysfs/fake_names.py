# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small usb.ids for the names database's tests and the command line's expected outputs.

Its entries are real (the vendors, products and classes the fake trees show); the rest of
its shape tests the parser.
"""

# The shape of the real file: comments, vendors with products and interfaces,
# then classes, then sections whose lines look like vendors or products.
USB_IDS = """\
#
#\tList of USB ID's
#
# Syntax:
# vendor  vendor_name
#\tdevice  device_name\t\t\t\t<-- single tab
#\t\tinterface  interface_name\t\t<-- two tabs

0781  SanDisk Corp.
\t5567  Cruzer Blade
\t5583  Ultra Fit
05e3  Genesys Logic, Inc.
\t0608  Hub
1209  Generic
\t0001  pid.codes Test PID
1d6b  Linux Foundation
\t0002  2.0 root hub
\t0104  Multifunction Composite Gadget
\t\t00  interface line, not a product
0403  Future Technology Devices International, Ltd
\t6001  FT232 Serial (UART) IC
0409  NEC Corp.
\t55aa  Hub
08e6  Gemalto (was Gemplus)
\t4433  GemPC433-Swap
46f4  QEMU
abcd  Unknown
\t1234  Lost product\r
ffee  FNK Tech

# List of known device classes, subclasses and protocols
C 00  (Defined at Interface level)
C 02  Communications
\t02  Abstract (modem)
\t\t01  AT-commands (v.25ter)
C 08  Mass Storage
\t06  SCSI
\t\t50  Bulk-Only
C 09  Hub
\t00  Unused
\t\t01  Single TT
C 0a  CDC Data
\t00  Unused

AT 0100  USB Undefined
HID 00  None
L 0001  Afrikaans
\t01  South Africa
BIAS 0  Not Applicable
PHY 00  Not Applicable
HUT 00  Undefined
\t000  Undefined
VT 0000  Undefined
"""
