"""The generated meta-data is valid against all three schemas at once, whatever the descriptions.

Schemas: resource-agents' ra-api-1.dtd (what ocf-tester uses) and metadata.rng, both from the
Debian resource-agents package, and the OCF 1.1 RelaxNG from ClusterLabs/OCF-spec, stored as
tests/data/ocf-1.1-ra-api.rng because no Debian package ships it.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from agentkit import OCF_11_RNG, RESOURCE_AGENTS_RNG, xmllint
from agentkit import RA_API_DTD as DTD
from ocf_shim import ActionSpec, Agent, Context, Parameter

HOSTILE = "a < b && c > d; \"double\" 'single' ]]> <!-- --> &amp; é ü ß 中文 😀 \u200b"

pytestmark = pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint is missing")


def _ok(_ctx: Context) -> int:
    return 0


def rich_agent() -> Agent:
    """Every parameter type, required/unique/default combinations, hostile descriptions."""
    params = [
        Parameter("s_plain", "plain string", "A string without anything."),
        Parameter("s_required", "required", "Required.", required=True),
        Parameter("s_required_unique", "req+uniq", "Both.", required=True, unique=True),
        Parameter("s_unique_default", "uniq+default", "Unique with default.", default="d",
                  unique=True),
        Parameter("s_hostile_default", HOSTILE, HOSTILE + "\nsecond line\n\tindented",
                  default=HOSTILE),
        Parameter("s_empty_default", "empty default", "Default is the empty string.", default=""),
        Parameter("i_plain", "integer", "An integer.", type="integer"),
        Parameter("i_default", "integer default", "An integer with a default.", type="integer",
                  default=30),
        Parameter("i_negative", "negative", "Negative default.", type="integer", default=-1),
        Parameter("i_required", "int required", "Required integer.", type="integer",
                  required=True, unique=True),
        Parameter("b_plain", "boolean", "A boolean.", type="boolean"),
        Parameter("b_true", "boolean true", "Defaults to true.", type="boolean", default=True),
        Parameter("b_false", "boolean false", "Defaults to false.", type="boolean",
                  default=False, unique=True),
        Parameter("b_required", "boolean required", "Required.", type="boolean", required=True),
    ]  # fmt: skip
    actions = [
        ActionSpec("start", 20),
        ActionSpec("stop", 20),
        ActionSpec("monitor", 20, interval=10),
        ActionSpec("monitor", 30, interval=60, depth=0),
        ActionSpec("validate-all", 15),
        ActionSpec("meta-data", 5),
        ActionSpec("usage", 5),
    ]
    handlers = {"start": _ok, "stop": _ok, "monitor": _ok, "validate-all": _ok}
    return Agent(
        "rich-agent", "1.2.3-rc1 <&>", HOSTILE, HOSTILE + "\n\nmore", params, actions, handlers
    )


def minimal_agent() -> Agent:
    return Agent(
        "minimal",
        "0",
        "Minimal",
        "The smallest agent the schemas accept.",
        [Parameter("p", "P", "A parameter.")],
        [ActionSpec("start", 1)],
        {"start": _ok},
    )


AGENTS = [pytest.param(rich_agent, id="rich"), pytest.param(minimal_agent, id="minimal")]


def body(xml: str) -> ET.Element:
    return ET.fromstring(xml.split("\n", 2)[2])  # noqa: S314 - our own output


@pytest.mark.parametrize("make", AGENTS)
@pytest.mark.skipif(not DTD.exists(), reason="resource-agents is not installed")
def test_valid_against_ra_api_1_dtd(make: Callable[[], Agent]) -> None:
    xmllint(make().metadata_xml(), "--dtdvalid", str(DTD))


@pytest.mark.parametrize("make", AGENTS)
@pytest.mark.skipif(not DTD.exists(), reason="resource-agents is not installed")
def test_valid_the_way_ocf_tester_checks(make: Callable[[], Agent]) -> None:
    # ocf-tester: cd $DATADIR/resource-agents && xmllint --noout --valid - (DOCTYPE is followed)
    xmllint(make().metadata_xml(), "--valid")


@pytest.mark.parametrize("make", AGENTS)
@pytest.mark.skipif(not RESOURCE_AGENTS_RNG.exists(), reason="resource-agents is not installed")
def test_valid_against_resource_agents_metadata_rng(make: Callable[[], Agent]) -> None:
    xmllint(make().metadata_xml(), "--relaxng", str(RESOURCE_AGENTS_RNG))


@pytest.mark.parametrize("make", AGENTS)
def test_valid_against_ocf_1_1_rng(make: Callable[[], Agent]) -> None:
    xmllint(make().metadata_xml(), "--relaxng", str(OCF_11_RNG))


def test_invalid_metadata_is_caught() -> None:
    """The schema checks are not vacuous: a document they must reject fails."""
    bad = minimal_agent().metadata_xml().replace('required="0"', 'required="maybe"')
    for args in (("--dtdvalid", str(DTD)), ("--relaxng", str(OCF_11_RNG))):
        with pytest.raises(AssertionError):
            xmllint(bad, *args)


def test_prologue_and_structure() -> None:
    xml = rich_agent().metadata_xml()
    lines = xml.splitlines()
    assert lines[0] == '<?xml version="1.0"?>'
    assert lines[1] == '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">'
    assert xml.isascii()
    assert len(lines) > 20  # indented, one element per line
    root = body(xml)
    assert root.tag == "resource-agent"
    assert root.attrib == {"name": "rich-agent", "version": "1.2.3-rc1 <&>"}
    assert [child.tag for child in root] == [
        "version",
        "longdesc",
        "shortdesc",
        "parameters",
        "actions",
    ]
    assert root.findtext("version") == "1.1"
    assert root.findtext("shortdesc") == HOSTILE
    assert root.findtext("longdesc") == HOSTILE + "\n\nmore"
    for desc in root.iter("longdesc"):
        assert desc.get("lang") == "en"
    for desc in root.iter("shortdesc"):
        assert desc.get("lang") == "en"


def test_parameters_rendering() -> None:
    root = body(rich_agent().metadata_xml())
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert list(params) == [p.name for p in rich_agent().parameters]
    for p in params.values():
        assert [child.tag for child in p] == ["longdesc", "shortdesc", "content"]

    def attrs(name: str) -> tuple[str | None, str | None, str | None, str | None]:
        p = params[name]
        content = p.find("content")
        assert content is not None
        return p.get("required"), p.get("unique"), content.get("type"), content.get("default")

    assert attrs("s_plain") == ("0", "0", "string", None)
    assert attrs("s_required") == ("1", "0", "string", None)
    assert attrs("s_required_unique") == ("1", "1", "string", None)
    assert attrs("s_unique_default") == ("0", "1", "string", "d")
    assert attrs("s_hostile_default") == ("0", "0", "string", HOSTILE)
    assert attrs("s_empty_default") == ("0", "0", "string", "")
    assert attrs("i_plain") == ("0", "0", "integer", None)
    assert attrs("i_default") == ("0", "0", "integer", "30")
    assert attrs("i_negative") == ("0", "0", "integer", "-1")
    assert attrs("i_required") == ("1", "1", "integer", None)
    assert attrs("b_plain") == ("0", "0", "boolean", None)
    assert attrs("b_true") == ("0", "0", "boolean", "true")
    assert attrs("b_false") == ("0", "1", "boolean", "false")
    assert attrs("b_required") == ("1", "0", "boolean", None)
    hostile = params["s_hostile_default"]
    assert hostile.findtext("shortdesc") == HOSTILE
    assert hostile.findtext("longdesc") == HOSTILE + "\nsecond line\n\tindented"


def test_actions_rendering() -> None:
    root = body(rich_agent().metadata_xml())
    assert [a.attrib for a in root.iter("action")] == [
        {"name": "start", "timeout": "20s"},
        {"name": "stop", "timeout": "20s"},
        {"name": "monitor", "timeout": "20s", "interval": "10s"},
        {"name": "monitor", "timeout": "30s", "interval": "60s", "depth": "0"},
        {"name": "validate-all", "timeout": "15s"},
        {"name": "meta-data", "timeout": "5s"},
        {"name": "usage", "timeout": "5s"},
    ]
