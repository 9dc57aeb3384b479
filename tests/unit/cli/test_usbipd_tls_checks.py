# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd's checks of its TLS set-up: the kernel's tls module, and the TLS files before a reload.

* The kTLS record layer needs the kernel's tls module. usbipd run by hand as
  root loads it by asking a socket for the TLS upper layer; under the unit
  (no CAP_NET_ADMIN in its bounding set) it cannot, so a missing module is
  one warning that names ``modprobe tls``, at each start and reload.
* ``--check-config --check-files`` loads the certificate, key and CA as a
  start does: a file that would fail the start (or a reload, which then keeps
  the old process) fails the check with the start's own line and exit 2.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

import pytest
from fake_usb import standard_tree

from lab import pki
from tests.fuzz import MODULE_UTILS
from usbip.cli import usbipd


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


# -- the kernel's tls module ------------------------------------------------------------------------
@pytest.mark.parametrize("present, probed, loaded", [
    (True, None, True),  # loaded: not even probed
    (False, errno.ENOTCONN, True),  # built in, or just loaded by the probe (root by hand)
    (False, errno.ENOENT, False),  # absent, and this process may not load it (the unit)
])
def test_a_missing_tls_module_is_one_warning_naming_modprobe(tmp_path, caplog, present, probed, loaded):
    caplog.set_level(logging.WARNING, logger="usbipd")
    module = tmp_path / "tls"
    if present:
        module.mkdir()
    probes = []

    def probe():
        probes.append(True)
        return probed

    assert usbipd._check_tls_module(str(module), probe) is loaded  # noqa: SLF001
    assert len(probes) == (0 if present else 1)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ([] if loaded else [
        "TLS is configured but the kernel's tls module is not loaded and usbipd may not load it: run `modprobe tls`"
        " (until then every import over TLS fails)"])


def test_the_probe_reports_the_kernels_answer():
    """On this kernel: ENOTCONN (module there, or loaded for a root caller) or ENOENT (absent), never a raise."""
    assert usbipd._probe_tls_ulp() in (errno.ENOTCONN, errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP)  # noqa: SLF001


def test_a_start_with_tls_checks_the_module_and_one_without_does_not(tmp_path, certs, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="usbipd")
    tree = standard_tree(tmp_path / "root")
    monkeypatch.setenv("USBIP_SYSFS_ROOT", str(tree.root))
    monkeypatch.setattr(usbipd, "TLS_MODULE", str(tmp_path / "no-such-module"))
    monkeypatch.setattr(usbipd, "_probe_tls_ulp", lambda: errno.ENOENT)
    tls = ["--tls-cert", certs["server"], "--tls-key", certs["server-key"], "--tls-ca", certs["ca"]]
    for argv in (["-l", "127.0.0.1"], ["-l", "127.0.0.1", *tls]):
        usbipd.load_service(usbipd._parser().parse_args(argv)).release()  # noqa: SLF001
    assert [r.getMessage() for r in caplog.records if "modprobe tls" in r.getMessage()] == [
        "TLS is configured but the kernel's tls module is not loaded and usbipd may not load it: run `modprobe tls`"
        " (until then every import over TLS fails)"]


# -- --check-config --check-files -------------------------------------------------------------------
def run(*argv, root):
    environ = dict(os.environ, PYTHONPATH=MODULE_UTILS, USBIP_SYSFS_ROOT=str(root))
    return subprocess.run([sys.executable, "-m", "usbip.cli.usbipd", *argv], capture_output=True, text=True,
                          env=environ, timeout=60, check=False)


def config_with(tmp_path, cert: str, key: str, ca: str) -> str:
    path = tmp_path / "usbipd.yml"
    path.write_text("tls: {cert: %s, key: %s, ca: %s, port: 3241}\n" % (cert, key, ca))
    return str(path)


def test_check_files_loads_good_files_silently(tmp_path, certs):
    config = config_with(tmp_path, certs["server"], certs["server-key"], certs["ca"])
    done = run("--check-config", "--check-files", "-c", config, root=tmp_path / "nonexistent")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("broken", ["cert", "key", "ca", "missing", "mismatch"])
def test_check_files_fails_as_the_start_would_with_its_line(tmp_path, certs, broken):
    files = {"cert": certs["server"], "key": certs["server-key"], "ca": certs["ca"]}
    if broken in files:
        garbage = tmp_path / ("garbage-" + broken)
        garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        files[broken] = str(garbage)
    elif broken == "missing":
        files["key"] = str(tmp_path / "no-such.key")
    else:
        files["key"] = certs["client1-key"]  # a key, but not the certificate's
    config = config_with(tmp_path, files["cert"], files["key"], files["ca"])
    root = tmp_path / "sysfs"
    root.mkdir()
    assert run("--check-config", "-c", config, root=root).returncode == 0  # the files are not read without it
    checked = run("--check-config", "--check-files", "-c", config, root=root)
    started = run("-c", config, "-l", "127.0.0.1", root=root)  # the files are loaded before the kernel is looked at
    assert checked.returncode == 2 and checked.stdout == ""
    lines = checked.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("usbipd: error: cannot load the TLS certificate, key or CA"), \
        checked.stderr
    assert started.returncode == 1 and started.stderr.splitlines() == lines  # the start's own line


def test_check_files_without_check_config_is_a_usage_error(tmp_path):
    done = run("--check-files", root=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "usbipd: error: --check-files goes with --check-config"
