"""Meta-data rendered at build time (ipfailover.prebuilt): the same document, served only while
the sources it was made from are the ones installed, and cheap (nothing but os and zlib)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipfailover import prebuilt

ROOT = Path(__file__).resolve().parent.parent
AGENTS = sorted(prebuilt.AGENT_MODULES)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of agents/ and lib/ (sources only), laid out as in the repository."""
    shutil.copytree(ROOT / "agents", tmp_path / "agents")
    for package in prebuilt.SOURCE_PACKAGES:
        shutil.copytree(
            ROOT / "lib" / package,
            tmp_path / "lib" / package,
            ignore=shutil.ignore_patterns("__pycache__", "_models", "_metadata"),
        )
    return tmp_path


def generate(checkout: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ipfailover.prebuilt"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(checkout / "lib")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.split()


def meta_data(checkout: Path, agent: str) -> tuple[str, set[str]]:
    """The document an agent prints, and the modules the process imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(checkout / "agents" / agent), "meta-data"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    return proc.stdout, imported


def rendered(agent: str) -> str:
    module = __import__(prebuilt.AGENT_MODULES[agent], fromlist=["AGENT"])
    text: str = module.AGENT.metadata_xml()
    return text


def test_every_agent_has_a_launcher_and_a_module() -> None:
    assert sorted(p.name for p in (ROOT / "agents").iterdir()) == AGENTS
    for agent in AGENTS:
        assert rendered(agent).count(f'<resource-agent name="{agent}"') == 1


def test_generate_writes_each_agents_document_for_the_current_sources(tmp_path: Path) -> None:
    written = prebuilt.generate(str(tmp_path))
    checksum = prebuilt.sources_checksum()
    assert sorted(written) == sorted(str(tmp_path / f"{a}-{checksum}.xml") for a in AGENTS)
    for agent in AGENTS:
        assert prebuilt.lookup(agent, str(tmp_path)) == rendered(agent)
    # documents of other sources are removed; an unknown agent has none
    (tmp_path / "aws-eni-00000000.xml").write_text("old")
    prebuilt.generate(str(tmp_path))
    assert not (tmp_path / "aws-eni-00000000.xml").exists()
    assert prebuilt.lookup("aws-nothing", str(tmp_path)) is None


def test_the_checksum_follows_every_source_file(checkout: Path) -> None:
    lib = str(checkout / "lib")
    before = prebuilt.sources_checksum(lib)
    assert before == prebuilt.sources_checksum()  # a copy has the same sources
    for package in prebuilt.SOURCE_PACKAGES:
        source = next((checkout / "lib" / package).glob("*.py"))
        original = source.read_bytes()
        source.write_bytes(original + b"\n")
        assert prebuilt.sources_checksum(lib) != before, source
        source.write_bytes(original)
    assert prebuilt.sources_checksum(lib) == before
    (checkout / "lib" / "ipfailover" / "extra.py").write_text("")
    assert prebuilt.sources_checksum(lib) != before


@pytest.mark.parametrize("agent", AGENTS)
def test_the_launcher_prints_the_prebuilt_document_and_imports_nothing_else(
    checkout: Path, agent: str
) -> None:
    generate(checkout)
    text, imported = meta_data(checkout, agent)
    assert text == rendered(agent)
    assert "ipfailover.prebuilt" in imported
    assert not {m for m in imported if m.startswith(("ocf_shim", "ipfailover.", "xml", "logging"))
                and m != "ipfailover.prebuilt"}  # fmt: skip


@pytest.mark.parametrize("agent", AGENTS)
def test_without_a_prebuilt_document_the_launcher_renders_it(checkout: Path, agent: str) -> None:
    text, imported = meta_data(checkout, agent)
    assert text == rendered(agent)
    assert "ocf_shim.metadata" in imported


def test_a_changed_source_is_never_answered_with_the_old_document(checkout: Path) -> None:
    generate(checkout)
    module = checkout / "lib" / "ipfailover" / "overlayip_agent.py"
    text = module.read_text()
    assert text.count('"Overlay IP address') >= 1
    module.write_text(text.replace('"Overlay IP address', '"The overlay IP address', 1))
    document, imported = meta_data(checkout, "aws-overlayip")
    assert "ocf_shim.metadata" in imported
    assert "The overlay IP address" in document
    assert document != rendered("aws-overlayip")
    # the other agents' documents were made from the old sources too
    assert "ocf_shim.metadata" in meta_data(checkout, "aws-secip")[1]
