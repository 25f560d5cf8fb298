"""What the agent-process tests of all three agents share: paths, interpreters, the ocf-tester
sequence, and readers of OS state in a node (through ``ip -json``, never through our own code)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
DEBIAN_PYTHON = "/usr/bin/python3"


def _agent_pythons() -> list[Any]:
    """Every agent-process test runs under the project's venv and under Debian's python3 with the
    distribution's boto3 and pyroute2: our stand-in for a RHEL or SLES node. ``make compat``
    (tests/compat) replaces them with one row's interpreter: IPFAILOVER_AGENT_PYTHONS=name=path."""
    rows = os.environ.get("IPFAILOVER_AGENT_PYTHONS", "")
    if rows:
        pairs = [item.split("=", 1) for item in rows.split(",") if "=" in item]
        return [pytest.param(path, id=name) for name, path in pairs]
    return [
        pytest.param(sys.executable, id="venv"),
        pytest.param(
            DEBIAN_PYTHON,
            id="debian",
            marks=pytest.mark.skipif(
                not Path(DEBIAN_PYTHON).exists(), reason="no /usr/bin/python3"
            ),
        ),
    ]


PYTHONS = _agent_pythons()

# The steps of resource-agents' ocf-tester, with the exit code each must give.
SEQUENCE: tuple[tuple[str, str, Optional[int], int], ...] = (
    ("meta-data", "meta-data", None, 0),
    ("validate-all", "validate-all", None, 0),
    ("probe", "monitor", None, 7),
    ("start", "start", None, 0),
    ("monitor", "monitor", 10000, 0),
    ("start again", "start", None, 0),
    ("monitor again", "monitor", 10000, 0),
    ("stop", "stop", None, 0),
    ("probe after stop", "monitor", None, 7),
    ("stop again", "stop", None, 0),
    ("monitor after stop", "monitor", 10000, 7),
)


def agent(name: str) -> Path:
    return AGENTS / name


def run_sequence(run: Callable[[str, Optional[int]], Any]) -> list[tuple[str, int]]:
    """Run the ocf-tester steps through ``run(action, interval_ms)``; (step, rc) for each."""
    return [(step, run(action, interval).rc) for step, action, interval, _ in SEQUENCE]


EXPECTED_SEQUENCE = [(step, rc) for step, _, _, rc in SEQUENCE]


def node_addresses(lab: Any, node: str, dev: str = "eth0") -> set[str]:
    """Global addresses on ``dev`` in the node, as ``ip/prefix``."""
    links = lab.ip_json(node, "addr", "show", "dev", dev)
    return {
        f"{a['local']}/{a['prefixlen']}"
        for link in links
        for a in link.get("addr_info", [])
        if a.get("scope") != "link"
    }


def ocf_tester(
    lab: Any, node: str, agent_path: Path, params: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """resource-agents' real ocf-tester, run inside the node with a clean environment.

    ocf-tester executes the agent directly, so its shebang's interpreter (Debian's python3 with
    python3-boto3 and python3-pyroute2) is what runs: as on a cluster node.
    """
    args = ["ocf-tester", "-v", "-n", "ocftest"]
    for key, value in params.items():
        args += ["-o", f"{key}={value}"]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(lab.home) if hasattr(lab, "home") else "/nonexistent",
        "OCF_ROOT": "/usr/lib/ocf",
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        ["ip", "netns", "exec", lab.nodes[node].netns, "env", "-i"]
        + [f"{k}={v}" for k, v in env.items()]
        + [*args, str(agent_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- Meta-data schemas and the conformance tools (crm, pcs, crm_resource), used by
# -- tests/test_packaging.py and tests/test_examples.py ----------------------------------------

RA_DIR = Path("/usr/share/resource-agents")
RA_API_DTD = RA_DIR / "ra-api-1.dtd"
RESOURCE_AGENTS_RNG = RA_DIR / "metadata.rng"
OCF_11_RNG = Path(__file__).resolve().parent / "data" / "ocf-1.1-ra-api.rng"
OCF_RA_DIR = Path("/usr/lib/ocf/resource.d")
PROVIDER = "ipfailover"


def agent_names() -> list[str]:
    """The agents in agents/ (executable files): what the RPM ships and the examples use."""
    return sorted(p.name for p in AGENTS.iterdir() if p.is_file() and os.access(p, os.X_OK))


def xmllint(xml: str, *args: str) -> None:
    """Validate like ocf-tester: from the DTD's directory, so the DOCTYPE resolves too."""
    proc = subprocess.run(
        ["xmllint", "--noout", "--nonet", *args, "-"],
        input=xml,
        capture_output=True,
        text=True,
        cwd=RA_DIR if RA_DIR.is_dir() else None,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr


def metadata_parameters(xml: str) -> dict[str, dict[str, Optional[str]]]:
    """name -> {required, unique, type, default} of the meta-data's parameters, in order."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)  # noqa: S314 - our own agents' output
    result: dict[str, dict[str, Optional[str]]] = {}
    for p in root.iterfind("parameters/parameter"):
        content = p.find("content")
        result[p.get("name", "")] = {
            "required": p.get("required"),
            "unique": p.get("unique"),
            "type": content.get("type") if content is not None else None,
            "default": content.get("default") if content is not None else None,
        }
    return result


def metadata_actions(xml: str) -> list[dict[str, str]]:
    """The meta-data's <action> attributes, in order."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)  # noqa: S314 - our own agents' output
    return [dict(a.attrib) for a in root.iterfind("actions/action")]


def checkout_metadata(name: str) -> str:
    """The checkout agent's meta-data, run as Pacemaker would (clean environment)."""
    proc = subprocess.run(
        [sys.executable, str(agent(name)), "meta-data"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "lib"), "LANG": "C.UTF-8"},
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_OVERLAY = 'mount -t overlay ipfailover-tests -o "lowerdir=$0:$1" "$1" && shift && exec "$@"'


class OcfTree:
    """Extra OCF providers, seen by the conformance tools as if installed, without installing.

    Pacemaker 2.1 (crm_resource, which crm and pcs ask for meta-data) finds OCF agents only in
    its compiled-in /usr/lib/ocf/resource.d: OCF_RA_PATH is not honoured. Instead of adding
    files to the host's directory (shared with installed packages and with lab tests running at
    the same time), each command runs in private mount and network namespaces where a
    read-only overlay puts ``root`` on top of /usr/lib/ocf/resource.d. Nothing on the host
    changes, so nothing can be left behind, not even when a test is killed; and nothing run
    this way can reach any network (its namespace has only a down loopback).
    """

    def __init__(self, root: Path) -> None:
        if set(str(root)) & set(":,\\\"'"):
            raise ValueError(f"{root}: not usable as an overlayfs lowerdir")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def link_checkout_agents(self) -> None:
        """ocf:ipfailover:<agent> for every agent of the checkout, as symlinks (as the lab)."""
        provider = self.root / PROVIDER
        provider.mkdir(exist_ok=True)
        for name in agent_names():
            (provider / name).symlink_to(agent(name))

    def add_stub(self, provider: str, name: str, metadata: str) -> Path:
        """A stand-in agent that only describes itself (every other action: 3, unimplemented)."""
        if "\nEND_OF_METADATA\n" in metadata:
            raise ValueError("the meta-data contains the here-document delimiter")
        path = self.root / provider / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            "#!/bin/sh\n"
            f"# Stand-in for ocf:{provider}:{name}, which is not installed: meta-data only.\n"
            'if [ "$1" = meta-data ]; then\n'
            "cat <<'END_OF_METADATA'\n"
            f"{metadata.rstrip()}\n"
            "END_OF_METADATA\n"
            "exit 0\n"
            "fi\n"
            "exit 3\n"
        )
        path.chmod(0o755)
        return path

    def command(self, *args: str, netns: Optional[str] = None) -> list[str]:
        """``args`` in the private view; in a new, empty network namespace, or in ``netns``."""
        inner = ["ip", "netns", "exec", netns, *args] if netns else list(args)
        return [
            "unshare", "--mount", "--propagation", "private", *([] if netns else ["--net"]),
            "--", "sh", "-c", _OVERLAY, str(self.root), str(OCF_RA_DIR), *inner,
        ]  # fmt: skip

    def run(
        self,
        *args: str,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None,
        timeout: float = 120,
        netns: Optional[str] = None,
        inherit_env: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (see command); the environment is the test process's plus ``env``, or
        only ``env`` with ``inherit_env=False``."""
        full_env = dict(os.environ) if inherit_env else {}
        full_env.update(env or {})
        full_env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        full_env["LANG"] = "C.UTF-8"
        full_env["TERM"] = "dumb"  # no colours from crmsh
        return subprocess.run(
            self.command(*args, netns=netns),
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            check=False,
            timeout=timeout,
        )


def ocf_tree_unusable() -> Optional[str]:
    """Why OcfTree cannot work here (None when it can): root, unshare and overlayfs needed."""
    if os.geteuid() != 0:
        return "private mount namespaces need root"
    if not OCF_RA_DIR.is_dir():
        return f"{OCF_RA_DIR} does not exist (is pacemaker installed?)"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ocftree-") as tmp:
        probe = OcfTree(Path(tmp))
        (probe.root / "probe").mkdir()
        proc = subprocess.run(
            probe.command("test", "-d", str(OCF_RA_DIR / "probe")),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    if proc.returncode != 0:
        return f"cannot overlay {OCF_RA_DIR} in a mount namespace: {proc.stderr.strip()}"
    return None
