"""`pip install .` gives the `usbip` and `usbipd` commands from the module_utils package."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pip_install_provides_both_commands(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), REPO],
                   check=True, timeout=300)
    (wheel,) = wheels.iterdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=120)
    env = {"PATH": str(venv / "bin") + os.pathsep + os.environ["PATH"]}
    usbip = subprocess.run(["usbip", "version"], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                           timeout=60)
    assert usbip.returncode == 0, usbip.stderr
    assert "usbip" in usbip.stdout
    usbipd = subprocess.run(["usbipd", "--version"], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                            timeout=60)
    assert usbipd.returncode == 0, usbipd.stderr
    assert "usbipd" in usbipd.stdout
    # the installed package is the module_utils tree, not a copy that could drift
    probe = "import usbip.protocol, usbip.sysfs.vhci, usbip.net.server; print('ok')"
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", probe],
                               capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert installed.stdout.strip() == "ok", installed.stderr
