# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/usbip_server/files/firewall.py: the ufw and firewalld rules of the USB/IP ports, and their record.

Run as tasks/firewall.yml runs it (``python3 -c <script>``, the request as JSON on stdin) with fake ``ufw``,
``firewall-cmd`` and ``systemctl`` alone on ``PATH``. The fakes (shell scripts) keep their rules in files, one
a line, log every command line, and answer the queries the script makes with the real tools' words:
``ufw --dry-run`` says "Skipping adding existing rule" for a rule it has and "Rules updated" for one it would
add, ``firewall-cmd --query-*`` exits 0 or 1. A rule of someone else is in both from the start and must stay.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import pytest
from role_scripts import LOG_ARGV, read_log, run_script, script_text, write_tool

SCRIPT = script_text("roles/usbip_server/files/firewall.py")

#: ufw: its rules in $FAKE_FW/ufw.rules, one a line (the words of the command line that added it). As the real ufw,
#: it tells rules apart by all but their action and comment (the key): an add whose key a rule has already replaces
#: that rule's action and comment ("Rule updated"), a delete takes only the rule with the same action and comment
#: (or any comment, when the delete gives none), and `show added` lists the rules as ufw writes them.
FAKE_UFW = """#!/bin/sh
PATH=/usr/bin:/bin
LOG=$FAKE_FW/ufw.log
RULES=$FAKE_FW/ufw.rules
""" + LOG_ARGV + r"""
touch "$RULES"
if [ "$*" = status ]; then
    if [ -e "$FAKE_FW/ufw.inactive" ]; then echo "Status: inactive"; else echo "Status: active"; fi
    exit 0
fi
# parse WORDS...: sets action, key (what `show added` writes between the action and the comment) and comment.
parse() {
    action=$1; shift
    case "$action" in allow|deny) ;; *) echo "ERROR: Invalid syntax"; exit 1 ;; esac
    proto=any; src=any; dst=any; port=; comment=; short=
    while [ "$#" -gt 0 ]; do
        case "$1" in
            proto|from|to|port|comment)
                if [ "$#" -lt 2 ]; then echo "ERROR: Invalid syntax"; exit 1; fi
                case "$1" in
                    proto) proto=$2 ;; from) src=$2 ;; to) dst=$2 ;; port) port=$2 ;; comment) comment=$2 ;;
                esac
                shift 2 ;;
            */*) short=$1; shift ;;
            *) echo "ERROR: Invalid syntax"; exit 1 ;;
        esac
    done
    case "$src" in *:*) src=${src%/128} ;; *) src=${src%/32} ;; esac
    if [ -n "$short" ]; then key=$short
    elif [ "$src" = any ] && [ "$dst" = any ]; then key="$port/$proto"
    else key="from $src to $dst port $port proto $proto"; fi
}
if [ "$*" = "show added" ]; then
    echo "Added user rules (see 'ufw status' for running firewall):"
    if [ ! -s "$RULES" ]; then echo "(None)"; exit 0; fi
    while IFS= read -r line; do
        set -f; set -- $line; set +f
        parse "$@"
        if [ -n "$comment" ]; then echo "ufw $action $key comment '$comment'"; else echo "ufw $action $key"; fi
    done <"$RULES"
    exit 0
fi
dry_run=; delete=
if [ "$1" = --dry-run ]; then dry_run=1; shift; fi
if [ "$1" = delete ]; then delete=1; shift; fi
if [ -n "$dry_run" ] && [ -n "$delete" ]; then echo "ERROR: Invalid syntax"; exit 1; fi
rule="$*"
parse "$@"
new_action=$action; new_key=$key; new_comment=$comment
# A rule from any source applies to IPv6 too: ufw answers for both.
case " $rule " in *" from any "*) v6=1 ;; *" from "*) v6= ;; *) v6=1 ;; esac
say() {
    echo "$1"
    if [ -n "$v6" ]; then echo "$1 (v6)"; fi
}
at=0; n=0
while IFS= read -r line; do
    n=$((n + 1))
    set -f; set -- $line; set +f
    parse "$@"
    if [ "$key" = "$new_key" ]; then at=$n; old_action=$action; old_comment=$comment; break; fi
done <"$RULES"
same=
if [ "$at" -gt 0 ] && [ "$old_action" = "$new_action" ] && [ "$old_comment" = "$new_comment" ]; then same=1; fi
if [ -n "$delete" ]; then
    if [ "$at" -eq 0 ] || [ "$old_action" != "$new_action" ] || { [ -n "$new_comment" ] && [ -z "$same" ]; }; then
        say "Could not delete non-existent rule"; exit 0
    fi
    awk -v n="$at" 'NR != n' "$RULES" >"$RULES.new"
    mv "$RULES.new" "$RULES"
    say "Rule deleted"
elif [ -n "$same" ]; then
    say "Skipping adding existing rule"
elif [ -n "$dry_run" ]; then
    printf '*filter\n:ufw-user-input - [0:0]\nCOMMIT\n'
    say "Rules updated"
elif [ "$at" -gt 0 ]; then
    awk -v n="$at" -v r="$rule" '{ if (NR == n) print r; else print }' "$RULES" >"$RULES.new"
    mv "$RULES.new" "$RULES"
    say "Rule updated"
else
    printf '%s\n' "$rule" >>"$RULES"
    say "Rule added"
fi
"""

#: firewall-cmd: the rules of a zone in $FAKE_FW/<runtime|permanent>.<zone>, one "<kind> <value>" a line.
FAKE_FIREWALL_CMD = """#!/bin/sh
PATH=/usr/bin:/bin
LOG=$FAKE_FW/firewall-cmd.log
""" + LOG_ARGV + r"""
if [ -e "$FAKE_FW/firewalld.stopped" ]; then
    if [ "$*" = --state ]; then echo "not running"; else echo "FirewallD is not running"; fi
    exit 252
fi
if [ "$*" = --state ]; then echo running; exit 0; fi
table=runtime; zone=public
if [ "$1" = --permanent ]; then table=permanent; shift; fi
if [ "$1" = --zone ]; then zone=$2; shift 2; fi
case "$#:$1" in
    1:--query-port=*|1:--add-port=*|1:--remove-port=*) kind=port ;;
    1:--query-rich-rule=*|1:--add-rich-rule=*|1:--remove-rich-rule=*) kind=rich-rule ;;
    *) echo "usage: see firewall-cmd(1)"; exit 2 ;;
esac
case "$zone" in public|internal) ;; *) echo "Error: INVALID_ZONE: $zone"; exit 112 ;; esac
action=${1#--}; action=${action%%-*}
value=${1#*=}
line="$kind $value"
file=$FAKE_FW/$table.$zone
touch "$file"
if grep -Fxq -- "$line" "$file"; then present=1; else present=; fi
case "$action" in
    query)
        if [ -n "$present" ]; then echo yes; exit 0; fi
        echo no; exit 1 ;;
    add)
        if [ -n "$present" ]; then echo "Warning: ALREADY_ENABLED: $value"; else printf '%s\n' "$line" >>"$file"; fi ;;
    remove)
        if [ -z "$present" ]; then echo "Warning: NOT_ENABLED: $value"; else
            grep -Fxv -- "$line" "$file" >"$file.new"
            mv "$file.new" "$file"
        fi ;;
esac
echo success
"""

FAKE_SYSTEMCTL = """#!/bin/sh
LOG=$FAKE_FW/systemctl.log
""" + LOG_ARGV

COMMENT = ["comment", "usbip.usbip"]
FOREIGN_UFW = ["allow", "22/tcp"]
FOREIGN_FIREWALLD = ["service", "ssh"]


def ufw_allow(source: str, port: int) -> List[str]:
    return ["allow", "proto", "tcp", "from", source, "to", "any", "port", str(port)] + COMMENT


def ufw_deny(port: int) -> List[str]:
    return ["deny", "proto", "tcp", "from", "any", "to", "any", "port", str(port)] + COMMENT


def accept(family: int, network: str, port: int) -> List[str]:
    return ["rich-rule", 'rule priority="-2" family="ipv%d" source address="%s" port port="%d" protocol="tcp" accept'
            % (family, network, port)]


def drop(port: int) -> List[str]:
    return ["rich-rule", 'rule priority="-1" port port="%d" protocol="tcp" drop' % port]


class Host:
    """The server's files and its fake firewall tools, in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tools = root / "tools"
        for name, body in (("ufw", FAKE_UFW), ("firewall-cmd", FAKE_FIREWALL_CMD), ("systemctl", FAKE_SYSTEMCTL)):
            write_tool(self.tools, name, body)
        self.fw = root / "fw"
        self.fw.mkdir()
        self.etc = root / "etc" / "usbip"
        self.etc.mkdir(parents=True)
        self.state = self.etc / "firewall.json"
        self.nft_unit = root / "systemd" / "usbipd-firewall.service"
        self.nft_file = self.etc / "firewall.nft"
        self.set_ufw_rules([FOREIGN_UFW])
        for table in ("runtime", "permanent"):
            self.set_firewalld_rules(table, "public", [FOREIGN_FIREWALLD])

    def ufw_rules(self) -> List[List[str]]:
        path = self.fw / "ufw.rules"
        return [line.split(" ") for line in path.read_text().splitlines()] if path.exists() else []

    def set_ufw_rules(self, rules: List[List[str]]) -> None:
        (self.fw / "ufw.rules").write_text("".join(" ".join(rule) + "\n" for rule in rules))

    def set_firewalld_rules(self, table: str, zone: str, rules: List[List[str]]) -> None:
        (self.fw / ("%s.%s" % (table, zone))).write_text("".join(" ".join(rule) + "\n" for rule in rules))

    def firewalld_table(self, table: str, zone: str) -> List[List[str]]:
        path = self.fw / ("%s.%s" % (table, zone))
        return [line.split(" ", 1) for line in path.read_text().splitlines()] if path.exists() else []

    def run(self, backend: str, ports=(3240,), allow=(), zone: str = "", check: bool = False, rc: int = 0,
            path: Optional[str] = None) -> dict:
        """One run of the task, the request as tasks/firewall.yml builds it; the logs start empty."""
        for log in self.fw.glob("*.log"):
            log.unlink()
        request = {"backend": backend, "ports": list(ports), "allow": list(allow), "zone": zone,
                   "state": str(self.state), "nft_unit": str(self.nft_unit), "nft_file": str(self.nft_file),
                   "check": check}
        code, answer = run_script(SCRIPT, [], stdin=json.dumps(request),
                                  path=str(self.tools) if path is None else path, env={"FAKE_FW": str(self.fw)})
        assert code == rc, answer
        return answer

    def log(self, tool: str) -> List[List[str]]:
        return read_log(self.fw / (tool + ".log"))

    def ufw_changes(self) -> List[List[str]]:
        """The ufw commands of the last run that change something (no status, no listing, no dry run)."""
        return [argv for argv in self.log("ufw")
                if argv not in (["status"], ["show", "added"]) and argv[:1] != ["--dry-run"]]

    def firewalld_changes(self) -> List[List[str]]:
        return [argv for argv in self.log("firewall-cmd") if any(a.startswith(("--add-", "--remove-")) for a in argv)]

    def firewalld_rules(self, zone: str = "public") -> List[List[str]]:
        """The zone's rules, which must be the same at runtime and in the permanent configuration."""
        runtime = self.firewalld_table("runtime", zone)
        assert runtime == self.firewalld_table("permanent", zone), "runtime and permanent differ"
        return runtime

    def record(self) -> Optional[dict]:
        return json.loads(self.state.read_text()) if self.state.exists() else None

    def record_stat(self):
        st = os.stat(self.state)
        return st.st_ino, st.st_mtime_ns


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


def joined(rules) -> List[str]:
    return [" ".join(rule) for rule in rules]


def firewall_cmd(rule: List[str], action: str, permanent: bool, zone: str = "") -> List[str]:
    """The command line the script runs for ``rule`` (the fake logs it without the program name)."""
    return ((["--permanent"] if permanent else []) + (["--zone", zone] if zone else [])
            + ["--%s-%s=%s" % (action, rule[0], rule[1])])


# -- ufw ----------------------------------------------------------------------------------------------
ALLOW = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
#: The rules of ALLOW on ports 3240 and 3241: each port's allows, then its deny (ufw applies the first match).
UFW_RULES = [ufw_allow("10.0.0.0/8", 3240), ufw_allow("192.168.1.7/32", 3240), ufw_allow("2001:db8::/32", 3240),
             ufw_deny(3240),
             ufw_allow("10.0.0.0/8", 3241), ufw_allow("192.168.1.7/32", 3241), ufw_allow("2001:db8::/32", 3241),
             ufw_deny(3241)]


def test_ufw_gets_an_allow_per_network_then_a_deny_per_port(host):
    answer = host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    assert answer == {"changed": True, "added": joined(UFW_RULES), "removed": [], "warnings": []}
    adds = [argv for argv in host.ufw_changes() if argv[0] != "delete"]
    assert adds == UFW_RULES
    assert host.ufw_rules() == [FOREIGN_UFW] + UFW_RULES
    assert host.record() == {"backend": "ufw", "zone": "", "rules": UFW_RULES}
    assert host.state.stat().st_mode & 0o777 == 0o644
    assert host.log("firewall-cmd") == [] and host.log("systemctl") == []


def test_ufw_a_second_run_with_the_same_input_adds_nothing(host):
    host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    recorded = host.record_stat()
    answer = host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    assert answer == {"changed": False, "added": [], "removed": [], "warnings": []}
    assert host.ufw_changes() == []
    assert host.log("ufw") == [["status"], ["show", "added"]] + [["--dry-run"] + rule for rule in UFW_RULES]
    assert host.ufw_rules() == [FOREIGN_UFW] + UFW_RULES
    assert host.record_stat() == recorded, "the record was rewritten"


def test_ufw_a_changed_allow_list_removes_what_is_gone(host):
    host.run("ufw", ports=[3240], allow=["10.0.0.0/8", "192.168.1.7"])
    answer = host.run("ufw", ports=[3240], allow=["10.0.0.0/8", "172.16.0.0/12"])
    wanted = [ufw_allow("10.0.0.0/8", 3240), ufw_allow("172.16.0.0/12", 3240), ufw_deny(3240)]
    assert answer["changed"] is True and answer["removed"] == joined([ufw_allow("192.168.1.7/32", 3240)])
    # The rules go back in order, so that the new allow comes before the deny.
    assert answer["added"] == joined(wanted)
    assert host.ufw_rules() == [FOREIGN_UFW] + wanted
    assert host.record()["rules"] == wanted
    assert ["delete"] + ufw_allow("192.168.1.7/32", 3240) in host.ufw_changes()
    assert ["delete"] + FOREIGN_UFW not in host.ufw_changes()


def test_ufw_a_changed_port_removes_the_old_ports_rules(host):
    host.run("ufw", ports=[3240, 3241], allow=["10.0.0.0/8"])
    answer = host.run("ufw", ports=[3240], allow=["10.0.0.0/8"])
    assert answer["removed"] == joined([ufw_allow("10.0.0.0/8", 3241), ufw_deny(3241)])
    assert host.ufw_rules() == [FOREIGN_UFW, ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)]


def test_ufw_switching_to_none_removes_exactly_what_was_recorded(host):
    host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    answer = host.run("none", ports=[3240, 3241], allow=ALLOW)
    assert answer == {"changed": True, "added": [], "removed": joined(UFW_RULES), "warnings": []}
    assert host.ufw_changes() == [["delete"] + rule for rule in UFW_RULES]
    assert host.ufw_rules() == [FOREIGN_UFW]
    assert host.record() is None

    # Nothing recorded, nothing to do: ufw is not even asked.
    assert host.run("none", ports=[3240]) == {"changed": False, "added": [], "removed": [], "warnings": []}
    assert host.log("ufw") == [] and host.log("firewall-cmd") == [] and not host.state.exists()


def test_ufw_an_empty_allow_list_opens_the_ports(host):
    answer = host.run("ufw", ports=[3240, 3241], allow=[])
    opened = [ufw_allow("any", 3240), ufw_allow("any", 3241)]
    assert answer["added"] == joined(opened)
    assert host.ufw_rules() == [FOREIGN_UFW] + opened
    assert host.run("ufw", ports=[3240, 3241], allow=[])["changed"] is False


def test_ufw_rules_lost_behind_the_roles_back_are_added_again(host):
    host.run("ufw", ports=[3240], allow=["10.0.0.0/8"])
    host.set_ufw_rules([FOREIGN_UFW, ufw_deny(3240)])  # someone deleted the allow
    answer = host.run("ufw", ports=[3240], allow=["10.0.0.0/8"])
    assert answer["changed"] is True and answer["removed"] == []
    assert host.ufw_rules() == [FOREIGN_UFW, ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)]


def test_ufw_check_mode_says_what_would_change_and_changes_nothing(host):
    answer = host.run("ufw", ports=[3240, 3241], allow=ALLOW, check=True)
    assert answer == {"changed": True, "added": joined(UFW_RULES), "removed": [], "warnings": []}
    assert host.ufw_changes() == [] and host.ufw_rules() == [FOREIGN_UFW] and host.record() is None

    host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    recorded = host.record_stat()
    answer = host.run("none", check=True)
    assert answer["removed"] == joined(UFW_RULES)
    assert host.ufw_changes() == [] and host.ufw_rules() == [FOREIGN_UFW] + UFW_RULES
    assert host.record_stat() == recorded


def test_ufw_inactive_is_a_warning(host):
    host.set_ufw_rules([])
    (host.fw / "ufw.inactive").touch()
    answer = host.run("ufw", allow=["10.0.0.0/8"])
    assert answer["warnings"] == ["ufw is inactive: its rules, the USB/IP ones included, apply once it is enabled"]
    assert host.ufw_rules() == [ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)]


def test_ufw_not_installed_is_one_clear_line(host, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    answer = host.run("ufw", allow=["10.0.0.0/8"], rc=1, path=str(empty))
    assert answer == {"failed": True, "msg": "usbip_server_firewall: ufw needs ufw, which is not installed"}
    assert host.record() is None


# -- firewalld --------------------------------------------------------------------------------------
FIREWALLD_RULES = [accept(4, "10.0.0.0/8", 3240), accept(6, "2001:db8::/32", 3240), drop(3240)]


def test_firewalld_gets_the_accepts_then_the_drop_at_runtime_and_permanently(host):
    answer = host.run("firewalld", allow=["10.0.0.0/8", "2001:db8::/32"])
    assert answer == {"changed": True, "added": joined(FIREWALLD_RULES), "removed": [], "warnings": []}
    assert host.firewalld_changes() == ([firewall_cmd(rule, "add", False) for rule in FIREWALLD_RULES]
                                        + [firewall_cmd(rule, "add", True) for rule in FIREWALLD_RULES])
    assert host.firewalld_rules() == [FOREIGN_FIREWALLD] + FIREWALLD_RULES
    assert host.record() == {"backend": "firewalld", "zone": "", "rules": FIREWALLD_RULES}
    assert host.log("ufw") == []


def test_firewalld_a_second_run_with_the_same_input_adds_nothing(host):
    host.run("firewalld", allow=["10.0.0.0/8", "2001:db8::/32"])
    recorded = host.record_stat()
    answer = host.run("firewalld", allow=["10.0.0.0/8", "2001:db8::/32"])
    assert answer == {"changed": False, "added": [], "removed": [], "warnings": []}
    assert host.firewalld_changes() == []
    assert host.record_stat() == recorded


def test_firewalld_a_changed_allow_list_removes_what_is_gone(host):
    host.run("firewalld", allow=["10.0.0.0/8", "2001:db8::/32"])
    answer = host.run("firewalld", allow=["10.0.0.0/8", "172.16.0.0/12"])
    gone, new = accept(6, "2001:db8::/32", 3240), accept(4, "172.16.0.0/12", 3240)
    assert answer == {"changed": True, "added": joined([new]), "removed": joined([gone]), "warnings": []}
    assert host.firewalld_changes() == [firewall_cmd(gone, "remove", False), firewall_cmd(new, "add", False),
                                        firewall_cmd(gone, "remove", True), firewall_cmd(new, "add", True)]
    # Priorities, not positions, order rich rules: the new accept may come after the drop.
    assert host.firewalld_rules() == [FOREIGN_FIREWALLD, accept(4, "10.0.0.0/8", 3240), drop(3240), new]
    assert host.record()["rules"] == [accept(4, "10.0.0.0/8", 3240), new, drop(3240)]


def test_firewalld_a_changed_zone_moves_the_rules(host):
    host.run("firewalld", allow=["10.0.0.0/8"])
    rules = [accept(4, "10.0.0.0/8", 3240), drop(3240)]
    answer = host.run("firewalld", allow=["10.0.0.0/8"], zone="internal")
    assert answer["removed"] == joined(rules) and answer["added"] == joined(rules)
    assert host.firewalld_rules("public") == [FOREIGN_FIREWALLD]
    assert host.firewalld_rules("internal") == rules
    assert host.record() == {"backend": "firewalld", "zone": "internal", "rules": rules}
    assert firewall_cmd(rules[0], "add", True, "internal") in host.firewalld_changes()


def test_firewalld_switching_to_none_removes_exactly_what_was_recorded(host):
    host.run("firewalld", ports=[3240, 3241], allow=["10.0.0.0/8"], zone="internal")
    rules = [accept(4, "10.0.0.0/8", 3240), drop(3240), accept(4, "10.0.0.0/8", 3241), drop(3241)]
    answer = host.run("none")
    assert answer == {"changed": True, "added": [], "removed": joined(rules), "warnings": []}
    assert host.firewalld_changes() == ([firewall_cmd(rule, "remove", False, "internal") for rule in rules]
                                        + [firewall_cmd(rule, "remove", True, "internal") for rule in rules])
    assert host.firewalld_rules("internal") == [] and host.firewalld_rules("public") == [FOREIGN_FIREWALLD]
    assert host.record() is None
    assert host.run("none")["changed"] is False and host.log("firewall-cmd") == []


def test_firewalld_an_empty_allow_list_opens_the_ports(host):
    answer = host.run("firewalld", ports=[3240, 3241])
    assert answer["added"] == ["port 3240/tcp", "port 3241/tcp"]
    assert host.firewalld_rules() == [FOREIGN_FIREWALLD, ["port", "3240/tcp"], ["port", "3241/tcp"]]
    assert firewall_cmd(["port", "3240/tcp"], "add", True) in host.firewalld_changes()


def test_firewalld_a_rule_lost_at_runtime_only_is_added_there_only(host):
    host.run("firewalld", allow=["10.0.0.0/8"])
    # A --reload of a half-saved configuration, say.
    host.set_firewalld_rules("runtime", "public", [FOREIGN_FIREWALLD, accept(4, "10.0.0.0/8", 3240)])
    answer = host.run("firewalld", allow=["10.0.0.0/8"])
    assert answer["changed"] is True and answer["added"] == joined([drop(3240)])
    assert host.firewalld_changes() == [firewall_cmd(drop(3240), "add", False)]
    assert host.firewalld_rules() == [FOREIGN_FIREWALLD, accept(4, "10.0.0.0/8", 3240), drop(3240)]


def test_firewalld_not_running_is_one_clear_line(host):
    (host.fw / "firewalld.stopped").touch()
    answer = host.run("firewalld", allow=["10.0.0.0/8"], rc=1)
    assert answer == {"failed": True, "msg": "firewalld is not running (usbip_server_firewall: firewalld needs it)"}
    assert host.firewalld_changes() == [] and host.record() is None


# -- switching backends ------------------------------------------------------------------------------
def test_from_ufw_to_firewalld_removes_the_ufw_rules(host):
    host.run("ufw", ports=[3240, 3241], allow=ALLOW)
    answer = host.run("firewalld", allow=["10.0.0.0/8", "2001:db8::/32"])
    assert answer["removed"] == joined(UFW_RULES) and answer["added"] == joined(FIREWALLD_RULES)
    assert host.ufw_rules() == [FOREIGN_UFW]
    assert host.firewalld_rules() == [FOREIGN_FIREWALLD] + FIREWALLD_RULES
    assert host.record() == {"backend": "firewalld", "zone": "", "rules": FIREWALLD_RULES}


def test_from_nftables_the_table_unit_and_file_go(host):
    host.nft_unit.parent.mkdir()
    host.nft_unit.write_text("[Unit]\n")
    host.nft_file.write_text("table inet usbip {}\n")
    answer = host.run("ufw", allow=["10.0.0.0/8"])
    assert answer["removed"] == [str(host.nft_unit), str(host.nft_file)]
    assert not host.nft_unit.exists() and not host.nft_file.exists()
    assert host.log("systemctl") == [["disable", "--now", "usbipd-firewall.service"], ["daemon-reload"]]
    assert host.record()["backend"] == "ufw"


def test_to_nftables_removes_the_recorded_rules_and_keeps_the_table(host):
    host.run("ufw", allow=["10.0.0.0/8"])
    host.nft_unit.parent.mkdir()
    host.nft_unit.write_text("[Unit]\n")  # templated by the role before the script runs
    host.nft_file.write_text("table inet usbip {}\n")
    answer = host.run("nftables", allow=["10.0.0.0/8"])
    assert answer["removed"] == joined([ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)])
    assert host.ufw_rules() == [FOREIGN_UFW] and host.record() is None
    assert host.nft_unit.exists() and host.nft_file.exists() and host.log("systemctl") == []
    assert host.run("nftables", allow=["10.0.0.0/8"])["changed"] is False


def test_a_bad_network_is_one_clear_line_before_anything_runs(host):
    answer = host.run("ufw", allow=["10.0.0.300/8"], rc=1)
    assert answer["failed"] is True and "10.0.0.300/8" in answer["msg"]
    assert host.log("ufw") == [] and host.record() is None


def test_a_backend_that_is_not_installed_fails_before_the_nftables_table_goes(host, tmp_path):
    """Switching to a backend that cannot work must not leave the ports with no firewall at all."""
    host.nft_unit.parent.mkdir()
    host.nft_unit.write_text("[Unit]\n")
    host.nft_file.write_text("table inet usbip {}\n")
    no_ufw = tmp_path / "no-ufw"
    write_tool(no_ufw, "systemctl", FAKE_SYSTEMCTL)
    answer = host.run("ufw", allow=["10.0.0.0/8"], rc=1, path=str(no_ufw))
    assert answer == {"failed": True, "msg": "usbip_server_firewall: ufw needs ufw, which is not installed"}
    assert host.nft_unit.exists() and host.nft_file.exists()
    assert host.log("systemctl") == [], "the table's unit was stopped"


def test_a_backend_that_is_not_running_fails_before_the_recorded_rules_go(host):
    host.run("ufw", allow=["10.0.0.0/8"])
    recorded = host.record()
    (host.fw / "firewalld.stopped").touch()
    answer = host.run("firewalld", allow=["10.0.0.0/8"], rc=1)
    assert answer == {"failed": True, "msg": "firewalld is not running (usbip_server_firewall: firewalld needs it)"}
    assert host.ufw_rules() == [FOREIGN_UFW, ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)]
    assert host.ufw_changes() == [] and host.record() == recorded


# -- a recorded backend that is gone ---------------------------------------------------------------
def test_a_recorded_ufw_that_was_uninstalled_is_a_warning_and_the_record_goes(host, tmp_path):
    host.run("ufw", allow=["10.0.0.0/8"])
    no_ufw = tmp_path / "no-ufw"
    write_tool(no_ufw, "systemctl", FAKE_SYSTEMCTL)
    rules = joined([ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)])
    answer = host.run("none", path=str(no_ufw))
    assert answer == {"changed": True, "added": [], "removed": [], "warnings": [
        "ufw is not installed: the ufw rules the role recorded are not removed and no longer recorded: "
        + "; ".join(rules)]}
    assert host.record() is None
    assert host.run("none", path=str(no_ufw)) == {"changed": False, "added": [], "removed": [], "warnings": []}


def test_a_recorded_firewalld_that_is_stopped_is_a_warning_and_the_switch_goes_on(host):
    host.run("firewalld", allow=["10.0.0.0/8"], zone="internal")
    (host.fw / "firewalld.stopped").touch()
    checked = host.run("ufw", allow=["10.0.0.0/8"], check=True)
    answer = host.run("ufw", allow=["10.0.0.0/8"])
    assert answer == checked
    assert answer["changed"] is True and answer["removed"] == []
    assert answer["added"] == joined([ufw_allow("10.0.0.0/8", 3240), ufw_deny(3240)])
    assert answer["warnings"] == [
        "firewalld is not running: the firewalld rules the role recorded in zone internal are not removed and no"
        " longer recorded: " + "; ".join(joined([accept(4, "10.0.0.0/8", 3240), drop(3240)]))]
    assert host.firewalld_changes() == []
    assert host.record()["backend"] == "ufw"
    assert host.run("ufw", allow=["10.0.0.0/8"])["changed"] is False


# -- rules someone else had before ----------------------------------------------------------------
@pytest.mark.parametrize("theirs", [
    ["allow", "proto", "tcp", "from", "10.0.0.0/8", "to", "any", "port", "3240"],
    ["allow", "proto", "tcp", "from", "10.0.0.0/8", "to", "any", "port", "3240", "comment", "mine"],
    ["deny", "proto", "tcp", "from", "10.0.0.0/8", "to", "any", "port", "3240"],
], ids=["same-rule", "own-comment", "other-action"])
def test_ufw_a_rule_someone_else_had_is_neither_taken_nor_removed(host, theirs):
    host.set_ufw_rules([FOREIGN_UFW, theirs])
    answer = host.run("ufw", allow=["10.0.0.0/8", "192.168.1.7"])
    ours = [ufw_allow("192.168.1.7/32", 3240), ufw_deny(3240)]
    assert answer == {"changed": True, "added": joined(ours), "removed": [], "warnings": [
        "ufw already has a rule for from 10.0.0.0/8 to any port 3240 proto tcp that the role did not add: it stays as"
        " it is, and the role neither adds nor records its own (%s)" % " ".join(ufw_allow("10.0.0.0/8", 3240))]}
    assert host.ufw_rules() == [FOREIGN_UFW, theirs] + ours
    assert host.record()["rules"] == ours
    again = host.run("ufw", allow=["10.0.0.0/8", "192.168.1.7"])
    assert again["changed"] is False and host.ufw_changes() == []

    host.run("ufw", allow=["192.168.1.7"])
    assert host.ufw_rules() == [FOREIGN_UFW, theirs] + ours
    assert host.run("none")["removed"] == joined(ours)
    assert host.ufw_rules() == [FOREIGN_UFW, theirs]


def test_ufw_a_port_someone_else_opened_keeps_its_rule_and_gets_no_deny(host):
    """``ufw allow 3240/tcp`` is the rule the role's deny would replace: it stays, and a warning says so."""
    host.set_ufw_rules([FOREIGN_UFW, ["allow", "3240/tcp"]])
    answer = host.run("ufw", allow=["10.0.0.0/8"])
    assert answer["added"] == joined([ufw_allow("10.0.0.0/8", 3240)])
    assert answer["warnings"] == [
        "ufw already has a rule for 3240/tcp that the role did not add: it stays as it is, and the role neither adds"
        " nor records its own (%s)" % " ".join(ufw_deny(3240))]
    assert host.ufw_rules() == [FOREIGN_UFW, ["allow", "3240/tcp"], ufw_allow("10.0.0.0/8", 3240)]
    host.run("none")
    assert host.ufw_rules() == [FOREIGN_UFW, ["allow", "3240/tcp"]]


def test_firewalld_a_rule_someone_else_had_is_neither_recorded_nor_removed(host):
    theirs = ["port", "3240/tcp"]
    host.set_firewalld_rules("runtime", "public", [FOREIGN_FIREWALLD, theirs])  # at runtime only, say
    host.set_firewalld_rules("permanent", "public", [FOREIGN_FIREWALLD])
    answer = host.run("firewalld", ports=[3240, 3241])
    assert answer == {"changed": True, "added": ["port 3241/tcp"], "removed": [], "warnings": [
        "firewalld already has a rule for 3240/tcp that the role did not add: it stays as it is, and the role"
        " neither adds nor records its own (port 3240/tcp)"]}
    assert host.firewalld_table("runtime", "public") == [FOREIGN_FIREWALLD, theirs, ["port", "3241/tcp"]]
    assert host.firewalld_table("permanent", "public") == [FOREIGN_FIREWALLD, ["port", "3241/tcp"]]
    assert host.record()["rules"] == [["port", "3241/tcp"]]
    assert host.run("none")["removed"] == ["port 3241/tcp"]
    assert host.firewalld_table("runtime", "public") == [FOREIGN_FIREWALLD, theirs]
