# The USB/IP ports in ufw or firewalld, and the removal of the nftables table when another backend is chosen
# (usbip.usbip.usbip_server; run as python3 -c, prints JSON; the table itself is templated by tasks/firewall.yml).
# stdin: JSON {"backend": "none" | "nftables" | "ufw" | "firewalld", "ports": [3240, 3241], "allow": ["10.0.0.0/8"],
#              "zone": "" (firewalld's default zone), "state": "/etc/usbip/firewall.json",
#              "nft_unit": "/etc/systemd/system/usbipd-firewall.service", "nft_file": "/etc/usbip/firewall.nft",
#              "check": false}
# ufw: `allow from <network> to any port <port> proto tcp` for each allowed network, then `deny` for the port (ufw
# drops), all with the comment usbip.usbip; ufw applies the first rule that matches, so the denies come last.
# firewalld: rich rules in the zone, runtime and permanent, the accepts (priority -2) before the drop (priority -1).
# An empty allow-list opens the ports to everyone. The rules added are recorded in the state file: a change of the
# allow-list, the ports, the zone or the backend (none and nftables included) removes exactly those, and no rule of
# anyone else is touched.
import ipaddress
import json
import os
import shutil
import subprocess
import sys

COMMENT = "usbip.usbip"


class Failure(Exception):
    pass


def run(argv, ok=(0,)):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    if proc.returncode not in ok:
        raise Failure("%s: %s" % (" ".join(argv), proc.stdout.strip() or "exit status %d" % proc.returncode))
    return proc


def ufw_rules(ports, allow):
    rules = []
    for port in ports:
        sources = allow or ["any"]
        for source in sources:
            rules.append(["allow", "proto", "tcp", "from", source, "to", "any", "port", str(port), "comment", COMMENT])
        if allow:
            rules.append(["deny", "proto", "tcp", "from", "any", "to", "any", "port", str(port), "comment", COMMENT])
    return rules


def firewalld_rules(ports, allow):
    if not allow:
        return [["port", "%d/tcp" % port] for port in ports]
    rules = []
    for port in ports:
        for network in allow:
            family = "ipv%d" % ipaddress.ip_network(network, strict=False).version
            rule = 'rule priority="-2" family="%s" source address="%s" port port="%d" protocol="tcp" accept'
            rules.append(["rich-rule", rule % (family, network, port)])
        rules.append(["rich-rule", 'rule priority="-1" port port="%d" protocol="tcp" drop' % port])
    return rules


def ufw_missing(rules):
    """The rules ufw does not have: a dry run of an add skips a rule ufw has (for IPv4 and IPv6 alike)."""
    missing = []
    for rule in rules:
        out = run(["ufw", "--dry-run"] + rule).stdout
        if "Skipping" not in out or "Rule added" in out or "Rules updated" in out:
            missing.append(rule)
    return missing


def ufw_apply(desired, recorded, check):
    """Removes the recorded rules and adds the desired ones in order, when they differ or one is missing."""
    if desired == recorded and not ufw_missing(desired):
        return [], []
    if not check:
        for rule in recorded + [rule for rule in desired if rule not in recorded]:
            proc = run(["ufw", "delete"] + rule, ok=(0, 1))
            if proc.returncode and "non-existent" not in proc.stdout:
                raise Failure("ufw delete %s: %s" % (" ".join(rule), proc.stdout.strip()))
        for rule in desired:
            run(["ufw"] + rule)
    return list(desired), [rule for rule in recorded if rule not in desired]


def firewalld_base(zone, permanent):
    return ["firewall-cmd"] + (["--permanent"] if permanent else []) + (["--zone", zone] if zone else [])


def firewalld_has(rule, zone, permanent):
    kind, value = rule
    return run(firewalld_base(zone, permanent) + ["--query-%s=%s" % (kind, value)], ok=(0, 1)).returncode == 0


def firewalld_apply(desired, recorded, zone, recorded_zone, check):
    added, removed = [], []
    for permanent in (False, True):
        for rule in recorded:
            if (rule in desired and zone == recorded_zone) or not firewalld_has(rule, recorded_zone, permanent):
                continue
            if rule not in removed:
                removed.append(rule)
            if not check:
                run(firewalld_base(recorded_zone, permanent) + ["--remove-%s=%s" % tuple(rule)])
        for rule in desired:
            if firewalld_has(rule, zone, permanent):
                continue
            if rule not in added:
                added.append(rule)
            if not check:
                run(firewalld_base(zone, permanent) + ["--add-%s=%s" % tuple(rule)])
    return added, removed


def remove_recorded(recorded, check):
    backend, rules = recorded.get("backend"), recorded.get("rules", [])
    if backend == "ufw":
        return ufw_apply([], rules, check)[1] if rules else []
    if backend == "firewalld":
        return firewalld_apply([], rules, "", recorded.get("zone", ""), check)[1]
    return []


def remove_nftables(unit, path, check):
    """The unit that loads the table (stopping it deletes the table) and the table's file."""
    removed = []
    if os.path.exists(unit):
        removed.append(unit)
        if not check:
            run(["systemctl", "disable", "--now", os.path.basename(unit)])
            os.unlink(unit)
            run(["systemctl", "daemon-reload"])
    if os.path.exists(path):
        removed.append(path)
        if not check:
            os.unlink(path)
    return removed


def require(tool, backend):
    if shutil.which(tool) is None:
        raise Failure("usbip_server_firewall: %s needs %s, which is not installed" % (backend, tool))


def main(request):
    backend, ports, zone, check = request["backend"], request["ports"], request.get("zone") or "", request["check"]
    allow = [str(ipaddress.ip_network(network, strict=False)) for network in request["allow"]]
    state = request["state"]
    try:
        with open(state) as f:
            recorded = json.load(f)
    except FileNotFoundError:
        recorded = {}
    warnings = []
    # The chosen backend must work before anything of another one goes: a failed switch keeps the old firewall.
    if backend == "ufw":
        require("ufw", backend)
    elif backend == "firewalld":
        require("firewall-cmd", backend)
        if run(["firewall-cmd", "--state"], ok=(0, 252)).returncode:
            raise Failure("firewalld is not running (usbip_server_firewall: firewalld needs it)")
    removed_nftables = [] if backend == "nftables" else remove_nftables(request["nft_unit"], request["nft_file"], check)
    if backend not in ("ufw", "firewalld") or recorded.get("backend") not in (None, backend):
        added, removed = [], remove_recorded(recorded, check)
        recorded = {}
    else:
        added, removed = [], []
    if backend == "ufw":
        if "inactive" in run(["ufw", "status"]).stdout:
            warnings.append("ufw is inactive: its rules, the USB/IP ones included, apply once it is enabled")
        desired = ufw_rules(ports, allow)
        more_added, more_removed = ufw_apply(desired, recorded.get("rules", []), check)
    elif backend == "firewalld":
        desired = firewalld_rules(ports, allow)
        more_added, more_removed = firewalld_apply(desired, recorded.get("rules", []), zone,
                                                   recorded.get("zone", zone), check)
    else:
        desired, more_added, more_removed = None, [], []
    added += more_added
    removed += more_removed
    new_state = {"backend": backend, "zone": zone, "rules": desired} if desired is not None else None
    if not check:
        if new_state is None:
            if os.path.exists(state):
                os.unlink(state)
        elif new_state != recorded:
            with open(state + ".tmp", "w") as f:
                json.dump(new_state, f, indent=1)
            os.chmod(state + ".tmp", 0o644)
            os.rename(state + ".tmp", state)
    removed = [" ".join(rule) for rule in removed] + removed_nftables
    return {"changed": bool(added or removed), "added": [" ".join(rule) for rule in added], "removed": removed,
            "warnings": warnings}


try:
    sys.stdout.write(json.dumps(main(json.load(sys.stdin))))
except (Failure, ValueError, OSError) as error:
    sys.stdout.write(json.dumps({"failed": True, "msg": str(error)}))
    sys.exit(1)
