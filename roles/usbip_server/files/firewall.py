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
# anyone else is touched. A rule the firewall already has when the role would add it is someone else's: it is neither
# added (ufw would replace it with the role's, firewalld has it already) nor recorded, so never removed; a warning
# names it. When the backend of the record is no longer installed or running, its rules cannot be removed: a warning
# names them and the record is dropped.
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


def ufw_key(rule):
    """What tells one ufw rule from another: all but the action and the comment, as `ufw show added` writes it.

    ufw keeps one rule per key: an add whose key a rule already has replaces that rule (its action and comment).
    """
    fields = dict(zip(rule[1::2], rule[2::2]))
    if fields["from"] == "any":
        return "%s/%s" % (fields["port"], fields["proto"])
    network = ipaddress.ip_network(fields["from"], strict=False)
    source = network.network_address if network.prefixlen == network.max_prefixlen else network
    return "from %s to any port %s proto %s" % (source, fields["port"], fields["proto"])


def ufw_existing():
    """{key: [(action, comment), ...]} of the rules ufw has, from `ufw show added`."""
    existing = {}
    for line in run(["ufw", "show", "added"]).stdout.splitlines():
        if not line.startswith("ufw "):
            continue
        words, comment = line[len("ufw "):], ""
        if words.endswith("'") and " comment '" in words:
            words, comment = words[:-1].rsplit(" comment '", 1)
        action, _sep, key = words.partition(" ")
        existing.setdefault(key, []).append((action, comment))
    return existing


def ufw_apply(desired, recorded, check):
    """Removes the recorded rules and adds the role's in order, when they differ or one is missing.

    Returns the rules added, the rules removed, the role's rules (the new record) and the desired rules that ufw
    already has as someone else's (left alone).
    """
    existing = ufw_existing() if desired else {}
    ours, foreign = [], []
    for rule in desired:
        found = existing.get(ufw_key(rule), [])
        if found and (rule not in recorded or found != [(rule[0], COMMENT)]):
            foreign.append(rule)
        else:
            ours.append(rule)
    if ours == recorded and not ufw_missing(ours):
        return [], [], ours, foreign
    if not check:
        # Only the recorded rules go: a delete that carries the role's comment never takes someone else's.
        for rule in recorded:
            proc = run(["ufw", "delete"] + rule, ok=(0, 1))
            if proc.returncode and "non-existent" not in proc.stdout:
                raise Failure("ufw delete %s: %s" % (" ".join(rule), proc.stdout.strip()))
        for rule in ours:
            run(["ufw"] + rule)
    return list(ours), [rule for rule in recorded if rule not in ours], ours, foreign


def firewalld_base(zone, permanent):
    return ["firewall-cmd"] + (["--permanent"] if permanent else []) + (["--zone", zone] if zone else [])


def firewalld_has(rule, zone, permanent):
    kind, value = rule
    return run(firewalld_base(zone, permanent) + ["--query-%s=%s" % (kind, value)], ok=(0, 1)).returncode == 0


def firewalld_apply(desired, recorded, zone, recorded_zone, check):
    """Removes the recorded rules no longer desired and adds the role's that are missing, at runtime and for good.

    Returns the rules added, the rules removed, the role's rules (the new record) and the desired rules that
    firewalld had before the role added them (someone else's: left alone).
    """
    same_zone = zone == recorded_zone
    foreign = [rule for rule in desired if not (same_zone and rule in recorded)
               and (firewalld_has(rule, zone, False) or firewalld_has(rule, zone, True))]
    ours = [rule for rule in desired if rule not in foreign]
    added, removed = [], []
    for permanent in (False, True):
        for rule in recorded:
            if (rule in ours and same_zone) or not firewalld_has(rule, recorded_zone, permanent):
                continue
            if rule not in removed:
                removed.append(rule)
            if not check:
                run(firewalld_base(recorded_zone, permanent) + ["--remove-%s=%s" % tuple(rule)])
        for rule in ours:
            if firewalld_has(rule, zone, permanent):
                continue
            if rule not in added:
                added.append(rule)
            if not check:
                run(firewalld_base(zone, permanent) + ["--add-%s=%s" % tuple(rule)])
    return added, removed, ours, foreign


def unavailable(backend):
    """Why the rules of ``backend`` cannot be changed now (not installed, not running), or None."""
    tool = {"ufw": "ufw", "firewalld": "firewall-cmd"}[backend]
    if shutil.which(tool) is None:
        return "%s is not installed" % backend
    if backend == "firewalld" and run(["firewall-cmd", "--state"], ok=(0, 252)).returncode:
        return "firewalld is not running"
    return None


def remove_recorded(recorded, check, warnings):
    """Removes the rules recorded for another backend; when that one is gone or stopped, warns and forgets them."""
    backend, rules = recorded.get("backend"), recorded.get("rules", [])
    if backend not in ("ufw", "firewalld") or not rules:
        return []
    why = unavailable(backend)
    if why is not None:
        warnings.append("%s: the %s rules the role recorded%s are not removed and no longer recorded: %s"
                        % (why, backend, " in zone %s" % recorded["zone"] if recorded.get("zone") else "",
                           "; ".join(" ".join(rule) for rule in rules)))
        return []
    if backend == "ufw":
        return ufw_apply([], rules, check)[1]
    return firewalld_apply([], rules, "", recorded.get("zone", ""), check)[1]


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
    dropped = False
    if backend not in ("ufw", "firewalld") or recorded.get("backend") not in (None, backend):
        removed = remove_recorded(recorded, check, warnings)
        dropped = bool(recorded.get("rules")) and not removed
        recorded = {}
    else:
        removed = []
    if backend == "ufw":
        if "inactive" in run(["ufw", "status"]).stdout:
            warnings.append("ufw is inactive: its rules, the USB/IP ones included, apply once it is enabled")
        added, more_removed, ours, foreign = ufw_apply(ufw_rules(ports, allow), recorded.get("rules", []), check)
    elif backend == "firewalld":
        added, more_removed, ours, foreign = firewalld_apply(firewalld_rules(ports, allow), recorded.get("rules", []),
                                                             zone, recorded.get("zone", zone), check)
    else:
        added, more_removed, ours, foreign = [], [], None, []
    removed += more_removed
    for rule in foreign:
        warnings.append("%s already has a rule for %s%s that the role did not add: it stays as it is, and the role"
                        " neither adds nor records its own (%s)"
                        % (backend, ufw_key(rule) if backend == "ufw" else rule[1],
                           " in zone %s" % zone if zone and backend == "firewalld" else "", " ".join(rule)))
    new_state = {"backend": backend, "zone": zone, "rules": ours} if ours is not None else None
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
    rewritten = new_state is not None and new_state != recorded
    return {"changed": bool(added or removed or dropped or rewritten),
            "added": [" ".join(rule) for rule in added], "removed": removed, "warnings": warnings}


try:
    sys.stdout.write(json.dumps(main(json.load(sys.stdin))))
except (Failure, ValueError, OSError) as error:
    sys.stdout.write(json.dumps({"failed": True, "msg": str(error)}))
    sys.exit(1)
