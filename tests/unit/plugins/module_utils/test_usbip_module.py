# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The private module_utils: a module run (check mode past unloaded modules), diffs, result rendering."""

from __future__ import annotations

import pytest
from ansible_collections.usbip.usbip.plugins.module_utils import _usbip_module, _usbip_results
from fake_usb import standard_tree

from usbip.sysfs import host, vudc
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.kmod import AfterLoad
from usbip.sysfs.usb import UsbBus


def test_render_is_line_per_value():
    text = _usbip_module.render({"a": None, "b": True, "c": "x y", "d": " pad", "e": "k: v", "f": {},
                                 "g": {"h": 1}, "i": ["p", "q"], "j": [], "k": b"\x01\xff"})
    assert text == ("a: none\nb: true\nc: x y\nd: ' pad'\ne: 'k: v'\nf: {}\ng:\n  h: 1\ni:\n  - p\n  - q\nj: []\n"
                    "k: 01ff\n")


def test_diff_keeps_strings_and_renders_mappings():
    assert _usbip_module.diff("(absent)\n", {"a": 1}, "h") == {"before": "(absent)\n", "after": "a: 1\n",
                                                               "before_header": "h", "after_header": "h"}


class Failed(Exception):
    def __init__(self, result):
        super().__init__(result["msg"])
        self.result = result


class FakeModule:
    """What Context uses of an AnsibleModule; modprobe knows every module but those in ``missing``."""

    def __init__(self, check_mode, missing=(), modprobe="/sbin/modprobe", error=None, **params):
        self.check_mode = check_mode
        self.params = params
        self.missing = set(missing)
        self.modprobe = modprobe
        self.error = error
        self.commands = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        assert name == "modprobe" and not required and "/sbin" in opt_dirs
        return self.modprobe

    def run_command(self, args, handle_exceptions=True):
        assert handle_exceptions is False  # an OSError is ours to word
        self.commands.append(list(args))
        if self.error is not None:
            raise self.error
        name = args[-1]
        if name in self.missing:
            return 1, "", "modprobe: FATAL: Module %s not found in directory /lib/modules/6.1.0-test\n" % name
        return 0, "", ""

    def fail_json(self, **result):
        raise Failed(result)


def _context(monkeypatch, root, check_mode, **kw):
    monkeypatch.setattr(_usbip_module, "new_sysfs", lambda dry_run: Sysfs(str(root), dry_run))
    return _usbip_module.Context(FakeModule(check_mode, **kw))


def _failure(ctx, modules):
    with pytest.raises(Failed) as failed:
        ctx.load_kernel_modules(modules)
    return failed.value.result


TLS = _usbip_module.KTLS


def test_check_mode_reads_a_module_it_would_load_as_loaded(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, True)
    assert not ctx.sysfs.isdir(host.DRIVER)
    assert ctx.load_kernel_modules([host.KERNEL_MODULE]) == ["usbip-host"]
    assert ctx.kernel_modules == ["usbip-host"] and ctx.sysfs.isdir(host.DRIVER)
    assert "usbip-host" in ctx.sysfs.listdir("/sys/bus/usb/drivers")
    assert not (tmp_path / "sys").exists() and ctx.changes() == []
    # Found by a dry run, which loads nothing.
    assert ctx.module.commands == [["/sbin/modprobe", "-n", "usbip-host"]]


def test_a_real_run_loads_without_a_dry_run(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, False)
    assert ctx.load_kernel_modules([host.KERNEL_MODULE, vudc.kernel_module(2)]) == ["usbip-host", "usbip-vudc"]
    assert ctx.module.commands == [["/sbin/modprobe", "usbip-host"], ["/sbin/modprobe", "usbip-vudc", "num=2"]]
    assert not ctx.sysfs.isdir(host.DRIVER)  # nothing is assumed: the kernel shows what the load made


def test_check_mode_fails_as_the_load_fails_where_the_module_does_not_exist(monkeypatch, tmp_path):
    results = {}
    for check_mode in (True, False):
        ctx = _context(monkeypatch, tmp_path, check_mode, missing={"tls"})
        results[check_mode] = _failure(ctx, [host.KERNEL_MODULE, TLS])
        # The module before it is found (and in a real run loaded); the missing one is never assumed.
        assert results[check_mode]["kernel_modules"] == ["usbip-host"] and not ctx.sysfs.exists("/sys/module/tls")
    check, real = results[True], results[False]
    assert check["msg"] == real["msg"] == (
        "modprobe tls failed (rc 1): modprobe: FATAL: Module tls not found in directory /lib/modules/6.1.0-test"
        " (%s)" % _usbip_module.MODPROBE_HINT)
    assert check["hint"] == real["hint"] == _usbip_module.MODPROBE_HINT
    assert check["changed"] is False and real["changed"] is True  # the real run loaded usbip-host
    assert check["sysfs_changes"] == real["sysfs_changes"] == []


@pytest.mark.parametrize("check_mode", [True, False])
@pytest.mark.parametrize("how", ["not on the target", "gone when run"])
def test_without_modprobe_one_line_says_so(monkeypatch, tmp_path, check_mode, how):
    kw = {"modprobe": None} if how == "not on the target" else {"error": FileNotFoundError(2, "No such file")}
    ctx = _context(monkeypatch, tmp_path, check_mode, **kw)
    result = _failure(ctx, [host.KERNEL_MODULE, TLS])
    assert result["msg"] == ("modprobe is not installed; cannot load usbip-host, tls (install kmod, or load the"
                             " modules otherwise and set load_kernel_modules: false)")
    assert result["changed"] is False and result["kernel_modules"] == [] and not ctx.sysfs.isdir(host.DRIVER)


def test_without_load_kernel_modules_nothing_is_assumed(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, True, load_kernel_modules=False)
    assert ctx.load_kernel_modules([host.KERNEL_MODULE]) == []
    assert not ctx.sysfs.isdir(host.DRIVER) and ctx.module.commands == []


def test_a_loaded_module_is_neither_probed_nor_loaded(monkeypatch, tmp_path):
    (tmp_path / "sys/module/tls").mkdir(parents=True)
    for check_mode in (True, False):
        ctx = _context(monkeypatch, tmp_path, check_mode, missing={"tls"})
        assert ctx.load_kernel_modules([TLS]) == [] and ctx.module.commands == []


def test_a_real_run_reads_the_kernel_as_it_is(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, False)
    assert isinstance(ctx.sysfs, Sysfs) and not isinstance(ctx.sysfs, AfterLoad)


def test_every_device_result_starts_with_the_same_identity(tmp_path):
    dev = UsbBus(standard_tree(tmp_path).sysfs()).describe("18-1.2")
    local = _usbip_results.local_device_info(dev)
    remote = _usbip_results.remote_device_info(dev.device)
    identity = ["busid", "id_vendor", "id_product", "usbid", "vendor_name", "product_name"]
    assert list(local)[:6] == list(remote)[:6] == identity
    assert local["busid"] == "18-1.2" and local["id_vendor"] == "46f4" and local["usbid"] == "46f4:0001"
    assert {key: local[key] for key in identity} == {key: remote[key] for key in identity}
