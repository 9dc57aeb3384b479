# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' configuration templates and task expressions, rendered with Ansible's own templating.

Each role's ``defaults/main.yml`` and ``vars/main.yml`` are loaded as Ansible loads them (role files are trusted
templates), the inventory's values laid over them, and the templates and task expressions evaluated with
``ansible.template.Templar``: the filters, tests and lazy variables are the real ones. The rendered ``usbipd.yml``
and ``attachments.yml`` then go through the daemons' own parsers (``usbip.config``), so that a key the role writes
is a key the daemon reads, with the value the variable holds.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
import yaml
from ansible.template import Templar, trust_as_template
from role_scripts import REPO

from usbip import config

PATHS = {"config_dir": "/etc/usbip", "bin_dir": "/usr/local/sbin", "prefix": "/usr/local/lib/usbip-usbip"}
TLS_SOURCES = {"cert_src": "pki/cert.pem", "key_src": "pki/key.pem", "ca_src": "pki/ca.pem"}
CLIENT_TLS_ATTACHMENT = {"server": "10.0.0.1", "busid": "1-1", "tls": True}


def trusted(value: Any) -> Any:
    """``value`` with every string marked as a template, as Ansible marks what it reads from a role's files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def role_file(role: str, relative: str) -> Any:
    return yaml.safe_load((REPO / "roles" / role / relative).read_text())


def templar(role: str, **inventory: Any) -> Templar:
    """The variables of ``role`` as a play sees them: defaults, then the inventory, then the role's vars."""
    variables: Dict[str, Any] = dict(trusted(role_file(role, "defaults/main.yml")))
    variables.update(inventory)
    variables.update(trusted(role_file(role, "vars/main.yml")))
    variables.update({"usbip_common_paths": PATHS, "ansible_managed": "Ansible managed", "ansible_check_mode": False})
    return Templar(variables=variables)


def render(role: str, template: str, **inventory: Any) -> str:
    text = (REPO / "roles" / role / "templates" / template).read_text()
    return templar(role, **inventory).template(trust_as_template(text))


def value(role: str, expression: str, **inventory: Any) -> Any:
    return templar(role, **inventory).template(trust_as_template("{{ %s }}" % expression))


def tasks(role: str, name: str) -> List[dict]:
    return role_file(role, "tasks/" + name)


def task(role: str, file: str, name: str) -> dict:
    found = [t for t in tasks(role, file) if t.get("name") == name]
    assert len(found) == 1, "no task %r in roles/%s/tasks/%s" % (name, role, file)
    return found[0]


def server_tls(**more: Any) -> Dict[str, Any]:
    return dict({"usbip_server_tls": True}, **{"usbip_server_tls_" + k: v for k, v in TLS_SOURCES.items()}, **more)


def client_tls(**more: Any) -> Dict[str, Any]:
    return dict({"usbip_client_attachments": [CLIENT_TLS_ATTACHMENT]},
                **{"usbip_client_tls_" + k: v for k, v in TLS_SOURCES.items()}, **more)


# -- attachments.yml: the client's timeout -----------------------------------------------------------
@pytest.mark.parametrize("inventory, seconds", [({}, 10), ({"usbip_client_timeout": 25}, 25)])
def test_attachments_yml_gives_usbip_attachd_the_roles_timeout(inventory, seconds):
    text = render("usbip_client", "attachments.yml.j2", **inventory)
    document = yaml.safe_load(text)
    assert document["timeout"] == seconds
    assert config.parse_attachd(document).timeout == seconds


# -- usbipd.yml: client_prefix and tls.max_handshakes ------------------------------------------------
def test_usbipd_yml_holds_the_daemons_own_defaults_for_the_new_keys():
    document = yaml.safe_load(render("usbip_server", "usbipd.yml.j2", **server_tls()))
    assert document["client_prefix"] == {"ipv4": 32, "ipv6": 64}
    assert document["tls"]["max_handshakes"] == 64
    parsed, defaults = config.parse_usbipd(document), config.UsbipdConfig()
    assert (parsed.client_prefix_ipv4, parsed.client_prefix_ipv6) == (
        defaults.client_prefix_ipv4, defaults.client_prefix_ipv6)
    assert parsed.tls.max_handshakes == config.ServerTls(cert="c", key="k", ca="a").max_handshakes


def test_usbipd_yml_carries_client_prefix_and_max_handshakes_from_the_role_variables():
    inventory = server_tls(usbip_server_client_prefix_ipv4=24, usbip_server_client_prefix_ipv6=56,
                           usbip_server_tls_max_handshakes=16)
    parsed = config.parse_usbipd(yaml.safe_load(render("usbip_server", "usbipd.yml.j2", **inventory)))
    assert (parsed.client_prefix_ipv4, parsed.client_prefix_ipv6) == (24, 56)
    assert parsed.tls.max_handshakes == 16


@pytest.mark.parametrize("name, bad", [("client_prefix_ipv4", 33), ("client_prefix_ipv6", 0),
                                       ("tls_max_handshakes", 4097)])
def test_the_role_refuses_what_usbipd_would_refuse_before_anything_changes(name, bad):
    """The bounds of tasks/main.yml's check are the daemon's: a value out of them fails there, not at the template."""
    check = task("usbip_server", "main.yml", "Check the declarations")["ansible.builtin.assert"]["that"]
    condition = [line for line in check if "usbip_server_" + name in line]
    assert len(condition) == 1
    evaluate = templar("usbip_server", **{"usbip_server_" + name: bad}).evaluate_conditional
    assert evaluate(trust_as_template(condition[0])) is False
    inventory = server_tls(**{"usbip_server_" + name: bad})
    with pytest.raises(config.InvalidArgument):
        config.parse_usbipd(yaml.safe_load(render("usbip_server", "usbipd.yml.j2", **inventory)))
    good = templar("usbip_server", **{"usbip_server_" + name: 1}).evaluate_conditional
    assert good(trust_as_template(condition[0])) is True


# -- TLS files: one CA per role -----------------------------------------------------------------------
def installed_tls_files(role: str, prefix: str, **inventory: Any) -> List[str]:
    directory = value(role, prefix + "__tls_dir", **inventory)
    return [directory + "/" + entry["dest"] for entry in value(role, prefix + "__tls_files", **inventory)]


def test_the_two_roles_tls_files_never_share_a_path():
    server_files = installed_tls_files("usbip_server", "usbip_server", **server_tls())
    client_files = installed_tls_files("usbip_client", "usbip_client", **client_tls())
    assert set(server_files).isdisjoint(client_files), (server_files, client_files)

    server_config = yaml.safe_load(render("usbip_server", "usbipd.yml.j2", **server_tls()))["tls"]
    client_config = yaml.safe_load(render("usbip_client", "attachments.yml.j2", **client_tls()))["tls"]
    # Each configuration names the files its own role installs, the CA included.
    assert sorted([server_config["cert"], server_config["key"], server_config["ca"]]) == sorted(server_files)
    assert sorted([client_config["cert"], client_config["key"], client_config["ca"]]) == sorted(client_files)
    assert server_config["ca"] == "/etc/usbip/tls/clients-ca.crt"
    assert client_config["ca"] == "/etc/usbip/tls/servers-ca.crt"


@pytest.mark.parametrize("role, prefix, other", [("usbip_server", "usbip_server", "client"),
                                                 ("usbip_client", "usbip_client", "server")])
@pytest.mark.parametrize("other_installed", [True, False])
def test_a_removal_takes_its_own_tls_files_and_the_shared_ca_only_when_it_is_the_last(role, prefix, other,
                                                                                      other_installed):
    removal = [t for t in tasks(role, "remove.yml") if t.get("ansible.builtin.file", {}).get("state") == "absent"
               and "__tls_dir" in str(t.get("loop"))]
    assert len(removal) == 1
    inventory = dict({prefix + "__%s_unit" % other: {"stat": {"exists": other_installed}}},
                     **(server_tls() if role == "usbip_server" else client_tls()))
    removed = value(role, removal[0]["loop"].strip()[2:-2], **inventory)
    own = installed_tls_files(role, prefix, **inventory)
    other_prefix = "usbip_client" if role == "usbip_server" else "usbip_server"
    others = installed_tls_files("usbip_" + other, other_prefix,
                                 **(client_tls() if role == "usbip_server" else server_tls()))
    assert set(own) <= set(removed)
    assert set(others).isdisjoint(removed)
    assert ("/etc/usbip/tls/ca.crt" in removed) is not other_installed


# -- the check of the files in place before the handlers -----------------------------------------------
CHECKS = {
    "usbip_server": ("service.yml", "Check that usbipd accepts its configuration and TLS files",
                     "Stop when usbipd refuses its configuration or TLS files",
                     ["/usr/local/sbin/usbipd", "--check-config", "--check-files", "--config",
                      "/etc/usbip/usbipd.yml"],
                     ["Install the TLS certificate, key and CA", "Configure usbipd"], "usbip_server__"),
    "usbip_client": ("attachments.yml", "Check that usbip-attachd accepts its declarations and TLS files",
                     "Stop when usbip-attachd refuses its declarations or TLS files",
                     ["/usr/local/sbin/usbip-attachd", "--check-config", "--check-files", "--config",
                      "/etc/usbip/attachments.yml"],
                     ["Install the TLS certificate, key and CA", "Declare the attachments for the supervisor"],
                     "usbip_client__"),
}


@pytest.mark.parametrize("role", sorted(CHECKS))
def test_the_daemon_loads_its_files_after_they_are_in_place_and_before_the_handlers(role):
    file, check_name, stop_name, argv, before, _registers = CHECKS[role]
    names = [t.get("name") for t in tasks(role, file)]
    flush = [i for i, t in enumerate(tasks(role, file)) if t.get("ansible.builtin.meta") == "flush_handlers"]
    assert len(flush) == 1
    for name in before:
        assert names.index(name) < names.index(check_name), name
    assert names.index(check_name) < names.index(stop_name) < flush[0]

    check = task(role, file, check_name)
    assert templar(role).template(trusted(check["ansible.builtin.command"]["argv"])) == argv
    assert check["changed_when"] is False and check["check_mode"] is False


@pytest.mark.parametrize("role", sorted(CHECKS))
@pytest.mark.parametrize("check_mode, changed, runs", [
    (False, "", True), (False, "config", True),
    (True, "", True), (True, "tls", False), (True, "config", False), (True, "release", False)])
def test_the_check_runs_in_check_mode_only_on_files_a_real_run_would_leave(role, check_mode, changed, runs):
    """In check mode the templates and copies above wrote nothing: the files in place are not the ones to check."""
    file, check_name, _stop, _argv, _before, registers = CHECKS[role]
    when = task(role, file, check_name)["when"]
    inventory = {registers + "tls_copy": {"changed": changed == "tls"},
                 registers + "config_file": {"changed": changed == "config"},
                 "usbip_common_release": {"changed": changed == "release"}}
    evaluate = templar(role, **inventory)
    evaluate.available_variables = dict(evaluate.available_variables, ansible_check_mode=check_mode)
    assert evaluate.evaluate_conditional(trust_as_template(when)) is runs


@pytest.mark.parametrize("role", sorted(CHECKS))
def test_a_refusal_fails_the_play_with_the_daemons_line(role):
    file, _check, stop_name, _argv, _before, registers = CHECKS[role]
    stop = task(role, file, stop_name)
    line = "%s: /etc/usbip/tls/x.crt: no certificate in the file" % CHECKS[role][3][0].rsplit("/", 1)[1]
    refused = {registers + "files_check": {"rc": 2, "stderr": line + "\n", "stdout": ""}}
    evaluate = templar(role, **refused)
    assert evaluate.evaluate_conditional(trust_as_template(stop["when"])) is True
    message = evaluate.template(trust_as_template(stop["ansible.builtin.fail"]["msg"]))
    assert message.endswith(": " + line) and "\n" not in message

    for result in ({"rc": 0, "stderr": "", "stdout": ""}, {"skipped": True, "changed": False}):
        quiet = templar(role, **{registers + "files_check": result})
        assert quiet.evaluate_conditional(trust_as_template(stop["when"])) is False
