#!/usr/bin/python
# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: usbip_attach
short_description: Attach a USB device exported by a USB/IP server (client side)
version_added: "0.1.0"
description:
  - Imports a device from a USB/IP server and attaches it to a local C(vhci_hcd) port, or detaches it.
  - The device is chosen by its O(busid) on the server or by a O(match) on vendor and product IDs and the
    server's port path, resolved against the server's list of available devices.
  - With O(all), every device of the server that O(match) takes (every device the server offers, without
    O(match)) is attached, one after the other; RV(attached) lists them.
  - Idempotent through the vhci port status and the attachment records in C(/var/run/vhci_hcd), the same records
    the C C(usbip) tool writes. A device already attached from the same server (and bus ID, or with matching
    IDs) is present and the server is not contacted; V(absent) detaches only what matches.
  - In check mode nothing is written and nothing is imported; the server's device list is read to resolve and
    check the device.
author:
  - usbip.usbip contributors (@usbip)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - usbip.usbip.kernel_modules
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the table of vhci ports in use, with the remote device of each.
  platform:
    support: full
    platforms: posix
    details: Linux with the C(vhci-hcd) kernel module.
options:
  server:
    description: Host name or address of the USB/IP server.
    type: str
    required: true
  port:
    description: TCP port of the server; 3240 by default, 3241 with O(tls).
    type: int
  tls:
    description:
      - Import the device inside TLS 1.3 from a server's TLS port, with certificates on both ends; the kernel then
        encrypts the USB traffic itself (kernel TLS, the C(tls) module, loaded with O(load_kernel_modules)).
      - The server must run this collection's C(usbipd) with TLS (role variable C(usbip_server_tls)); Debian's C
        tools have no TLS.
    type: dict
    suboptions:
      ca:
        description: CA certificates (PEM) that sign the server's certificate.
        type: path
        required: true
      cert:
        description: This client's certificate (PEM), signed by a CA the server accepts.
        type: path
        required: true
      key:
        description: The private key of O(tls.cert) (PEM).
        type: path
        required: true
      server_name:
        description: Name the server's certificate must carry; O(server) by default.
        type: str
  busid:
    description:
      - Bus ID of the device on the server (C(1-1.4), or C(usbip-vudc.N) for a device-mode gadget).
      - Mutually exclusive with O(match).
    type: str
  match:
    description:
      - Select the device by IDs and port path instead of bus ID; every criterion given must hold.
      - With O(state=present), a device with these IDs (and a bus ID on the server that ends in the port path's
        devpath) already attached from the server counts as present; otherwise exactly one available device of the
        server must match (with O(all), every one that matches is attached).
      - With O(state=absent), every device with these IDs attached from the server is detached.
      - A server's list carries no serial number; a device is told apart from an identical one by
        O(match.port_path).
      - Mutually exclusive with O(busid).
    type: dict
    suboptions:
      vendor:
        description:
          - Vendor ID, as four hex digits (V('0403')) or as an integer.
          - Quote hex IDs in YAML; an unquoted V(1209) is the decimal integer 1209.
        type: raw
      product:
        description: Product ID, in the same forms as O(match.vendor).
        type: raw
      port_path:
        description:
          - The physical port of the device on the server, V(<controller>-<devpath>) (V(0000:00:14.0-1.4)), computed
            from the sysfs path the server sends as M(usbip.usbip.usbip_bind) and the server's export rules compute
            it locally (RV(usbip.usbip.usbip_info#module:remote_devices[].port_path) shows it); a bare devpath
            (V(1.4)) matches that port on any of the server's controllers.
          - A device-mode gadget (C(usbip-vudc.N)) has no port path and never matches one.
        type: str
  all:
    description:
      - Attach every device of the server that O(match) takes, or with no O(match) every device the server offers,
        instead of exactly one. Devices already attached from the server count as present; the others are
        attached one after the other.
      - The single-device return values RV(port), RV(local_busid) and RV(device) are then null and RV(remote)
        names the server only; RV(attached) holds one result per device.
      - With O(state=absent), every device attached from the server that O(match) takes (every one without
        O(match)) is detached.
      - Not with O(busid).
    type: bool
    default: false
  state:
    description:
      - Whether the device is attached.
      - V(absent) waits a few seconds until the kernel has released the detached ports.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description:
      - With O(state=present), wait until the attached device has enumerated on this host (its bus ID exists in
        sysfs), at most O(wait_timeout) seconds.
      - Uses kernel uevents through C(pyudev) when it is installed, and polls sysfs otherwise.
    type: bool
    default: true
  wait_timeout:
    description: Bound of O(wait), in seconds.
    type: int
    default: 30
  wait_for_driver:
    description:
      - With O(wait), also wait until the device and each of its interfaces have a driver bound.
      - Leave V(false) for devices used through libusb or without a kernel driver.
    type: bool
    default: false
  timeout:
    description:
      - Bound on each exchange with the server (connecting, TLS handshake, the request and its complete reply),
        in seconds.
    type: int
    default: 10
seealso:
  - module: usbip.usbip.usbip_bind
  - module: usbip.usbip.usbip_info
"""

EXAMPLES = r"""
- name: Attach the FTDI adapter exported by lab-server
  usbip.usbip.usbip_attach:
    server: lab-server.example.com
    match:
      vendor: "0403"
      product: "6001"
  become: true
  register: ftdi

- name: Show where it went
  ansible.builtin.debug:
    msg: "port {{ ftdi.port }}, local bus ID {{ ftdi.local_busid }}"

- name: Attach a disk over TLS, encrypted by the kernel
  usbip.usbip.usbip_attach:
    server: 192.0.2.10
    busid: usbip-vudc.1
    tls:
      ca: /etc/usbip/tls/ca.crt
      cert: /etc/usbip/tls/client.crt
      key: /etc/usbip/tls/client.key
  become: true

- name: Attach a device-mode gadget by bus ID and wait for its drivers
  usbip.usbip.usbip_attach:
    server: 192.0.2.10
    port: 3241
    busid: usbip-vudc.0
    wait_for_driver: true
  become: true

- name: Attach every disk of this model that lab-server offers, now and on each run
  usbip.usbip.usbip_attach:
    server: lab-server.example.com
    all: true
    match:
      vendor: "46f4"
      product: "0001"
  become: true
  register: disks

- name: Attach the one of two identical disks plugged into port 1.2 behind the server's hub
  usbip.usbip.usbip_attach:
    server: lab-server.example.com
    match:
      vendor: "46f4"
      product: "0001"
      port_path: "1.2"
  become: true

- name: Detach whatever this host attached from lab-server with these IDs
  usbip.usbip.usbip_attach:
    server: lab-server.example.com
    match:
      vendor: "0403"
      product: "6001"
    state: absent
  become: true
"""

RETURN = r"""
port:
  description: The vhci port of the device (null in check mode before the attach, and with O(state=absent)).
  returned: success
  type: int
  sample: 0
local_busid:
  description: Bus ID of the device on this host, once it has enumerated (null before).
  returned: success
  type: str
  sample: 3-1
remote:
  description: The device on the server.
  returned: success and O(state=present)
  type: dict
  contains:
    host:
      description: Server, as given.
      type: str
    port:
      description: TCP port of the server.
      type: int
    busid:
      description: Bus ID on the server.
      type: str
    id_vendor:
      description: Vendor ID, when known (from the server's list or the local device).
      type: str
    id_product:
      description: Product ID, when known.
      type: str
device:
  description: The local device the attachment became (see M(usbip.usbip.usbip_bind) for the keys), once it
    has enumerated; null before.
  returned: success and O(state=present)
  type: dict
detached:
  description: Ports detached (with O(state=absent); in check mode, that would be).
  returned: success and O(state=absent)
  type: list
  elements: dict
attached:
  description:
    - With O(all) and O(state=present), one entry per device the declaration covers, already attached or attached
      now (in check mode, that would be attached), each with the keys C(changed), C(port), C(local_busid),
      C(remote) and C(device) as a run without O(all) returns them for one device.
    - Empty when the server offers no device that O(match) takes and none is attached.
  returned: success, with O(all) and O(state=present)
  type: list
  elements: dict
ports:
  description: The vhci ports in use after the task (in check mode, as found).
  returned: success
  type: list
  elements: dict
sysfs_changes:
  description: The sysfs writes made, or in check mode the ones that would be made (an attach is listed as
    one C(attach) entry in check mode).
  returned: always
  type: list
  elements: dict
kernel_modules:
  description: Kernel modules loaded by the task (in check mode, that would be loaded).
  returned: always
  type: list
  elements: str
  sample: [vhci-hcd]
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_args import KERNEL_MODULES_ARGS, match_args
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_module import KTLS, Context, diff
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_results import (
    hex4,
    local_device_info,
    remote_device_info,
)
from ansible_collections.usbip.usbip.plugins.module_utils.usbip import attachments, matching, validate
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.errors import InvalidArgument
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.usb import UsbBus
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vhci import KERNEL_MODULE as VHCI_HCD
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vhci import VhciDriver


def port_line(p):
    """One row of the port table the diff shows."""
    origin = "%s:%s/%s" % (p.host, p.remote_port, p.remote_busid) if p.host else "(no attachment record)"
    local = p.local_busid if p.local_busid not in ("0-0", "") else "(enumerating)"
    return "port %d (%s): %s -> %s" % (p.port, p.hub, origin, local)


def port_info(p):
    return {"port": p.port, "hub": p.hub, "status": p.status.name.lower(), "speed": p.speed.description,
            "local_busid": p.local_busid, "host": p.host, "remote_port": p.remote_port,
            "remote_busid": p.remote_busid}


def table(lines):
    return "".join(line + "\n" for line in lines) if lines else "(no vhci port in use)\n"


def converge(ctx):
    params = ctx.module.params
    state = params["state"]
    # Validate everything before any sysfs access or connection.
    server = validate.host(params["server"], "server")
    tls_params = params["tls"]
    tcp_port = validate.tcp_port(params["port"] if params["port"] is not None
                                 else attachments.default_port(bool(tls_params)))
    busid = validate.busid(params["busid"]) if params["busid"] is not None else None
    match = matching.Match.checked(**params["match"]) if params["match"] is not None else None
    every = bool(params["all"])
    if every and busid is not None:
        raise InvalidArgument("all: true attaches every device a match takes (or every device the server offers, "
                              "without a match): not with busid")
    if not every and busid is None and match is None:
        raise InvalidArgument("one of the following is required: busid, match (or all: true)")
    wait_timeout = validate.integer(params["wait_timeout"], "wait_timeout", 1, 3600)
    timeout = validate.integer(params["timeout"], "timeout", 1, 3600)
    header = "vhci ports (attachments from %s:%d)" % (server, tcp_port)

    vhci = VhciDriver(ctx.sysfs)
    if state == "absent" and ctx.missing_kernel_modules([VHCI_HCD]):
        return {"changed": False, "port": None, "local_busid": None, "detached": [], "ports": []}
    ctx.load_kernel_modules([VHCI_HCD] + ([KTLS] if tls_params else []))
    tls = attachments.tls_endpoint(**tls_params) if tls_params else None
    # In check mode vhci-hcd may still be missing: then nothing is attached yet.
    vhci_ready = not (ctx.check_mode and ctx.kernel_modules)
    # "Is it attached? / attach" under the host's attach lock, which usbip-attachd takes too: neither sees
    # the other's attach half done (no lock in check mode, which attaches nothing).
    with contextlib.ExitStack() as held:
        if state == "present":
            held.enter_context(attachments.attach_lock(ctx.sysfs))
        before = vhci.imported() if vhci_ready else []
        mine = attachments.find(vhci, server, tcp_port, busid, match) if vhci_ready else []

        if state == "absent":
            detached = [port_info(a.imported) for a in mine if vhci.detach(a.imported.port)]
            gone = {d["port"] for d in detached}
            if detached and not ctx.check_mode:
                attachments.wait_released(vhci, gone)
            after = before if ctx.check_mode else vhci.imported()
            after_lines = [port_line(p) for p in after if not (ctx.check_mode and p.port in gone)]
            result = {"changed": bool(detached), "port": None, "local_busid": None, "detached": detached,
                      "ports": [port_info(p) for p in after]}
            if ctx.diff_mode:
                result["diff"] = diff(table([port_line(p) for p in before]), table(after_lines), header)
            return result

        remote = {"host": server, "port": tcp_port}
        new_line = None
        if every:
            entries = attach_every(ctx, vhci, server, tcp_port, match, mine, timeout, tls)
        elif mine:
            changed = False
            port = mine[0].imported.port
            remote["busid"] = mine[0].imported.remote_busid
            if mine[0].local is not None:
                remote.update(id_vendor=hex4(mine[0].local.device.id_vendor),
                              id_product=hex4(mine[0].local.device.id_product))
        else:
            changed = True
            device = attachments.resolve(server, tcp_port, busid, match, timeout, tls)
            remote.update(busid=device.busid, id_vendor=hex4(device.id_vendor),
                          id_product=hex4(device.id_product), device=remote_device_info(device))
            if ctx.check_mode:
                # Importing would take the device from the server: check mode stops here.
                port = None
                attachments.plan_attach(vhci, server, tcp_port, device.busid)
                new_line = "port ? (new): %s:%d/%s -> (would attach)" % (server, tcp_port, device.busid)
            else:
                port = attachments.attach(server, tcp_port, device.busid, vhci, timeout=timeout, tls=tls).port

    if every:
        return every_result(ctx, vhci, entries, before, header, remote, wait_timeout)
    local_busid = None
    local = None
    if port is not None:
        if params["wait"] and not ctx.check_mode:
            local_busid = attachments.wait_enumerated(vhci, port, wait_timeout, params["wait_for_driver"], ctx.sysfs)
        else:
            row = next((p for p in vhci.ports() if p.port == port), None)
            local_busid = row.local_busid if row is not None else None
        local = attachments.local_device(UsbBus(ctx.sysfs), local_busid) if local_busid else None
        if local is None:
            local_busid = None
    after = before if ctx.check_mode else vhci.imported()
    after_lines = [port_line(p) for p in after] + ([new_line] if new_line else [])
    result = {
        "changed": changed,
        "port": port,
        "local_busid": local_busid,
        "remote": remote,
        "device": local_device_info(local) if local is not None else None,
        "ports": [port_info(p) for p in after],
    }
    if ctx.diff_mode:
        result["diff"] = diff(table([port_line(p) for p in before]), table(after_lines), header)
    return result


def attach_every(ctx, vhci, server, tcp_port, match, mine, timeout, tls):
    """With all: the devices already attached (kept) and each one the server offers that the match takes (attached,
    or in check mode planned); under the attach lock. Entries: changed, vhci port, remote, diff line."""
    entries = []
    for a in mine:
        remote = {"host": server, "port": tcp_port, "busid": a.imported.remote_busid}
        if a.local is not None:
            remote.update(id_vendor=hex4(a.local.device.id_vendor), id_product=hex4(a.local.device.id_product))
        entries.append((False, a.imported.port, remote, None))
    attached = {a.imported.remote_busid for a in mine}
    for device in attachments.resolve_all(server, tcp_port, match, timeout, tls):
        if device.busid in attached:
            continue
        remote = {"host": server, "port": tcp_port, "busid": device.busid, "id_vendor": hex4(device.id_vendor),
                  "id_product": hex4(device.id_product), "device": remote_device_info(device)}
        if ctx.check_mode:
            attachments.plan_attach(vhci, server, tcp_port, device.busid)
            line = "port ? (new): %s:%d/%s -> (would attach)" % (server, tcp_port, device.busid)
            entries.append((True, None, remote, line))
        else:
            port = attachments.attach(server, tcp_port, device.busid, vhci, timeout=timeout, tls=tls).port
            entries.append((True, port, remote, None))
    return entries


def every_result(ctx, vhci, entries, before, header, remote, wait_timeout):
    """The result of an all run: one single-device result per entry in attached, the top-level device keys null."""
    params = ctx.module.params
    bus = UsbBus(ctx.sysfs)
    results = []
    for changed, port, entry_remote, _line in entries:
        local_busid = local = None
        if port is not None:
            if params["wait"] and not ctx.check_mode:
                local_busid = attachments.wait_enumerated(vhci, port, wait_timeout, params["wait_for_driver"],
                                                          ctx.sysfs)
            else:
                row = next((p for p in vhci.ports() if p.port == port), None)
                local_busid = row.local_busid if row is not None else None
            local = attachments.local_device(bus, local_busid) if local_busid else None
            if local is None:
                local_busid = None
        results.append({"changed": changed, "port": port, "local_busid": local_busid, "remote": entry_remote,
                        "device": local_device_info(local) if local is not None else None})
    after = before if ctx.check_mode else vhci.imported()
    new_lines = [line for _changed, _port, _remote, line in entries if line]
    result = {
        "changed": any(r["changed"] for r in results),
        "port": None,
        "local_busid": None,
        "remote": remote,
        "device": None,
        "attached": results,
        "ports": [port_info(p) for p in after],
    }
    if ctx.diff_mode:
        result["diff"] = diff(table([port_line(p) for p in before]), table([port_line(p) for p in after] + new_lines),
                              header)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server=dict(type="str", required=True),
            port=dict(type="int"),
            tls=dict(type="dict", options=dict(
                ca=dict(type="path", required=True),
                cert=dict(type="path", required=True),
                key=dict(type="path", required=True, no_log=False),
                server_name=dict(type="str"),
            )),
            busid=dict(type="str"),
            match=match_args("vendor", "product", "port_path"),
            all=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=30),
            wait_for_driver=dict(type="bool", default=False),
            timeout=dict(type="int", default=10),
            **KERNEL_MODULES_ARGS,
        ),
        mutually_exclusive=[("busid", "match")],
        supports_check_mode=True,
    )
    ctx = Context(module)
    ctx.run(lambda: converge(ctx))


if __name__ == "__main__":
    main()
