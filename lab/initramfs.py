"""Build the lab's initramfs: static busybox, the modules that reach the root, /init.

Kept to about 1.5 MB so that it is rebuilt in a second and cached by kernel
version and by the content of ``init.sh``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import stat
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
#: Modules needed before the host root is mounted, with their dependencies.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_blk", "ext4", "virtio_net")
BUSYBOX_APPLETS = ("sh", "mount", "umount", "mkdir", "insmod", "cat", "echo", "printf", "cut", "dd", "poweroff",
                   "chroot", "chmod", "sync", "sed", "tr", "ln", "switch_root")


def kernel_release() -> str:
    """The newest kernel with modules installed on the host (the lab kernel)."""
    releases = sorted(os.listdir("/lib/modules")) if os.path.isdir("/lib/modules") else []
    releases = [r for r in releases if os.path.exists("/boot/vmlinuz-%s" % r)]
    if not releases:
        raise SystemExit("lab: no kernel in /boot with modules in /lib/modules: run lab/install-deps.sh")
    return max(releases, key=_version_key)


def _version_key(release: str):
    return [int(p) if p.isdigit() else p for p in release.replace("-", ".").split(".")]


def _module_files(release: str) -> list:
    files: list = []
    for name in BOOT_MODULES:
        out = subprocess.run(
            ["modprobe", "-S", release, "--show-depends", name], check=True, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"] and parts[1] not in files:
                files.append(parts[1])
    return files


def _load_module(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-qdc", path], check=True, capture_output=True).stdout
    return data


def _has_interpreter(elf: bytes) -> bool:
    """True for a dynamically linked ELF64 (it has a PT_INTERP program header)."""
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    phnum = int.from_bytes(elf[0x38:0x3A], "little")
    for i in range(phnum):
        entry = phoff + i * phentsize
        if int.from_bytes(elf[entry:entry + 4], "little") == 3:
            return True
    return False


class _Cpio:
    """Just enough of the ``newc`` format for an initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        self.buf.write(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        self._pad()
        self.buf.write(data)
        self._pad()
        self.ino += 1

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.buf.getvalue()


def build(release: str, cache_dir: str) -> str:
    """Return the path of the initramfs for ``release``, building it if needed."""
    with open(os.path.join(HERE, "init.sh"), "rb") as f:
        init = f.read()
    modules = _module_files(release)
    digest = hashlib.sha256(init + "\n".join(modules).encode()).hexdigest()[:12]
    out = os.path.join(cache_dir, "initramfs-%s-%s.cpio.gz" % (release, digest))
    if os.path.exists(out):
        return out
    os.makedirs(cache_dir, exist_ok=True)
    busybox = "/bin/busybox"
    with open(busybox, "rb") as f:
        busybox_data = f.read()
    if _has_interpreter(busybox_data):
        raise SystemExit("lab: %s is not static: apt-get install busybox-static" % busybox)

    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "mods", "ovl"):
        cpio.add(d, stat.S_IFDIR | 0o755)
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, busybox_data)
    for applet in BUSYBOX_APPLETS:
        cpio.add("bin/" + applet, stat.S_IFLNK | 0o777, b"busybox")
    order = []
    for path in modules:
        name = os.path.basename(path).replace(".xz", "").replace(".zst", "")
        cpio.add("mods/" + name, stat.S_IFREG | 0o644, _load_module(path))
        order.append(name)
    cpio.add("mods/order", stat.S_IFREG | 0o644, ("\n".join(order) + "\n").encode())
    cpio.add("init", stat.S_IFREG | 0o755, init)
    tmp = "%s.%d.tmp" % (out, os.getpid())  # two lab runs at once each write their own
    with open(tmp, "wb") as f:
        f.write(gzip.compress(cpio.finish(), compresslevel=1))
    os.replace(tmp, out)
    return out
