"""The benchmark run inside one lab guest: ours and the C tools, alternating.

    .venv/bin/python -m bench.guest --out /tmp/xfer/results.json [--quick] [--phases a,b]

Run by ``python -m bench`` on the host (which boots the guest); results are
written after every phase, so a guest that hits its time bound still leaves
what it measured. Nothing here asserts on time: it measures and records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
import time
import traceback
from typing import Callable, Dict, List, Optional

from bench import env, loadgen
from bench.env import median
from lab import pki
from lab.guestkit import find_usb_device
from usbip.sysfs.host import HostDriver

OUR_PORT = 3240  # ours listen on 3240.., the C daemon on 3340..
C_PORT = 3340
VID = 0x1209


class Config:
    """How much to measure; ``--quick`` is a smoke test of the suite, not a result."""

    def __init__(self, quick: bool) -> None:
        self.rounds = 2 if quick else 3  # DEVLIST rounds per (mode, clients, daemon)
        self.duration = 1.5 if quick else 3.0  # seconds per DEVLIST run
        self.clients = (1, 8, 64)
        self.cycles = 2 if quick else 5  # attach/detach cycles per client
        self.module_runs = 2 if quick else 5  # converged module runs (and start-up floors) per program
        self.module_attaches = 1 if quick else 3  # fresh attaches by the usbip_attach module
        self.concurrent = ((8, 1), (16, 1)) if quick else ((8, 2), (16, 2))  # (ways, rounds)
        self.concurrent_bound = 60.0  # seconds before a concurrent attach is killed
        self.data_rounds = 2 if quick else 6  # paired reads of the two disks
        self.disk_mb = 4 if quick else 8
        self.small_reads = 64 if quick else 128
        self.idle = 200 if quick else 1000
        self.scaling = (1, 16) if quick else (1, 16, 64)


def alternate(round_no: int, pair: List) -> List:
    """Ours first in even rounds, the C tools first in odd ones."""
    return pair if round_no % 2 == 0 else pair[::-1]


# -- phases ------------------------------------------------------------------------------
def machine(cfg: Config) -> Dict:
    def first_line(argv: List[str]) -> str:
        out = env.run(argv)["out"].strip()
        return out.splitlines()[0] if out else ""

    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    ours_cli = env.console_script("usbip")
    commands = {"c usbip version": ["usbip", "version"],
                "python3 -c pass (Debian)": [env.SYSTEM_PYTHON, "-c", "pass"],
                "python3 -I -S -c pass (Debian)": [env.SYSTEM_PYTHON, "-I", "-S", "-c", "pass"],
                "python -c pass (venv)": [env.VENV_PYTHON, "-c", "pass"],
                "our usbip version": [ours_cli, "version"]}
    for argv in commands.values():  # warm-up: the first run of a program reads its files over 9p
        env.run(argv)
    times: Dict[str, List[float]] = {name: [] for name in commands}
    for _ in range(2 * cfg.module_runs):  # round-robin, so that the host's load hits all alike
        for name, argv in commands.items():
            times[name].append(env.run(argv)["elapsed"])
    floors = {name: median(values) for name, values in times.items()}
    return {
        "guest_kernel": platform.release(),
        "guest_cpu": model,
        "guest_cpus": os.cpu_count(),
        "guest_mem_kb": int(mem),
        "system_python": first_line([env.SYSTEM_PYTHON, "--version"]),
        "venv_python": platform.python_version(),
        "c_tools": first_line(["dpkg-query", "-W", "-f", "${Package} ${Version}", "usbip"]),
        "start_up": floors,
    }


def devlist_runs(cfg: Config, daemons: Dict[str, env.Daemon], devices: int, clients=None, rounds=None) -> Dict:
    """Replies/s and latency, per client count, for each daemon, alternating."""
    found: Dict = {}
    for n in clients or cfg.clients:
        runs: Dict[str, List] = {name: [] for name in daemons}
        for r in range(rounds or cfg.rounds):
            for name in alternate(r, list(daemons)):
                result = loadgen.run(daemons[name].port, n, cfg.duration, devices=devices)
                runs[name].append(result)
                print("devlist %s %d clients: %.0f/s p50 %.1f ms p99 %.1f ms errors %s" % (
                    name, n, result["rate"], 1e3 * (result["p50"] or 0), 1e3 * (result["p99"] or 0),
                    result["errors"]), flush=True)
        found[str(n)] = runs
    return found


def host_mode(cfg: Config) -> Dict:
    """A dummy_hcd device bound to usbip-host: DEVLIST, and usbip_bind when converged."""
    env.gadgets.make("hostdev", "dummy_udc.0", VID, 0x0002, "BENCH-HOST", "acm")
    busid = find_usb_device(VID, 0x0002, serial="BENCH-HOST")
    driver = HostDriver(env.SYSFS)
    driver.bind(busid)
    daemons = {"ours": env.our_daemon(OUR_PORT, device=False), "c": env.c_daemon(C_PORT, device=False)}
    with env.stopping(*daemons.values()):
        result = {"busid": busid, "devlist": devlist_runs(cfg, daemons, devices=1)}
    result["module_bind_converged"] = module_runs(cfg, "usbip_bind", {"busid": busid})
    driver.unbind(busid)
    env.gadgets.remove_all()
    return result


def device_mode(cfg: Config) -> Dict:
    """4 gadgets on usbip-vudc: DEVLIST."""
    env.reload_vudc(4)
    for n in range(4):
        env.gadgets.make("dev%d" % n, "usbip-vudc.%d" % n, VID, 0x0100 + n, "BENCH-DEV-%d" % n, "acm")
    daemons = {"ours": env.our_daemon(OUR_PORT + 1, device=True), "c": env.c_daemon(C_PORT + 1, device=True)}
    with env.stopping(*daemons.values()):
        result = {"devlist": devlist_runs(cfg, daemons, devices=4)}
    env.gadgets.remove_all()
    return result


def attach_phase(cfg: Config) -> Dict:
    """One ACM gadget on usbip-vudc.0 served by our daemon: single attaches by each client, modules."""
    env.reload_vudc(1)
    env.gadgets.make("att", "usbip-vudc.0", VID, 0x0101, "BENCH-ATT", "acm")
    daemon = env.our_daemon(OUR_PORT + 6, device=True)
    result: Dict = {}
    with env.stopping(daemon):
        result["attach"] = attach_times(cfg, daemon.port, "usbip-vudc.0", vudc=0)
        save_partial(result)
        result["module_attach"] = module_attach(cfg, daemon.port, "usbip-vudc.0", vudc=0)
    env.gadgets.remove_all()
    return result


_partial: Dict = {}


def save_partial(data: Dict) -> None:
    _partial.update(data)


def attach_times(cfg: Config, port: int, busid: str, vudc: int) -> Dict:
    """Command start -> device enumerated with drivers; the same server for both clients."""
    events = env.Uevents()
    clients = {"ours": env.attach_argv(env.console_script("usbip"), port, busid),
               "c": env.attach_argv("usbip", port, busid)}
    runs: Dict[str, List] = {name: [] for name in clients}
    try:
        env.settle([vudc])
        for argv in clients.values():  # warm the guest's caches of both programs' files: not timed
            env.timed_attach(argv, events)
            env.settle([vudc])
        for r in range(cfg.cycles):
            for name in alternate(r, list(clients)):
                result = env.timed_attach(clients[name], events)
                runs[name].append(result)
                print("attach %s: rc %s exit %.3f s enumerated %s s" % (
                    name, result["rc"], result["exit"] or -1, result["enumerated"]), flush=True)
                env.settle([vudc])
    finally:
        events.close()
    return runs


# -- Ansible modules ----------------------------------------------------------------------
COLLECTIONS = os.path.join(env.WORK, "collections")


def module_env() -> Dict[str, str]:
    """Debian's python3 runs the modules (as the integration suite's playbook does), finding
    ansible-core in the venv and the collection through a symlink, as AnsiballZ would ship both."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "usbip", "usbip")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(env.REPO, link)
    run_env = dict(os.environ)
    run_env["PYTHONPATH"] = os.pathsep.join([COLLECTIONS, sysconfig.get_paths()["purelib"]])
    return run_env


def module_path(name: str) -> str:
    return os.path.join(env.REPO, "plugins", "modules", name + ".py")


def module_argv(name: str, args_file: str) -> List[str]:
    """Run as AnsiballZ runs a module: as a package module (``-m``), so the script's
    directory does not shadow the standard library (ansible's modules include ``copy``)."""
    dotted = "ansible.modules.ping" if name == "ping" else "ansible_collections.usbip.usbip.plugins.modules." + name
    return [env.SYSTEM_PYTHON, "-m", dotted, args_file]


def run_module(name: str, args: Dict, timeout: float = 120) -> Dict:
    path = os.path.join(env.WORK, "args-%s.json" % name)
    with open(path, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
    result = env.run(module_argv(name, path), timeout=timeout, env=module_env())
    try:
        reply = json.loads(result["out"][result["out"].index("{"):])
    except ValueError:
        reply = {"failed": True, "msg": result["out"][-500:]}
    return {"elapsed": result["elapsed"], "rc": result["rc"], "changed": reply.get("changed"),
            "failed": bool(reply.get("failed")), "msg": reply.get("msg")}


def module_runs(cfg: Config, name: str, args: Dict) -> Dict:
    """A converged module run against ansible.builtin.ping, alternating."""
    if not os.path.exists(module_path(name)):
        return {"todo": "plugins/modules/%s.py does not exist yet" % name}
    runs: Dict[str, List] = {name: [], "ping": []}
    run_module(name, args)  # warm-up, not counted
    run_module("ping", {})
    for r in range(cfg.module_runs):
        for which in alternate(r, [name, "ping"]):
            runs[which].append(run_module(which, args if which == name else {}))
    print("module %s converged: %s" % (name, {k: [round(x["elapsed"], 3) for x in v] for k, v in runs.items()}),
          flush=True)
    return runs


def module_attach(cfg: Config, port: int, busid: str, vudc: int) -> Dict:
    """usbip_attach: a fresh attach (waiting for drivers), then converged runs."""
    if not os.path.exists(module_path("usbip_attach")):
        return {"todo": "plugins/modules/usbip_attach.py does not exist yet"}
    args = {"server": "127.0.0.1", "port": port, "busid": busid, "wait_for_driver": True}
    fresh = []
    events = env.Uevents()
    try:
        for _ in range(cfg.module_attaches):
            env.settle([vudc])
            path = os.path.join(env.WORK, "args-attach.json")
            with open(path, "w") as f:
                json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
            result = env.timed_attach(module_argv("usbip_attach", path), events, env=module_env())
            fresh.append(result)
            print("module attach: rc %s exit %s enumerated %s" % (result["rc"], result["exit"],
                                                                 result["enumerated"]), flush=True)
    finally:
        events.close()
    converged = module_runs(cfg, "usbip_attach", args)
    env.settle([vudc])
    return {"fresh": fresh, "converged": converged}


# -- data path -------------------------------------------------------------------------------
def data_path(cfg: Config) -> Dict:
    """Two mass-storage gadgets, one attached by each stack (its client and its daemon), read in turns.

    Both disks stay attached for the whole phase and the reads alternate, so a
    change in the host's load hits both alike (an attach per read would put
    seconds between the two halves of a pair).
    """
    env.reload_vudc(2)
    size = cfg.disk_mb << 20
    for n in range(2):
        env.gadgets.make("disk%d" % n, "usbip-vudc.%d" % n, VID, 0x0003 + n, "BENCH-DISK-%d" % n, "mass_storage",
                         env.backing_file("disk%d" % n, size, seed=n + 1))
    daemons = {"ours": env.our_daemon(OUR_PORT + 2, device=True), "c": env.c_daemon(C_PORT + 2, device=True)}
    clients = {"ours": env.console_script("usbip"), "c": "usbip"}
    busids = {"ours": "usbip-vudc.0", "c": "usbip-vudc.1"}
    runs: Dict[str, List] = {name: [] for name in daemons}
    with env.stopping(*daemons.values()):
        env.settle([0, 1])
        devices = {}
        for name in daemons:
            # One at a time, each disk enumerated before the next attach: the C client fails
            # ("open vhci_driver") while another port is changing; it gets a few tries.
            for _ in range(3):
                attached = env.run(env.attach_argv(clients[name], daemons[name].port, busids[name]), timeout=60)
                if attached["rc"] == 0:
                    break
                time.sleep(2)
            else:
                raise RuntimeError("%s attach failed: %s" % (name, attached["out"][-300:]))
            local = env.wait_for(lambda busid=busids[name]: env.imported_as(busid), 30, "%s's disk enumerated" % name)
            devices[name] = env.block_device_of(local, timeout=60)
        for name in daemons:  # warm-up read, not counted
            read_disk(devices[name], 1 << 20, 8)
        for r in range(cfg.data_rounds):
            for name in alternate(r, list(daemons)):
                runs[name].append(read_disk(devices[name], size, cfg.small_reads))
                print("data %s: %s" % (name, runs[name][-1]), flush=True)
        env.settle([0, 1])
    env.gadgets.remove_all()
    return runs


def tls_path(cfg: Config) -> Dict:
    """Three mass-storage gadgets exported by our usbipd and attached by our client: plainly, inside
    TLS handed to the kernel, and through an SSH port forward (the usual answer today). Read in turns.

    The SSH tunnel is OpenSSH on loopback in this guest (``ssh -L`` to the plain port), so its cost is
    the two userspace copies and the cipher, as on a real network, without a real network's latency.
    """
    env.reload_vudc(3)
    size = cfg.disk_mb << 20
    names = ("plain", "ktls", "ssh")
    for n in range(len(names)):
        env.gadgets.make("tls%d" % n, "usbip-vudc.%d" % n, VID, 0x0010 + n, "BENCH-TLS-%d" % n, "mass_storage",
                         env.backing_file("tls%d" % n, size, seed=10 + n))
    certs = pki.make_pki(os.path.join(env.WORK, "pki"))
    port = OUR_PORT + 20
    daemon = env.our_daemon(port, device=True, debug=True, config={"tls": {
        "cert": certs["server"], "key": certs["server-key"], "ca": certs["ca"], "port": port + 1}})
    tunnel = env.SshTunnel(local_port=port + 2, remote_port=port)
    client = env.console_script("usbip")
    tls_args = ["--tls-ca", certs["ca"], "--tls-cert", certs["client1"], "--tls-key", certs["client1-key"]]
    argv = {"plain": env.attach_argv(client, port, "usbip-vudc.0"),
            "ktls": [client] + tls_args + env.attach_argv(client, port + 1, "usbip-vudc.1")[1:],
            "ssh": env.attach_argv(client, port + 2, "usbip-vudc.2")}
    runs: Dict[str, List] = {name: [] for name in names}
    result: Dict = {"runs": runs, "cipher": None, "ssh": tunnel.version}
    with env.stopping(tunnel, daemon):
        env.settle([0, 1, 2])
        devices = {}
        for n, name in enumerate(names):
            attached = env.run(argv[name], timeout=60)
            if attached["rc"] != 0:
                raise RuntimeError("%s attach failed: %s" % (name, attached["out"][-300:]))
            local = env.wait_for(lambda busid="usbip-vudc.%d" % n: env.imported_as(busid), 30,
                                 "%s's disk enumerated" % name)
            devices[name] = env.block_device_of(local, timeout=60)
        with open("/proc/net/tls_stat") as f:
            result["tls_stat"] = f.read()
        with open(daemon.log.name) as f:
            result["daemon_log"] = f.read()[-2000:]
        found = re.search(r"identified as .*\((TLS_\w+)\)", result["daemon_log"])
        result["cipher"] = found.group(1) if found else None
        for name in names:  # warm-up read, not counted
            read_disk(devices[name], 1 << 20, 8)
        for r in range(cfg.data_rounds):
            for name in names[r % 3:] + names[:r % 3]:  # each goes first in turn
                runs[name].append(read_disk(devices[name], size, cfg.small_reads))
                print("tls %s: %s" % (name, runs[name][-1]), flush=True)
        env.detach_all()
        env.settle([0, 1, 2])
    env.gadgets.remove_all()
    return result


def read_disk(dev: str, size: int, small_count: int) -> Dict:
    """``dd`` with O_DIRECT, so every byte crosses USB/IP: 1 MiB reads for throughput, 4 KiB ones for latency.

    Times are dd's own (from its first read to its last), not the process's.
    """
    c_locale = dict(os.environ, LC_ALL="C")  # dd's summary line is parsed
    bulk = env.run(["dd", "if=" + dev, "of=/dev/null", "bs=1M", "count=%d" % (size >> 20), "iflag=direct"],
                   timeout=300, env=c_locale)
    small = env.run(["dd", "if=" + dev, "of=/dev/null", "bs=4k", "count=%d" % small_count, "iflag=direct"],
                    timeout=300, env=c_locale)
    bulk_s, small_s = _dd_seconds(bulk), _dd_seconds(small)
    return {"mb_s": (size / 1e6) / bulk_s if bulk_s else None,
            "read_4k_ms": 1e3 * small_s / small_count if small_s else None,
            "dd": (bulk["out"].strip().splitlines() or [""])[-1]}


def _dd_seconds(result: Dict) -> Optional[float]:
    match = re.search(r"copied, ([0-9.]+) s", str(result["out"]))
    return float(match.group(1)) if result["rc"] == 0 and match else None


# -- concurrent attaches ---------------------------------------------------------------------
def concurrent(cfg: Config) -> Dict:
    ways_max = max(w for w, _ in cfg.concurrent)
    env.reload_vudc(ways_max)
    for n in range(ways_max):
        env.gadgets.make("cc%d" % n, "usbip-vudc.%d" % n, VID, 0x0200 + n, "BENCH-CC-%d" % n, "mass_storage")
    daemon = env.our_daemon(OUR_PORT + 3, device=True)
    clients = {"ours": env.console_script("usbip"), "c": "usbip"}
    result: Dict = {}
    with env.stopping(daemon):
        for ways, rounds in cfg.concurrent:
            runs: Dict[str, List] = {name: [] for name in clients}
            for r in range(rounds):
                for name in alternate(r, list(clients)):
                    env.settle(range(ways_max))
                    runs[name].append(concurrent_round(clients[name], daemon.port, ways, cfg.concurrent_bound))
                    print("concurrent %d %s: %s" % (ways, name, {k: v for k, v in runs[name][-1].items()
                                                                 if k not in ("outputs", "dmesg")}), flush=True)
            result[str(ways)] = runs
        env.settle(range(ways_max))
    env.gadgets.remove_all()
    return result


def concurrent_round(tool: str, port: int, ways: int, bound: float) -> Dict:
    """``ways`` attaches started at once; each is killed at ``bound`` seconds (the C tool can hang)."""
    wanted = {"usbip-vudc.%d" % n for n in range(ways)}
    t0 = time.monotonic()
    procs = [subprocess.Popen(env.attach_argv(tool, port, "usbip-vudc.%d" % n), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for n in range(ways)]
    finished: List[Optional[float]] = [None] * ways
    while time.monotonic() - t0 < bound and None in finished:
        for i, p in enumerate(procs):
            if finished[i] is None and p.poll() is not None:
                finished[i] = time.monotonic() - t0
        time.sleep(0.02)
    hung = [env.where(p.pid) for p in procs if p.poll() is None]
    for p in procs:
        if p.poll() is None:
            p.kill()
    stuck = 0
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            stuck += 1  # in an uninterruptible kernel write: left behind
    codes = [p.returncode for p in procs]
    outputs = [p.stdout.read().decode("utf-8", "replace")[-200:] if p.poll() is not None else "" for p in procs]
    # A port counts once the kernel took the socket (its record names the device), enumerated or not.
    attached = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attached = {rec.busid for rec in (env.vhci().read_record(port) for port in env.used_ports()) if rec} & wanted
        if len(attached) >= codes.count(0):
            break
        time.sleep(0.2)
    done = [t for t in finished if t is not None]
    result = {"ways": ways, "ok": codes.count(0), "attached": len(attached), "killed": len(hung), "stuck": stuck,
              "wall": max(done) if not hung and done else bound, "hung_in": sorted(set(hung)),
              "outputs": sorted({o.strip() for o, c in zip(outputs, codes) if c != 0})}
    if len(attached) < codes.count(0):  # an attach that succeeded but is not there: keep the kernel's side
        result["missing"] = sorted(wanted - attached)
        result["dmesg"] = env.run(["dmesg"])["out"].splitlines()[-60:]
    return result


# -- memory with idle connections ------------------------------------------------------------
def idle_memory(cfg: Config) -> Dict:
    """Daemon memory with ``cfg.idle`` connections that never send a request."""
    env.reload_vudc(1)
    env.gadgets.make("idle", "usbip-vudc.0", VID, 0x0004, "BENCH-IDLE", "acm")
    # Our defaults refuse more than 64 connections per client address and close a silent one after
    # 10 s; one client address holding 1000 needs both raised (the C daemon has no such limits).
    config = {"max_connections": 4096, "max_per_client": 4096, "read_timeout": 300}
    result: Dict = {}
    for name in ("ours", "c"):
        daemon = (env.our_daemon(OUR_PORT + 4, device=True, config=config) if name == "ours"
                  else env.c_daemon(C_PORT + 4, device=True))
        with env.stopping(daemon):
            time.sleep(1)
            before = env.memory(daemon.pid)
            fds_before = env.fds(daemon.pid)
            socks = loadgen.open_idle(daemon.port, cfg.idle)
            try:
                # A connect completes before the server accepts it (the listen backlog is 128, and a
                # full queue delays the handshake's end): wait until the server really holds them all.
                if name == "c":
                    env.wait_for(lambda pid=daemon.pid: len(env.children(pid)) >= cfg.idle, 120,
                                 "the C daemon's children")
                else:
                    env.wait_for(lambda pid=daemon.pid, base=fds_before: env.fds(pid) - base >= cfg.idle, 120,
                                 "our daemon to accept every connection")
                time.sleep(2)
                own = env.memory(daemon.pid)
                kids = [env.memory(pid) for pid in env.children(daemon.pid)]
                result[name] = {
                    "connections": len(socks), "daemon_fds": env.fds(daemon.pid) - fds_before, "before": before,
                    "daemon": own, "children": len(kids),
                    "rss_kb": own["rss"] + sum(k["rss"] for k in kids),
                    "pss_kb": own["pss"] + sum(k["pss"] for k in kids),
                }
            finally:
                for s in socks:
                    s.close()
            print("idle %s: %s" % (name, result[name]), flush=True)
    env.gadgets.remove_all()
    return result


# -- scaling with devices per server --------------------------------------------------------
def scaling(cfg: Config) -> Dict:
    """DEVLIST at 8 clients as the server offers 1 -> 64 gadgets (usbip-vudc num=64)."""
    top = max(cfg.scaling)
    env.reload_vudc(top)
    result: Dict = {}
    made = 0
    for count in cfg.scaling:
        while made < count:
            env.gadgets.make("sc%d" % made, "usbip-vudc.%d" % made, VID, 0x0300 + made, "BENCH-SC-%d" % made,
                             "mass_storage")
            made += 1
        daemons = {"ours": env.our_daemon(OUR_PORT + 5, device=True), "c": env.c_daemon(C_PORT + 5, device=True)}
        with env.stopping(*daemons.values()):
            result[str(count)] = devlist_runs(cfg, daemons, devices=count, clients=(8,), rounds=1)["8"]
    env.gadgets.remove_all()
    return result


PHASES: Dict[str, Callable[[Config], Dict]] = {
    "machine": machine,
    "host": host_mode,
    "device": device_mode,
    "attach": attach_phase,
    "memory": idle_memory,
    "data": data_path,
    "concurrent": concurrent,
    "scaling": scaling,
    "tls": tls_path,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guest")
    parser.add_argument("--out", default="/tmp/xfer/results.json")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (a smoke test)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    args = parser.parse_args(argv)
    cfg = Config(args.quick)
    env.clean_work()
    env.load_kernel(vudc=4)
    results: Dict = {"quick": args.quick, "phases": {}, "errors": {}, "durations": {}}
    for name in args.phases.split(","):
        started = time.monotonic()
        print("== bench phase %s" % name, flush=True)
        _partial.clear()
        try:
            results["phases"][name] = PHASES[name](cfg)
        except Exception:
            traceback.print_exc()
            results["errors"][name] = traceback.format_exc()[-3000:]
            results["phases"][name] = dict(_partial)
            env.gadgets.remove_all()
        results["durations"][name] = time.monotonic() - started
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
