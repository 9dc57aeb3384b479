"""What ``make mutation`` mutates, and which unit tests judge each mutant.

Each target is a module (or the part of one) where a bug costs most, with the unit tests that exercise
it: a mutant is run against the tests of its target that call the mutated function (mutmut records
which ones in a first, clean run), so one mutant costs seconds, not the whole suite's minute and a half.

``functions`` narrows a target to part of a module, as mutmut's mutant names: ``usbip.net.tls.x_name*``
for a module-level function, ``usbip.net.tls.xǁClassǁmethod*`` for a method. Paths are relative to
``plugins/module_utils`` (the mutated package) and to the repository root (the tests).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple


class Target(NamedTuple):
    modules: Tuple[str, ...]
    tests: Tuple[str, ...]
    functions: Tuple[str, ...] = ()
    why: str = ""


TARGETS: Dict[str, Target] = {
    "validate": Target(
        modules=("usbip/validate.py",),
        tests=(
            "tests/unit/test_validate_bounds.py",
            "tests/unit/test_config.py",
            "tests/unit/net/test_tls.py",
            "tests/unit/test_mutants_validate.py",
        ),
        why="every busid, number and name that reaches a sysfs path or a socket",
    ),
    "records": Target(
        modules=("usbip/protocol/records.py", "usbip/protocol/fields.py"),
        tests=(
            "tests/unit/protocol/test_control.py",
            "tests/unit/protocol/test_reader.py",
            "tests/unit/protocol/test_urb.py",
            "tests/unit/protocol/test_mutants_records.py",
        ),
        why="the device records and field codec that a peer's bytes go through first",
    ),
    "exports": Target(
        modules=("usbip/daemon/exports.py",),
        tests=(
            "tests/unit/daemon/test_exports.py",
            "tests/unit/test_config.py",
            "tests/unit/daemon/test_mutants_exports.py",
        ),
        why="which local devices the export rules hand to the network",
    ),
    "catalog": Target(
        modules=("usbip/daemon/catalog.py",),
        tests=(
            "tests/unit/daemon/test_catalog.py",
            "tests/unit/net/test_devlist_cache.py",
            "tests/unit/daemon/test_mutants_catalog.py",
        ),
        why="what the server lists and lets a client import",
    ),
    "vhci": Target(
        modules=("usbip/sysfs/vhci.py",),
        tests=(
            "tests/unit/sysfs/test_vhci.py",
            "tests/unit/sysfs/test_vhci_retry_bound.py",
            "tests/unit/test_attachments.py",
            "tests/unit/sysfs/test_mutants_vhci.py",
        ),
        why="the client's writes to the kernel's attach and detach files",
    ),
    "admission": Target(
        modules=("usbip/net/limits.py", "usbip/net/server.py"),
        tests=(
            "tests/unit/net/test_access.py",
            "tests/unit/net/test_flood.py",
            "tests/unit/net/test_tls_admission.py",
            "tests/unit/net/test_server.py",
            "tests/unit/net/test_mutants_admission.py",
        ),
        functions=(
            "usbip.net.limits.*",
            "usbip.net.server.x_parse_networks*",
            "usbip.net.server.x__client_address*",
            "usbip.net.server.x_allows*",
            "usbip.net.server.xǁUsbipServerǁadmit*",
            "usbip.net.server.xǁUsbipServerǁclient_network*",
        ),
        why="who may connect, and how many: the server's admission before it reads a byte",
    ),
    "dry-run": Target(
        modules=("usbip/sysfs/fs.py",),
        tests=(
            "tests/unit/sysfs/test_fs_flock.py",
            "tests/unit/sysfs/test_sysfs_host.py",
            "tests/unit/test_no_writes.py",
        ),
        functions=(
            "usbip.sysfs.fs.xǁSysfsǁ__init__*",
            "usbip.sysfs.fs.xǁSysfsǁflock*",
            "usbip.sysfs.fs.xǁSysfsǁ_change*",
            "usbip.sysfs.fs.xǁSysfsǁplan*",
            "usbip.sysfs.fs.xǁSysfsǁwrite*",
            "usbip.sysfs.fs.xǁSysfsǁunlink*",
            "usbip.sysfs.fs.xǁSysfsǁmkdir*",
            "usbip.sysfs.fs.xǁSysfsǁrmdir*",
            "usbip.sysfs.fs.xǁSysfsǁsymlink*",
            "usbip.sysfs.fs.xǁSysfsǁ_carry_out*",
        ),
        why="check mode: a dry run plans every change and makes none",
    ),
    "tls-keys": Target(
        modules=("usbip/net/tls.py",),
        tests=(
            "tests/unit/net/test_tls.py",
            "tests/unit/net/test_tls_hardening.py",
        ),
        functions=(
            "usbip.net.tls.x_wipe*",
            "usbip.net.tls.x_expand_label*",
            "usbip.net.tls.x_crypto_info*",
            "usbip.net.tls.x__unhex*",
            "usbip.net.tls.xǁKeyLogǁ*",
        ),
        why="the kernel TLS keys derived from the handshake's secrets",
    ),
}

#: The order of a full run: the cheapest first.
ORDER = ("validate", "records", "exports", "catalog", "vhci", "admission", "dry-run", "tls-keys")
