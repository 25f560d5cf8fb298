"""Meta-data as the launchers print it, rendered on demand from the agent's declaration: the same
bytes in every environment Pacemaker may give (LANG=C, no HOME, an ASCII stdout, a library no
byte code can be written into), and nothing imported but the declaration and the shim.

(Until issue 15 the documents were rendered at build time; rendering costs about 17 ms of CPU
over a bare Python start, under the 20 ms for which that mechanism was worth keeping.)
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENTS = sorted(p.name for p in (ROOT / "agents").iterdir())
ENVIRONMENTS = {
    "plain": {},
    "lang-c": {"LANG": "C", "LC_ALL": "C"},
    "posix-ascii-stdout": {"LC_ALL": "POSIX", "PYTHONIOENCODING": "ascii"},
    "home-missing": {"HOME": "/nonexistent/home"},
    "no-byte-code": {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/proc/nonexistent"},
}


def rendered(agent: str) -> bytes:
    module = importlib.import_module(f"ipfailover.{agent[4:]}.declaration")
    text: str = module.AGENT.metadata_xml()
    return text.encode("ascii")


def meta_data(launcher: Path, environ: dict[str, str]) -> tuple[bytes, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(launcher), "meta-data"],
        env={"PATH": "/usr/bin:/bin", **environ},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode(errors="replace").splitlines()
    return proc.stdout, {line.rsplit("|", 1)[-1].strip() for line in lines}


@pytest.fixture(scope="module")
def read_only_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """agents/ and lib/ copied without byte code, then made read-only."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "agents", root / "agents")
    for package in ("ipfailover", "ocf_shim"):
        shutil.copytree(
            ROOT / "lib" / package,
            root / "lib" / package,
            ignore=shutil.ignore_patterns("__pycache__", "_models"),
        )
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


def test_every_launcher_has_a_declaration() -> None:
    for agent in AGENTS:
        assert rendered(agent).count(f'<resource-agent name="{agent}"'.encode()) == 1


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
@pytest.mark.parametrize("agent", AGENTS)
def test_the_same_bytes_in_every_environment(
    read_only_checkout: Path, agent: str, environment: str
) -> None:
    text, imported = meta_data(read_only_checkout / "agents" / agent, ENVIRONMENTS[environment])
    assert text == rendered(agent)
    assert "ocf_shim.metadata" in imported
    assert not {m for m in imported if m.split(".")[0] in ("logging", "botocore", "pyroute2")}
