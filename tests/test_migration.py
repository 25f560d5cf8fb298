"""Migration from the incumbents (issue 13, part 5), in the lab: the primitives of the SUSE and
Red Hat guides as written for aws-vpc-move-ip, awsvip + IPaddr2 and awseip (tests/data/migration,
sources named there), migrated as the README says (the agent type changes, parameters stay;
IPaddr2 of the awsvip address is deleted), then run as Pacemaker runs them: validate-all,
start, monitor (with the guide's monitor interval and timeout), a failover and stop, asserting
on exit codes, on the simulator's state and on ``ip -json`` in the nodes.

The lab only adds what it needs to be reached: ``endpoint_url`` (the simulated EC2) and the
guides' placeholders replaced with the lab's ids and addresses.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

from agentkit import agent, node_addresses

DATA = Path(__file__).resolve().parent / "data" / "migration"
OVERLAY = agent("aws-overlayip")
SECIP = agent("aws-secip")
OURS = {
    "aws-vpc-move-ip": "ocf:ipfailover:aws-overlayip",
    "awsvip": "ocf:ipfailover:aws-secip",
    "awseip": "ocf:ipfailover:aws-secip",
}


class Resource:
    """One primitive: id, agent (as written: ``awsvip`` or ``ocf:heartbeat:...``), params,
    operations (name -> attributes) and group."""

    def __init__(self, rid: str, agent: str, group: Optional[str] = None) -> None:
        self.id = rid
        self.agent = agent
        self.params: dict[str, str] = {}
        self.ops: dict[str, dict[str, str]] = {}
        self.group = group

    @property
    def type(self) -> str:
        return self.agent.rsplit(":", 1)[-1]


def _lines(path: Path) -> list[str]:
    """The file's commands, comments dropped and continuation lines joined."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def read_crm(path: Path) -> list[Resource]:
    """``primitive ID AGENT params k=v... op NAME k=v...`` lines."""
    result = []
    for line in _lines(path):
        words = shlex.split(line)
        assert words[0] == "primitive", line
        res = Resource(words[1], words[2])
        section: dict[str, str] = res.params
        for word in words[3:]:
            if word == "params":
                section = res.params
            elif word == "op":
                section = {}
            elif "=" not in word:  # the operation's name, after "op"
                res.ops[word] = section
            else:
                key, value = word.split("=", 1)
                section[key] = value
        result.append(res)
    return result


def read_pcs(path: Path) -> list[Resource]:
    """``pcs resource create ID AGENT k=v... [--group G]`` lines."""
    result = []
    for line in _lines(path):
        words = shlex.split(line)
        assert words[:3] == ["pcs", "resource", "create"], line
        group = words[words.index("--group") + 1] if "--group" in words else None
        res = Resource(words[3], words[4], group)
        for word in words[5:]:
            if "=" in word and not word.startswith("--"):
                key, value = word.split("=", 1)
                res.params[key] = value
        result.append(res)
    return result


def migrate(resources: list[Resource]) -> list[Resource]:
    """The README's migration: each incumbent's agent type becomes ours, its parameters stay;
    an IPaddr2 of an address that awsvip or awseip moves is deleted (two resources must never
    own one address), its nic and cidr_netmask carried over to the aws-secip."""
    moved = {}
    for res in resources:
        if res.type in ("awsvip", "awseip"):
            address = res.params.get("secondary_private_ip") or res.params.get("private_ip_address")
            if address:
                moved[address] = res
    result = []
    for res in resources:
        if res.type == "IPaddr2" and res.params.get("ip") in moved:
            target = moved[res.params["ip"]]
            for theirs, ours in (("nic", "interface"), ("cidr_netmask", "cidr_netmask")):
                if theirs in res.params:
                    target.params[ours] = res.params[theirs]
            continue
        if res.type in OURS:
            res.agent = OURS[res.type]
        result.append(res)
    return result


def substitute(resources: list[Resource], values: dict[str, str]) -> None:
    """The guides' placeholders (and example ids) replaced with the lab's."""
    for res in resources:
        res.params = {k: values.get(v, v) for k, v in res.params.items()}


def ms(value: str) -> int:
    """An operation's interval or timeout as crmsh writes it (seconds, or with s/m)."""
    if value.endswith("m"):
        return int(value[:-1]) * 60000
    return int(value.rstrip("s")) * 1000


def addresses(lab: Any, node: str) -> set[str]:
    return set(node_addresses(lab, node))


def labels_of(lab: Any, node: str, ip: str) -> list[str]:
    info = lab.ip_json(node, "addr", "show", "dev", "eth0")[0]["addr_info"]
    return [a.get("label", "") for a in info if a["local"] == ip]


# -- SUSE: aws-vpc-move-ip -> aws-overlayip ---------------------------------------------------


def test_suse_overlay_primitive_migrated(lab: Any) -> None:
    (res,) = migrate(read_crm(DATA / "suse-hana-aws-vpc-move-ip.crm"))
    assert (res.id, res.agent) == ("rsc_ip_HA1_HDB10", "ocf:ipfailover:aws-overlayip")
    table = lab.route_tables[0]
    substitute([res], {"rtb-XYZ": table})
    ip = res.params["ip"]
    # The guide's AWS CLI profile of root: region and output only, credentials from the role.
    (lab.home / ".aws").mkdir(exist_ok=True)
    (lab.home / ".aws" / "config").write_text(
        "[profile cluster]\nregion = eu-central-1\noutput = text\n"
    )
    p = {**res.params, "endpoint_url": lab.endpoint_url}
    start_ms = ms(res.ops["start"]["timeout"])
    mon = res.ops["monitor"]
    eni = {name: lab.nodes[name].eni_id for name in lab.nodes}

    def run(node: str, action: str, **kw: Any) -> int:
        timeout = {"start": start_ms, "stop": ms(res.ops["stop"]["timeout"])}.get(action, 20000)
        result = lab.run_agent(node, OVERLAY, action, p, timeout_ms=timeout, **kw)
        assert " is ignored: " not in result.stderr  # every parameter of the guide is ours
        assert result.rc in (0, 7), result.stderr
        rc: int = result.rc
        return rc

    def monitor(node: str) -> int:
        return run(node, "monitor", interval_ms=ms(mon["interval"]))

    def state() -> tuple[Optional[str], bool, bool]:
        target = lab.route_targets(f"{ip}/32", [table])[table]
        has = [any(a.split("/")[0] == ip for a in addresses(lab, n)) for n in ("a", "b")]
        return target, has[0], has[1]

    assert run("a", "validate-all") == 0
    assert run("a", "monitor") == 7  # the probes
    assert run("b", "monitor") == 7
    assert run("a", "start") == 0
    assert state() == (eni["a"], True, False)
    assert monitor("a") == 0
    lab.reset_calls()
    # A migrated primitive with its one monitor keeps the AWS check (monapi was false there).
    assert monitor("a") == 0
    assert [c.action for c in lab.calls("a")] == ["DescribeRouteTables"]
    # a fails; b takes over, a's late stop leaves b's route alone.
    assert run("b", "start") == 0
    assert state() == (eni["b"], True, True)
    assert monitor("a") == 7
    assert run("a", "stop") == 0
    assert state() == (eni["b"], False, True)
    assert monitor("b") == 0
    assert run("b", "stop") == 0
    assert run("b", "stop") == 0
    assert state()[1:] == (False, False)


def test_overlay_with_incumbent_parameters_in_the_lab(lab: Any) -> None:
    """aws-vpc-move-ip's other names, as lab.incumbents configures it: iflabel puts the label
    on the address (ip -json), monapi=false leaves monitor without an AWS call."""
    table = lab.route_tables[0]
    ip = "192.168.10.16"
    p = {
        "address": ip,
        "routing_table": table,
        "interface": "eth0",
        "iflabel": "hana",
        "monapi": "false",
        "lookup_type": "NetworkInterfaceId",
        "auth_type": "role",
        "region": "eu-central-1",
        "endpoint_url": lab.endpoint_url,
    }
    assert lab.run_agent("a", OVERLAY, "validate-all", p).rc == 0
    assert lab.run_agent("a", OVERLAY, "start", p).rc == 0
    assert labels_of(lab, "a", ip) == ["eth0:hana"]
    assert lab.run_agent("a", OVERLAY, "start", p).rc == 0  # idempotent
    assert labels_of(lab, "a", ip) == ["eth0:hana"]
    lab.reset_calls()
    assert lab.run_agent("a", OVERLAY, "monitor", p, interval_ms=60000).rc == 0
    assert lab.calls("a") == []
    assert lab.run_agent("a", OVERLAY, "stop", p).rc == 0
    assert labels_of(lab, "a", ip) == []


# -- Red Hat: awsvip + IPaddr2 -> aws-secip; awseip ------------------------------------------


def test_redhat_awsvip_and_ipaddr2_become_one_secip(lab: Any) -> None:
    resources = read_pcs(DATA / "redhat-awsvip-ipaddr2.pcs")
    assert [r.type for r in resources] == ["awsvip", "IPaddr2"]
    ip = "10.0.1.60"  # a free address of subnet a, where both nodes are
    substitute(resources, {"Unassigned-IP-Address": ip, "secondary-private-IP": ip})
    migrated = migrate(resources)
    assert [(r.id, r.agent, r.group) for r in migrated] == [
        ("privip", "ocf:ipfailover:aws-secip", "networking-group")
    ]
    (res,) = migrated
    p = {**res.params, "endpoint_url": lab.endpoint_url}
    eni = {name: lab.nodes[name].eni_id for name in lab.nodes}

    def run(node: str, action: str, **kw: Any) -> int:
        result = lab.run_agent(node, SECIP, action, p, **kw)
        assert result.rc in (0, 7), result.stderr
        rc: int = result.rc
        return rc

    def state() -> tuple[set[str], set[str]]:
        on = {n for n in lab.nodes if f"{ip}/24" in addresses(lab, n)}
        return lab.holders(ip), on

    assert run("a", "validate-all") == 0
    assert (run("a", "monitor"), run("b", "monitor")) == (7, 7)
    assert run("a", "start") == 0
    # What awsvip + IPaddr2 did together: the address on a's ENI and on a's eth0 (as /24, the
    # subnet's prefix, where IPaddr2 found it from the routing table).
    assert state() == ({eni["a"]}, {"a"})
    assert run("a", "monitor", interval_ms=10000) == 0
    assert run("b", "start") == 0
    assert state() == ({eni["b"]}, {"a", "b"})
    assert run("a", "monitor", interval_ms=10000) == 7
    assert run("a", "stop") == 0
    assert state() == ({eni["b"]}, {"b"})
    assert run("b", "stop") == 0
    assert state() == (set(), set())


def test_redhat_awseip_on_the_primary_address_is_refused(lab: Any) -> None:
    (res,) = migrate(read_pcs(DATA / "redhat-awseip.pcs"))
    allocation = lab.allocate_eip()
    substitute([res], {"Elastic-IP-Association-ID": allocation, "Elastic-IP-Address": "x"})
    p = {**res.params, "endpoint_url": lab.endpoint_url}
    before = lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"]
    for action in ("validate-all", "start"):
        result = lab.run_agent("a", SECIP, action, p)
        assert result.rc == 6, result.stderr
        assert "primary" in result.exit_reason
    assert lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"] == before
    assert lab.calls("a") == []
