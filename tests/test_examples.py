"""Every configuration example in crm-examples/ loads into a scratch CIB and passes crm_verify.

- ``*.crm``: ``CIB_file=<cib> crm configure load update <example>`` (crmsh works on the file and
  never reaches a cluster); ``*.pcs``: each ``pcs`` command of the file run as ``pcs -f <cib>``.
  Both tools check every parameter against the agent's meta-data and reject unknown ones.
- The scratch CIB starts from ``cibadmin --empty`` plus the fencing example (fence_aws.crm or
  fence_aws.pcs), as on a real cluster: Pacemaker refuses resources without fencing. The
  fencing example itself is loaded into the empty CIB.
- Our agents are seen by the tools through an OcfTree (tests/agentkit.py): symlinks to the
  checkout in a private overlay of /usr/lib/ocf/resource.d; nothing on the host changes.
- Agents we do not ship are isolated: SAPHana and SAPHanaTopology (SUSE's SAPHanaSR, Red Hat's
  resource-agents-sap-hana), when not installed, are replaced in that private overlay by stubs
  that only print meta-data with the real agents' parameters and recommended operations.
  Filesystem and SAPInstance are resource-agents' own. fence_aws is fence-agents' own; without
  it the fencing example is skipped and the others start from stonith-enabled=false.
- Beyond crm_verify: the ocf:ipfailover primitives use only the agent's parameters, all the
  required ones, and op timeouts at least the meta-data's with its monitor interval; the crm and
  pcs versions of an example configure the same ipfailover resources; the SAP examples have the
  constraints of the SUSE and Red Hat guides.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from agentkit import (
    OCF_RA_DIR,
    PROVIDER,
    ROOT,
    OcfTree,
    agent_names,
    checkout_metadata,
    metadata_actions,
    metadata_parameters,
)

EXAMPLES = ROOT / "crm-examples"
CRM = sorted(p.name for p in EXAMPLES.glob("*.crm"))
PCS = sorted(p.name for p in EXAMPLES.glob("*.pcs"))
FENCING = "fence_aws"
TOOLS = ("crm", "pcs")

# What a correct example may print: a scratch CIB has no nodes, hence no quorum; pcs reminds
# of resources' own values every time it changes resource defaults. crmsh 4.4's list of meta
# attributes predates Pacemaker 2.1.3's allow-unhealthy-nodes (aws-health's clone needs it):
# crmsh warns and writes it; Pacemaker's schema and crm_verify know it.
EXPECTED_WARNINGS = (
    "Fencing and resource management disabled due to lack of quorum",
    "Warning: Defaults do not apply to resources which override them with their own defined",
    "unknown attribute 'allow-unhealthy-nodes'",
)

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("crm", "pcs", "cibadmin", "crm_verify")),
    reason="crmsh, pcs and pacemaker-cli-utils are needed",
)


def _stub_metadata(name: str, longdesc: str, params: str, actions: str) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="{name}" version="0">
<version>1.1</version>
<longdesc lang="en">{longdesc} Test stand-in: meta-data only.</longdesc>
<shortdesc lang="en">{name} (test stand-in)</shortdesc>
<parameters>
{params}
</parameters>
<actions>
{actions}
</actions>
</resource-agent>
"""


def _param(name: str, required: bool = False, default: Optional[str] = None) -> str:
    value = "" if default is None else f' default="{default}"'
    return (
        f'<parameter name="{name}" unique="0" required="{int(required)}">'
        f'<longdesc lang="en">{name}</longdesc><shortdesc lang="en">{name}</shortdesc>'
        f'<content type="string"{value}/></parameter>'
    )


# The parameters and recommended operations of the SAP HANA agents (SAPHanaSR 0.16x, the
# resource-agents-sap-hana of RHEL), which the examples use.
SAPHANA_TOPOLOGY = _stub_metadata(
    "SAPHanaTopology",
    "Analyses SAP HANA System Replication topology.",
    "\n".join([_param("SID", True), _param("InstanceNumber", True)]),
    """<action name="start" timeout="600s"/>
<action name="stop" timeout="300s"/>
<action name="status" timeout="60s"/>
<action name="monitor" depth="0" timeout="600s" interval="10s"/>
<action name="validate-all" timeout="5s"/>
<action name="meta-data" timeout="5s"/>""",
)
SAPHANA = _stub_metadata(
    "SAPHana",
    "Manages two SAP HANA instances in system replication.",
    "\n".join(
        [
            _param("SID", True),
            _param("InstanceNumber", True),
            _param("PREFER_SITE_TAKEOVER", default="yes"),
            _param("AUTOMATED_REGISTER", default="false"),
            _param("DUPLICATE_PRIMARY_TIMEOUT", default="7200"),
            _param("HANA_CALL_TIMEOUT", default="60"),
        ]
    ),
    """<action name="start" timeout="3600s"/>
<action name="stop" timeout="3600s"/>
<action name="promote" timeout="3600s"/>
<action name="demote" timeout="3600s"/>
<action name="status" timeout="60s"/>
<action name="monitor" depth="0" timeout="700s" interval="60s" role="Promoted"/>
<action name="monitor" depth="0" timeout="700s" interval="61s" role="Unpromoted"/>
<action name="notify" timeout="10s"/>
<action name="validate-all" timeout="5s"/>
<action name="meta-data" timeout="5s"/>""",
)
STUBS = {
    ("suse", "SAPHanaTopology"): SAPHANA_TOPOLOGY,
    ("suse", "SAPHana"): SAPHANA,
    ("heartbeat", "SAPHanaTopology"): SAPHANA_TOPOLOGY,
    ("heartbeat", "SAPHana"): SAPHANA,
}


def has_fence_aws() -> bool:
    return shutil.which(FENCING) is not None or Path(f"/usr/sbin/{FENCING}").exists()


def pcs_commands(path: Path) -> list[list[str]]:
    """The pcs commands of an example: comments and blank lines skipped, continuations joined,
    words split as a POSIX shell does."""
    commands: list[list[str]] = []
    current = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        assert not line.startswith("#"), f"{path.name}:{number}: comment inside a command"
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        words = shlex.split(current + line)
        assert words[0] == "pcs", f"{path.name}:{number}: not a pcs command"
        commands.append(words)
        current = ""
    assert not current, f"{path.name}: ends inside a continued command"
    return commands


@dataclass
class Outcome:
    cib: Optional[Path] = None
    log: list[str] = field(default_factory=list)
    error: Optional[str] = None


class Loader:
    """Loads each example once (per tool) into its own scratch CIB, on top of the base."""

    def __init__(self, tree: OcfTree, workdir: Path) -> None:
        self.tree = tree
        self.workdir = workdir
        self.fencing = has_fence_aws()
        self.done: dict[tuple[str, str], Outcome] = {}

    def _run(self, outcome: Outcome, *args: str, cib: Path) -> None:
        proc = self.tree.run(*args, env={"CIB_file": str(cib)}, cwd=self.workdir)
        text = (proc.stdout + proc.stderr).strip()
        outcome.log.append(f"$ {shlex.join(args)}  -> {proc.returncode}\n{text}")
        unexpected = [
            line
            for line in text.splitlines()
            if re.search(r"error|warning", line, re.IGNORECASE)
            and not any(w in line for w in EXPECTED_WARNINGS)
        ]
        if proc.returncode != 0 or unexpected:
            raise AssertionError("\n".join(outcome.log))

    def _apply(self, outcome: Outcome, tool: str, example: str, cib: Path) -> None:
        path = EXAMPLES / example
        if tool == "crm":
            self._run(outcome, "crm", "configure", "load", "update", str(path), cib=cib)
        else:
            for words in pcs_commands(path):
                self._run(outcome, "pcs", "-f", str(cib), *words[1:], cib=cib)

    def _start(self, outcome: Outcome, tool: str, cib: Path, example: str) -> None:
        """The CIB to load ``example`` into: empty for the fencing example, else the base."""
        with cib.open("w") as f:
            subprocess.run(["cibadmin", "--empty"], stdout=f, check=True, timeout=60)
        if example.startswith(FENCING):
            return
        if self.fencing:
            base = self.load(tool, f"{FENCING}.{tool}")
            if base.error or base.cib is None:
                raise AssertionError(f"the fencing example does not load:\n{base.error}")
            shutil.copyfile(base.cib, cib)
        elif tool == "crm":  # no fence agent to configure: a CIB for tests only
            self._run(outcome, "crm", "configure", "property", "stonith-enabled=false", cib=cib)
        else:
            self._run(outcome, "pcs", "-f", str(cib), "property", "set",
                      "stonith-enabled=false", cib=cib)  # fmt: skip

    def load(self, tool: str, example: str) -> Outcome:
        key = (tool, example)
        if key not in self.done:
            outcome = self.done[key] = Outcome()
            cib = self.workdir / f"{example}.{tool}.cib.xml"
            try:
                self._start(outcome, tool, cib, example)
                self._apply(outcome, tool, example, cib)
                outcome.cib = cib
            except AssertionError as e:
                outcome.error = str(e)
        return self.done[key]

    def preload(self) -> None:
        """Load every example, in parallel: each pcs or crm run is a ~1 s Python start-up."""
        examples = [("crm", e) for e in CRM] + [("pcs", e) for e in PCS]
        with ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1)) as pool:
            bases = [(t, e) for t, e in examples if e.startswith(FENCING) and self.fencing]
            list(pool.map(lambda key: self.load(*key), bases))  # the others start from these
            list(pool.map(lambda key: self.load(*key), examples))

    def cib(self, tool: str, example: str) -> ET.Element:
        outcome = self.load(tool, example)
        if outcome.error or outcome.cib is None:
            pytest.fail(f"{example} does not load with {tool}:\n{outcome.error}", pytrace=False)
        return ET.parse(outcome.cib).getroot()  # noqa: S314 - written by crmsh/pcs just now


@pytest.fixture(scope="module")
def loader(ocf_tree: OcfTree, tmp_path_factory: pytest.TempPathFactory) -> Loader:
    tree = ocf_tree
    for (provider, name), metadata in STUBS.items():
        if not (OCF_RA_DIR / provider / name).exists():
            tree.add_stub(provider, name, metadata)
    loader = Loader(tree, tmp_path_factory.mktemp("cibs"))
    loader.preload()
    return loader


def _skip_unavailable(loader: Loader, example: str) -> None:
    if example.startswith(FENCING) and not loader.fencing:
        pytest.skip(f"{FENCING} is not installed (fence-agents)")
    text = (EXAMPLES / example).read_text()
    missing = sorted(set(re.findall(rf"ocf:{PROVIDER}:([\w-]+)", text)) - set(agent_names()))
    if missing:
        pytest.fail(f"{example} uses agents that are not in agents/: {missing}")


def _verify(cib: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["crm_verify", "--xml-file", str(cib), "-V"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# -- Loading and verifying ---------------------------------------------------------------------


def test_every_example_has_a_crm_and_a_pcs_version() -> None:
    stems = {Path(n).stem for n in CRM} | {Path(n).stem for n in PCS}
    assert {Path(n).stem for n in CRM} == stems
    assert {Path(n).stem for n in PCS} == stems
    for agent in agent_names():
        assert agent in stems, f"no example for {agent}"
    assert FENCING in stems
    assert any("hana" in s for s in stems)
    assert any("ascs" in s or "nfs" in s for s in stems)


@pytest.mark.parametrize("example", PCS)
def test_pcs_example_is_valid_shell(example: str) -> None:
    proc = subprocess.run(["sh", "-n", str(EXAMPLES / example)], capture_output=True, text=True,
                          check=False, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pcs_commands(EXAMPLES / example)


@pytest.mark.parametrize(("tool", "example"), [("crm", e) for e in CRM] + [("pcs", e) for e in PCS])
def test_example_loads_and_verifies(loader: Loader, tool: str, example: str) -> None:
    _skip_unavailable(loader, example)
    outcome = loader.load(tool, example)
    assert outcome.error is None, outcome.error
    assert outcome.cib is not None
    proc = _verify(outcome.cib)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    root = ET.parse(outcome.cib).getroot()  # noqa: S314
    assert root.find("configuration/resources/*") is not None  # something was configured


def test_verify_rejects_a_broken_cib(loader: Loader, tmp_path: Path) -> None:
    """crm_verify is not vacuous: a colocation with a resource that does not exist fails."""
    outcome = loader.load("crm", f"{FENCING}.crm" if loader.fencing else CRM[0])
    assert outcome.cib is not None, outcome.error
    root = ET.parse(outcome.cib).getroot()  # noqa: S314
    constraints = root.find("configuration/constraints")
    assert constraints is not None
    ET.SubElement(constraints, "rsc_colocation", id="bad", rsc="nope", score="INFINITY")
    broken = tmp_path / "broken.xml"
    ET.ElementTree(root).write(broken)
    assert _verify(broken).returncode != 0


# -- What the examples configure ---------------------------------------------------------------


def seconds(value: str) -> float:
    """A Pacemaker duration (``30``, ``30s``, ``500ms``, ``2min``, ``1h``) in seconds."""
    match = re.fullmatch(r"(\d+)\s*(ms|msec|s|sec|m|min|h|hr)?", value.strip())
    assert match, value
    factor = {"ms": 0.001, "msec": 0.001, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    return int(match.group(1)) * factor.get(match.group(2) or "s", 1)


def _nvpairs(element: ET.Element, block: str) -> dict[str, str]:
    return {nv.get("name", ""): nv.get("value", "") for nv in element.findall(f"{block}/nvpair")}


def ipfailover_primitives(root: ET.Element) -> dict[str, dict[str, Any]]:
    """id -> {type, params, ops, parent} of every ocf:ipfailover primitive."""
    parents = {child: parent for parent in root.iter() for child in parent}
    result = {}
    for prim in root.iter("primitive"):
        if prim.get("class") != "ocf" or prim.get("provider") != PROVIDER:
            continue
        parent = parents[prim]
        result[prim.get("id", "")] = {
            "type": prim.get("type"),
            "params": _nvpairs(prim, "instance_attributes"),
            "ops": sorted(
                (
                    op.get("name", ""),
                    op.get("role", ""),
                    seconds(op.get("interval", "0")),
                    seconds(op.get("timeout", "0")),
                    _nvpairs(op, "instance_attributes").get("OCF_CHECK_LEVEL", "0"),
                )
                for op in prim.findall("operations/op")
            ),
            "parent": parent.get("id") if parent.tag in ("group", "clone") else None,
        }
    return result


def _examples_with_our_agents() -> list[tuple[str, str]]:
    return [
        (tool, example)
        for tool, examples in (("crm", CRM), ("pcs", PCS))
        for example in examples
        if f"ocf:{PROVIDER}:" in (EXAMPLES / example).read_text()
    ]


@pytest.mark.parametrize(("tool", "example"), _examples_with_our_agents())
def test_our_resources_match_the_meta_data(loader: Loader, tool: str, example: str) -> None:
    _skip_unavailable(loader, example)
    prims = ipfailover_primitives(loader.cib(tool, example))
    assert prims
    for rid, prim in prims.items():
        xml = checkout_metadata(prim["type"])
        params = metadata_parameters(xml)
        assert set(prim["params"]) <= set(params), rid
        assert {p for p, a in params.items() if a["required"] == "1"} <= set(prim["params"]), rid
        # An op per meta-data action, by name and interval; a monitor of depth N with
        # OCF_CHECK_LEVEL=N (the deep monitor of monitor_api=deep).
        ops = {
            (name, interval): (timeout, level) for name, _, interval, timeout, level in prim["ops"]
        }
        for action in metadata_actions(xml):
            if action["name"] not in ("start", "stop", "monitor"):
                continue
            key = (action["name"], seconds(action.get("interval", "0")))
            assert key in ops, f"{rid}: no {action['name']} op every {key[1]:g}s"
            timeout, level = ops[key]
            assert timeout >= seconds(action["timeout"]), f"{rid}: {action['name']} timeout"
            assert level == action.get("depth", "0"), f"{rid}: {key}: OCF_CHECK_LEVEL"
        if "monitor_api" in params:  # the IP agents (aws-health has no AWS side to watch)
            assert prim["params"].get("monitor_api") == "deep", f"{rid}: monitor_api=deep"


@pytest.mark.parametrize("stem", sorted({Path(e).stem for _, e in _examples_with_our_agents()}))
def test_crm_and_pcs_versions_configure_the_same_resources(loader: Loader, stem: str) -> None:
    _skip_unavailable(loader, f"{stem}.crm")
    crm = ipfailover_primitives(loader.cib("crm", f"{stem}.crm"))
    pcs = ipfailover_primitives(loader.cib("pcs", f"{stem}.pcs"))
    assert crm == pcs


def _by_id(root: ET.Element, tag: str) -> dict[str, ET.Element]:
    return {e.get("id", ""): e for e in root.iter(tag)}


def _clone_of(root: ET.Element, agent_type: str) -> ET.Element:
    found = [
        c for c in root.iter("clone") if c.find(f"primitive[@type='{agent_type}']") is not None
    ]
    assert len(found) == 1, agent_type
    return found[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_sap_hana_example_follows_the_guides(loader: Loader, tool: str) -> None:
    example = f"sap-hana-scale-up-overlayip.{tool}"
    _skip_unavailable(loader, example)
    root = loader.cib(tool, example)
    topology = _clone_of(root, "SAPHanaTopology")
    hana = _clone_of(root, "SAPHana")
    assert _nvpairs(hana, "meta_attributes").get("promotable") == "true"
    assert _nvpairs(topology, "meta_attributes").get("promotable", "false") == "false"
    for clone in (hana, topology):
        assert _nvpairs(clone, "meta_attributes").get("interleave") == "true"
    (ip,) = ipfailover_primitives(root)
    colocations = [
        c for c in root.iter("rsc_colocation")
        if c.get("rsc") == ip and c.get("with-rsc") == hana.get("id")
    ]  # fmt: skip
    assert len(colocations) == 1
    assert colocations[0].get("with-rsc-role") in ("Promoted", "Master")
    assert colocations[0].get("rsc-role", "Started") == "Started"
    assert colocations[0].get("score") == "2000"
    orders = [
        o for o in root.iter("rsc_order")
        if o.get("first") == topology.get("id") and o.get("then") == hana.get("id")
    ]  # fmt: skip
    assert len(orders) == 1
    # the promoted instance is monitored apart from the unpromoted one
    roles = {op.get("role") for op in hana.iter("op") if op.get("name") == "monitor"}
    assert roles in ({"Promoted", "Unpromoted"}, {"Master", "Slave"})


@pytest.mark.parametrize("tool", TOOLS)
def test_ascs_ers_example_follows_the_guides(loader: Loader, tool: str) -> None:
    example = f"sap-ascs-ers-overlayip.{tool}"
    _skip_unavailable(loader, example)
    root = loader.cib(tool, example)
    groups = _by_id(root, "group")
    ascs, ers = groups["grp_HA1_ASCS00"], groups["grp_HA1_ERS10"]
    for group in (ascs, ers):
        members = [(p.get("provider"), p.get("type")) for p in group.findall("primitive")]
        assert members == [(PROVIDER, "aws-overlayip"), ("heartbeat", "Filesystem"),
                           ("heartbeat", "SAPInstance")]  # fmt: skip
    assert _nvpairs(ers.findall("primitive")[2], "instance_attributes").get("IS_ERS") == "true"
    (colocation,) = list(root.iter("rsc_colocation"))
    assert (colocation.get("rsc"), colocation.get("with-rsc")) == (
        "grp_HA1_ERS10",
        "grp_HA1_ASCS00",
    )
    assert colocation.get("score") == "-5000"
    (order,) = list(root.iter("rsc_order"))
    assert (order.get("first"), order.get("first-action")) == ("rsc_sap_HA1_ASCS00", "start")
    assert (order.get("then"), order.get("then-action")) == ("rsc_sap_HA1_ERS10", "stop")
    assert order.get("kind") == "Optional"
    assert order.get("symmetrical") == "false"


@pytest.mark.parametrize("tool", TOOLS)
def test_fencing_example(loader: Loader, tool: str) -> None:
    example = f"{FENCING}.{tool}"
    _skip_unavailable(loader, example)
    root = loader.cib(tool, example)
    (fence,) = [p for p in root.iter("primitive") if p.get("class") == "stonith"]
    assert fence.get("type") == FENCING
    params = _nvpairs(fence, "instance_attributes")
    host_map = dict(pair.split(":") for pair in params["pcmk_host_map"].split(";"))
    assert len(host_map) == 2
    assert all(re.fullmatch(r"i-[0-9a-f]{17}", i) for i in host_map.values())
    assert "access_key" not in params and "secret_key" not in params  # the instance role
    props = {
        nv.get("name"): nv.get("value") for nv in root.iterfind("configuration/crm_config//nvpair")
    }
    assert props.get("stonith-enabled") == "true"


def test_examples_name_what_we_do_not_ship() -> None:
    """An example that needs agents we do not ship says so."""
    ours = {f"ocf:{PROVIDER}:{a}" for a in agent_names()}
    for example in CRM + PCS:
        text = (EXAMPLES / example).read_text()
        others = {
            m for m in re.findall(r"ocf:\w+:[\w-]+|stonith:\w+|\bfence_\w+", text) if m not in ours
        }
        if others:
            assert re.search(r"not (part of|shipped by) ipfailover-agents", text, re.I), example


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("strategy", ["migrate-on-red", "custom"])
def test_aws_health_examples(loader: Loader, tool: str, strategy: str) -> None:
    """The clone has allow-unhealthy-nodes=true (on the clone), the strategy is set; with custom,
    a -INFINITY rule on #health-aws red names the resource; the API check is a finite preference
    below the resource's stickiness."""
    example = f"aws-health{'-custom' if strategy == 'custom' else ''}.{tool}"
    _skip_unavailable(loader, example)
    root = loader.cib(tool, example)
    clone = _clone_of(root, "aws-health")
    assert _nvpairs(clone, "meta_attributes").get("allow-unhealthy-nodes") == "true"
    (health,) = clone.findall("primitive")
    assert "allow-unhealthy-nodes" not in _nvpairs(health, "meta_attributes")
    props = {
        nv.get("name"): nv.get("value") for nv in root.iterfind("configuration/crm_config//nvpair")
    }
    assert props.get("node-health-strategy") == strategy
    ip = _by_id(root, "primitive")["rsc_ip_app"]
    stickiness = int(_nvpairs(ip, "meta_attributes")["resource-stickiness"])
    rules: dict[tuple[Optional[str], ...], Optional[str]] = {}
    for location in root.iter("rsc_location"):
        assert location.get("rsc") == "rsc_ip_app"
        for rule in location.iter("rule"):
            (expression,) = rule.findall("expression")
            key = tuple(expression.get(k) for k in ("attribute", "operation", "value"))
            rules[key] = rule.get("score")
    api = rules.pop(("aws-api-ok", "eq", "0"))
    assert api is not None and 0 < -int(api) < stickiness
    if strategy == "custom":
        assert rules == {("#health-aws", "eq", "red"): "-INFINITY"}
    else:
        assert rules == {}
