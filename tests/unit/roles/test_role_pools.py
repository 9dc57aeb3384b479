# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client role's pools (``all: true``) and remote port paths, rendered with Ansible's own templating.

The declarations go through the role's variables into ``attachments.yml``
(parsed by usbip-attachd's parser), into the attach task's arguments and
into the facts the role reports, as in ``test_role_templates.py``.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
import yaml
from ansible.template import trust_as_template
from test_role_templates import render, task, templar, trusted, value

from usbip import config
from usbip.matching import Match

POOL = {"server": "10.0.0.1", "all": True, "match": {"vendor": "46f4", "product": "0001"}}
EVERYTHING = {"server": "10.0.0.2", "all": True}
BY_PORT = {"server": "10.0.0.1", "match": {"vendor": "46f4", "port_path": "0000:00:03.0-1.2"}}
PLAIN = {"server": "10.0.0.3", "busid": "1-1"}


def test_attachments_yml_carries_all_and_port_path_to_the_supervisor():
    document = yaml.safe_load(render("usbip_client", "attachments.yml.j2",
                                     usbip_client_attachments=[POOL, EVERYTHING, BY_PORT, PLAIN]))
    assert document["attachments"] == [
        {"server": "10.0.0.1", "port": 3240, "match": {"vendor": "46f4", "product": "0001"}, "all": True},
        {"server": "10.0.0.2", "port": 3240, "all": True},
        {"server": "10.0.0.1", "port": 3240, "match": {"vendor": "46f4", "port_path": "0000:00:03.0-1.2"}},
        {"server": "10.0.0.3", "port": 3240, "busid": "1-1"},
    ]
    pool, everything, by_port, plain = config.parse_attachd(document).attachments
    assert pool.all_devices and pool.match == Match(vendor=0x46F4, product=0x0001)
    assert everything.all_devices and everything.match is None and everything.busid is None
    assert not by_port.all_devices and by_port.match.port_path == "0000:00:03.0-1.2"
    assert not plain.all_devices and plain.busid == "1-1"


def test_all_false_is_left_out_of_attachments_yml():
    entries = value("usbip_client", "usbip_client__attachments",
                    usbip_client_attachments=[dict(PLAIN, all=False)])
    assert entries == [{"server": "10.0.0.3", "port": 3240, "busid": "1-1"}]


def test_the_attach_task_passes_all_on():
    attach = task("usbip_client", "attachments.yml", "Attach the declared devices")["usbip.usbip.usbip_attach"]
    assert attach["all"] == "{{ item.all | default(omit) }}"


def declarations_check(**inventory: Any) -> bool:
    check = task("usbip_client", "main.yml", "Check the declarations")["ansible.builtin.assert"]["that"]
    evaluate = templar("usbip_client", **inventory).evaluate_conditional
    return all(evaluate(trust_as_template(condition)) for condition in check)


@pytest.mark.parametrize("attachments, valid", [
    ([POOL, EVERYTHING, BY_PORT, PLAIN], True),
    ([{"server": "x"}], False),                                   # neither busid nor match, and no all
    ([{"server": "x", "all": False}], False),
    ([{"server": "x", "all": True, "busid": "1-1"}], False),       # a pool is not one busid
    ([{"server": "x", "busid": "1-1", "match": {"vendor": "1"}}], False),
])
def test_the_roles_check_of_the_declarations(attachments, valid):
    assert declarations_check(usbip_client_attachments=attachments) is valid


def results(attachments: List[Dict[str, Any]], registered: List[Dict[str, Any]]):
    items = value("usbip_client", "usbip_client__attachments", usbip_client_attachments=attachments)
    outcome = {"results": [dict(r, item=item) for r, item in zip(registered, items)]}
    return value("usbip_client", "usbip_client__attach_results", usbip_client_attachments=attachments,
                 usbip_client__attach=trusted(outcome))


def device(port, local_busid, changed=True):
    return {"changed": changed, "port": port, "local_busid": local_busid, "remote": {}, "device": None}


def test_a_pools_result_lists_every_device_it_holds():
    registered = [
        {"changed": True, "port": None, "local_busid": None, "attached": [device(0, "3-1"), device(2, "3-3", False)]},
        {"changed": False, "port": None, "local_busid": None, "attached": []},
        {"changed": True, "port": 1, "local_busid": "3-2"},
        {"failed": True, "msg": "cannot connect to 10.0.0.3:3240: Connection refused"},
    ]
    found = results([POOL, EVERYTHING, BY_PORT, PLAIN], registered)
    assert [(r["attachment"], r["attached"], r["vhci_port"], r["vhci_ports"], r["local_busids"], r["error"])
            for r in found] == [
        ("10.0.0.1:3240/all vendor=46f4 product=0001", True, None, [0, 2], ["3-1", "3-3"], None),
        ("10.0.0.2:3240/all", False, None, [], [], None),
        ("10.0.0.1:3240/vendor=46f4 port_path=0000:00:03.0-1.2", True, 1, [1], ["3-2"], None),
        ("10.0.0.3:3240/1-1", False, None, [], [], "cannot connect to 10.0.0.3:3240: Connection refused"),
    ]
    assert [r["changed"] for r in found] == [True, False, True, False]
    assert value("usbip_client", "usbip_client__not_attached",
                 usbip_client_attach_results=found) == [found[3]]


def test_the_report_says_what_a_pool_holds():
    report = task("usbip_client", "attachments.yml", "Report the declared attachments")["ansible.builtin.debug"]["msg"]
    registered = [
        {"changed": True, "port": None, "local_busid": None, "attached": [device(0, "3-1"), device(2, "3-3")]},
        {"changed": False, "port": None, "local_busid": None, "attached": []},
        {"changed": True, "port": 1, "local_busid": "3-2"},
    ]
    found = results([POOL, EVERYTHING, BY_PORT], registered)
    lines = templar("usbip_client", usbip_client_attach_results=found).template(trust_as_template(report))
    assert lines == [
        "10.0.0.1:3240/all vendor=46f4 product=0001: 2 device(s) attached on vhci ports 0, 2 as 3-1, 3-3",
        "10.0.0.2:3240/all: no device of the server matches yet (usbip-attachd.service attaches any that appears)",
        "10.0.0.1:3240/vendor=46f4 port_path=0000:00:03.0-1.2: attached on vhci port 1 as 3-2",
    ]
