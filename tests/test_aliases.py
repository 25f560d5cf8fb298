"""The incumbents' parameters (issue 13, part 5): aws-vpc-move-ip's on aws-overlayip, awsvip's
and awseip's on aws-secip. Each is honoured with the incumbent's meaning or ignored with one log
line; an old name disagreeing with ours is refused (6) naming both; the meta-data lists them as
deprecated in a form all three schemas accept (tests/test_metadata_schemas.py validates it).

The agents run as processes (validate-all at OCF_CHECK_LEVEL=0: the parameters alone, no AWS);
what a value maps to is read from the parsed configuration.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from agentkit import (
    OCF_11_RNG,
    RA_API_DTD,
    RESOURCE_AGENTS_RNG,
    agent,
    metadata_parameters,
    xmllint,
)
from ipfailover.config import aliases
from ipfailover.overlayip import declaration as overlay
from ipfailover.secip import declaration as secip
from ocf_shim import ConfigError, Parameter

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "ocf-exit-reason:"
OVERLAY = {"ip": "192.168.10.10", "routing_table": "rtb-0123abcd"}
SECIP = {"ip": "10.0.1.100"}
EIP = "eipalloc-0123456789abcdef0"


def syntax_check(name: str, values: dict[str, str]) -> tuple[int, str, str]:
    """validate-all at OCF_CHECK_LEVEL=0 of agent ``name``: (rc, exit reason, stderr)."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "OCF_ROOT": "/usr/lib/ocf",
        "PYTHONPATH": str(ROOT / "lib"),
        "OCF_CHECK_LEVEL": "0",
        **{f"OCF_RESKEY_{k}": v for k, v in values.items()},
    }
    proc = subprocess.run(
        [sys.executable, str(agent(name)), "validate-all"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reasons = [line[len(PREFIX) :] for line in proc.stderr.splitlines() if line.startswith(PREFIX)]
    return proc.returncode, "\n".join(reasons), proc.stderr


def parsed(module: Any, values: dict[str, str]) -> Any:
    """The configuration the agent's parser makes from these OCF_RESKEY_ values."""
    env = {f"OCF_RESKEY_{k}": v for k, v in values.items()}
    return module.parse_config(module.AGENT.read_params(env))


# -- aws-vpc-move-ip -> aws-overlayip ---------------------------------------------------------


def test_address_stands_for_ip() -> None:
    cfg = parsed(overlay, {"address": "192.168.10.10", "routing_table": "rtb-0123abcd"})
    assert cfg.ip_text == "192.168.10.10"


def test_address_and_ip_agreeing_are_one_value() -> None:
    cfg = parsed(overlay, {**OVERLAY, "ip": "fd00::0:1", "address": "fd00::1"})
    assert cfg.ip_text == "fd00::1"


@pytest.mark.parametrize(
    ("agent_name", "values", "names"),
    [
        ("aws-overlayip", {**OVERLAY, "address": "192.168.10.11"}, ("ip", "address")),
        ("aws-overlayip", {**OVERLAY, "label": "eth0:a", "iflabel": "b"}, ("label", "iflabel")),
        ("aws-overlayip", {**OVERLAY, "monitor_api": "deep", "monapi": "true"},
         ("monitor_api", "monapi")),
        ("aws-overlayip", {**OVERLAY, "monitor_api": "false", "monapi": "true"},
         ("monitor_api", "monapi")),
        ("aws-overlayip", {**OVERLAY, "auth_type": "role", "profile": "cluster"},
         ("auth_type", "profile")),
        ("aws-secip", {**SECIP, "secondary_private_ip": "10.0.1.101"},
         ("ip", "secondary_private_ip")),
        ("aws-secip", {"secondary_private_ip": "10.0.1.100", "private_ip_address": "10.0.1.101",
                       "allocation_id": EIP}, ("secondary_private_ip", "private_ip_address")),
        ("aws-secip", {**SECIP, "elastic_ip_allocation_id": EIP,
                       "allocation_id": "eipalloc-0123456789abcdef1"},
         ("elastic_ip_allocation_id", "allocation_id")),
    ],
)  # fmt: skip
def test_alias_disagreeing_with_native_is_refused(
    agent_name: str, values: dict[str, str], names: tuple[str, str]
) -> None:
    rc, reason, _ = syntax_check(agent_name, values)
    assert rc == 6
    for name in names:
        assert f"'{name}'" in reason


def test_no_address_at_all_is_required_ip() -> None:
    rc, reason, _ = syntax_check("aws-overlayip", {"routing_table": "rtb-0123abcd"})
    assert (rc, reason) == (6, "parameter 'ip' is required")


@pytest.mark.parametrize(
    ("values", "label"),
    [
        ({"iflabel": "vip"}, "eth0:vip"),
        ({"iflabel": "vip", "interface": "ens5"}, "ens5:vip"),
        ({"iflabel": "vip", "label": "eth0:vip"}, "eth0:vip"),
        ({}, None),
    ],
)
def test_iflabel_is_appended_to_the_interface(values: dict[str, str], label: str) -> None:
    assert parsed(overlay, {**OVERLAY, **values}).label == label


def test_iflabel_too_long_for_the_kernel_is_refused() -> None:
    rc, reason, _ = syntax_check("aws-overlayip", {**OVERLAY, "iflabel": "0123456789ab"})
    assert rc == 6
    assert "label" in reason


@pytest.mark.parametrize(
    ("values", "monitor_api"),
    [
        ({}, "true"),  # a migrated primitive with one monitor keeps the AWS check
        ({"monapi": "false"}, "false"),
        ({"monapi": "no"}, "false"),
        ({"monapi": "true"}, "true"),
        ({"monapi": "true", "monitor_api": "yes"}, "true"),
        ({"monapi": "false", "monitor_api": "false"}, "false"),
        ({"monitor_api": "deep"}, "deep"),
    ],
)
def test_monapi_maps_onto_monitor_api(values: dict[str, str], monitor_api: str) -> None:
    assert parsed(overlay, {**OVERLAY, **values}).monitor_api == monitor_api


def test_monapi_must_be_a_boolean() -> None:
    rc, reason, _ = syntax_check("aws-overlayip", {**OVERLAY, "monapi": "deep"})
    assert rc == 6
    assert "'monapi'" in reason


@pytest.mark.parametrize(
    ("values", "profile", "role_arn"),
    [
        ({"auth_type": "role"}, None, None),  # the default chain, never an assumed role
        ({"auth_type": "key"}, None, None),  # --profile default: the chain reads [default]
        ({"auth_type": "key", "profile": "cluster"}, "cluster", None),
        ({"auth_type": "role", "role_arn": "arn:aws:iam::123456789012:role/ha"},
         None, "arn:aws:iam::123456789012:role/ha"),
    ],
)  # fmt: skip
def test_auth_type_keeps_its_credentials(
    values: dict[str, str], profile: str, role_arn: str
) -> None:
    cfg = parsed(overlay, {**OVERLAY, **values})
    assert (cfg.aws.profile, cfg.aws.role_arn) == (profile, role_arn)


@pytest.mark.parametrize(
    ("name", "value"), [("auth_type", "instance"), ("lookup_type", "Tag"), ("curl_retries", "x")]
)
def test_values_the_incumbent_did_not_know_are_refused(name: str, value: str) -> None:
    rc, reason, _ = syntax_check("aws-overlayip", {**OVERLAY, name: value})
    assert rc == 6
    assert f"'{name}'" in reason


def test_ignored_parameters_log_one_line_each() -> None:
    ignored = {
        "lookup_type": "NetworkInterfaceId",
        "auth_type": "role",
        "awscli": "/usr/bin/aws",
        "awscli_timeout": "5",
        "curl_retries": "3",
        "curl_sleep": "1",
    }
    rc, _, stderr = syntax_check("aws-overlayip", {**OVERLAY, **ignored})
    assert rc == 0, stderr
    lines = [line for line in stderr.splitlines() if " is ignored: " in line]
    assert sorted(line.split("parameter ")[1].split("=")[0] for line in lines) == sorted(ignored)


def test_routing_table_role_is_ours_not_an_alias() -> None:
    names = [a.name for a in aliases.OVERLAY_ALIASES]
    assert "routing_table_role" not in names
    native = {p.name for p in overlay.PARAMETERS if p.deprecated is None}
    assert not native & set(names)


# -- awsvip, awseip -> aws-secip --------------------------------------------------------------


def test_awsvip_primitive() -> None:
    cfg = parsed(secip, {"secondary_private_ip": "10.0.1.100", "api_delay": "3"})
    assert (cfg.ip_text, cfg.eip_allocation_id) == ("10.0.1.100", None)


def test_awseip_primitive_with_private_ip_address() -> None:
    cfg = parsed(
        secip,
        {"elastic_ip": "203.0.113.10", "allocation_id": EIP, "private_ip_address": "10.0.1.100"},
    )
    assert (cfg.ip_text, cfg.eip_allocation_id) == ("10.0.1.100", EIP)


def test_awsvip_and_awseip_on_one_address() -> None:
    values = {"secondary_private_ip": "10.0.1.100", "private_ip_address": "10.0.1.100"}
    cfg = parsed(secip, {**values, "allocation_id": EIP})
    assert (cfg.ip_text, cfg.eip_allocation_id) == ("10.0.1.100", EIP)


@pytest.mark.parametrize(
    "values",
    [
        {"elastic_ip": "203.0.113.10", "allocation_id": EIP},
        {"allocation_id": EIP},
    ],
)
def test_awseip_on_the_primary_address_is_refused(values: dict[str, str]) -> None:
    rc, reason, _ = syntax_check("aws-secip", values)
    assert rc == 6
    assert "primary" in reason
    assert "private_ip_address" in reason


def test_elastic_ip_without_allocation_id_is_refused() -> None:
    rc, reason, _ = syntax_check("aws-secip", {**SECIP, "elastic_ip": "203.0.113.10"})
    assert rc == 6
    assert "allocation" in reason


def test_awseip_keys_with_our_ip() -> None:
    cfg = parsed(secip, {**SECIP, "allocation_id": EIP, "elastic_ip": "203.0.113.10"})
    assert (cfg.ip_text, cfg.eip_allocation_id) == ("10.0.1.100", EIP)


# -- the declarations and the meta-data -------------------------------------------------------


@pytest.mark.parametrize(
    ("agent_name", "table"),
    [("aws-overlayip", aliases.OVERLAY_ALIASES), ("aws-secip", aliases.SECIP_ALIASES)],
)
def test_metadata_lists_aliases_as_deprecated(agent_name: str, table: Any) -> None:
    out = subprocess.run(
        [sys.executable, str(agent(agent_name)), "meta-data"],
        env={"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    params = metadata_parameters(out)
    root = ET.fromstring(out)  # noqa: S314 - our own agent's output
    shortdesc = {
        p.get("name"): p.findtext("shortdesc") or "" for p in root.iterfind("parameters/parameter")
    }
    assert params["ip"]["required"] == "1"
    for alias in table:
        param = params[alias.name]
        assert (param["required"], param["default"]) == ("0", None)
        assert shortdesc[alias.name].startswith("Deprecated: ")
    natives = [n for n in params if n not in {a.name for a in table}]
    assert not any(shortdesc[n].startswith("Deprecated") for n in natives)


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint is missing")
@pytest.mark.skipif(not RA_API_DTD.exists(), reason="resource-agents is not installed")
@pytest.mark.parametrize("module", [overlay, secip], ids=["aws-overlayip", "aws-secip"])
def test_metadata_with_deprecated_parameters_is_valid_against_all_schemas(module: Any) -> None:
    """The deprecation is in the descriptions: ra-api-1.dtd and resource-agents' metadata.rng
    refuse OCF 1.1's <deprecated> element (test_a_deprecated_element_would_break_the_dtd)."""
    xml = module.AGENT.metadata_xml()
    xmllint(xml, "--valid")  # as ocf-tester checks: the DOCTYPE's ra-api-1.dtd
    xmllint(xml, "--relaxng", str(RESOURCE_AGENTS_RNG))
    xmllint(xml, "--relaxng", str(OCF_11_RNG))


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint is missing")
@pytest.mark.skipif(not RA_API_DTD.exists(), reason="resource-agents is not installed")
def test_a_deprecated_element_would_break_the_dtd() -> None:
    """Why not OCF 1.1's element: valid for the OCF 1.1 schema, invalid for the DTD."""
    xml = overlay.AGENT.metadata_xml().replace(
        '<parameter name="address" unique="0" required="0">',
        '<parameter name="address" unique="0" required="0">'
        '<deprecated><replaced-with name="ip" /></deprecated>',
    )
    assert "<deprecated>" in xml
    xmllint(xml, "--relaxng", str(OCF_11_RNG))
    with pytest.raises(AssertionError):
        xmllint(xml, "--valid")
    with pytest.raises(AssertionError):
        xmllint(xml, "--relaxng", str(RESOURCE_AGENTS_RNG))


def test_every_alias_names_a_declared_native() -> None:
    for module, table in ((overlay, aliases.OVERLAY_ALIASES), (secip, aliases.SECIP_ALIASES)):
        declared = {p.name for p in module.PARAMETERS}
        for alias in table:
            assert alias.native is None or alias.native in declared


def test_a_deprecated_parameter_is_never_required_nor_defaulted() -> None:
    with pytest.raises(ValueError, match="deprecated"):
        Parameter("old", "Old", "Old one.", required=True, deprecated="use new")
    with pytest.raises(ValueError, match="deprecated"):
        Parameter("old", "Old", "Old one.", default="x", deprecated="use new")
    with pytest.raises(ValueError, match="replaces"):
        Parameter("old", "Old", "Old one.", replaces="new")


def test_resolve_refuses_missing_required_after_mapping() -> None:
    declared = (Parameter("ip", "IP", "The address.", required=True),)
    table = (aliases.Alias("address", "old", "the address", native="ip", defer_required="ip"),)
    assert aliases.resolve({"ip": None, "address": "10.0.0.1"}, table, declared) == {
        "ip": "10.0.0.1"
    }
    with pytest.raises(ConfigError, match="'ip' is required"):
        aliases.resolve({"ip": None, "address": None}, table, declared)
