"""The RPM, built once per session by the code `make rpm` runs, and what it installs; the agents'
meta-data as Pacemaker's tools read it.

- the RPM: its source tarball, file list, modes, dependencies, scriptlets, rpmlint;
- installed into a scratch root (``rpm --root``): the agents' meta-data and validate-all from
  there, under the venv's python and Debian's /usr/bin/python3, and the man pages rendered;
- the checkout's agents: meta-data valid against ra-api-1.dtd, resource-agents' metadata.rng and
  the OCF 1.1 RelaxNG; every parameter shown by ``crm ra info`` and ``pcs resource describe``;
  ``crm_resource --validate`` exits with the agent's code.

Agent processes run in a network namespace of their own (``unshare --net``): a syntax check
that wrongly reached for the instance metadata or the EC2 API would fail instead of leaving the
machine.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentkit import (
    OCF_11_RNG,
    PROVIDER,
    PYTHONS,
    RA_API_DTD,
    RA_DIR,
    RESOURCE_AGENTS_RNG,
    ROOT,
    OcfTree,
    agent_names,
    checkout_metadata,
    metadata_actions,
    metadata_parameters,
    node_addresses,
    xmllint,
)

NAME = "ipfailover-agents"
SPEC = ROOT / "packaging" / f"{NAME}.spec"
RPMLINTRC = ROOT / "packaging" / f"{NAME}.rpmlintrc"
OCF_DIR = f"/usr/lib/ocf/resource.d/{PROVIDER}"
DOCDIR = f"/usr/share/doc/{NAME}"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def bad_value(tmp: Path) -> str:
    """A value no parameter accepts: spaces, shell metacharacters, command substitutions that
    would create ``tmp/pwned`` if anything ever handed it to a shell."""
    return f"x y;$(touch {tmp}/pwned)`touch {tmp}/pwned`|&<>"


AGENTS = agent_names()
# aws-health has no required parameter: its bad-syntax case is a value of one it has.
BAD_SYNTAX_WITHOUT_REQUIRED = {"aws-health": "lead_time"}


def required_parameters(name: str) -> list[str]:
    params = metadata_parameters(checkout_metadata(name))
    return [p for p, a in params.items() if a["required"] == "1"]


def bad_syntax_parameters(name: str) -> list[str]:
    """The parameters a bad-syntax case sets: the required ones, or the agent's chosen one."""
    return required_parameters(name) or [BAD_SYNTAX_WITHOUT_REQUIRED[name]]


# The agents with a required parameter (the "missing" cases have nothing to leave out otherwise).
AGENTS_REQUIRING = [name for name in AGENTS if required_parameters(name)]
# The agents that move an address (lab_case); aws-health's actions need a cluster
# (tests/test_health_cluster.py runs them through crm_resource there).
IP_AGENTS = [name for name in AGENTS if name != "aws-health"]


def _missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


needs_rpm = pytest.mark.skipif(
    bool(_missing("rpmbuild", "rpm", "rpmlint", "git", "make")),
    reason=f"missing: {', '.join(_missing('rpmbuild', 'rpm', 'rpmlint', 'git', 'make'))}",
)


def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 300)
    return subprocess.run(args, capture_output=True, text=True, check=False, **kw)


def offline(args: list[str]) -> list[str]:
    """Run without any network: a new network namespace has only a loopback that is down."""
    return ["unshare", "--net", "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class Build:
    topdir: Path
    rpm: Path
    srpm: Path
    tarball: Path
    rpmlint: str


@dataclass(frozen=True)
class Installed:
    root: Path
    sitelib: Path  # as on the target system, e.g. /usr/lib/python3/dist-packages

    def path(self, target: str | Path) -> Path:
        return self.root / str(target).lstrip("/")


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """`make rpm` into a temporary TOPDIR: the tarball, rpmbuild -ba and rpmlint, once."""
    if _missing("rpmbuild", "rpm", "rpmlint", "git", "make"):
        pytest.skip("rpm tooling missing")
    topdir = tmp_path_factory.mktemp("rpmbuild")
    proc = run(["make", "-s", "-C", str(ROOT), "rpm", f"RPM_TOPDIR={topdir}"], timeout=600)
    assert proc.returncode == 0, f"make rpm failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    rpms = list((topdir / "RPMS" / "noarch").glob(f"{NAME}-*.noarch.rpm"))
    srpms = list((topdir / "SRPMS").glob(f"{NAME}-*.src.rpm"))
    tarballs = list((topdir / "SOURCES").glob(f"{NAME}-*.tar.gz"))
    assert len(rpms) == len(srpms) == len(tarballs) == 1, (rpms, srpms, tarballs)
    return Build(topdir, rpms[0], srpms[0], tarballs[0], (topdir / "rpmlint.txt").read_text())


@pytest.fixture(scope="session")
def installed(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The RPM installed into a scratch root, scriptlets included (it has none)."""
    root = tmp_path_factory.mktemp("scratch-root")
    proc = run(["rpm", "--root", str(root), "--nodeps", "-i", str(build.rpm)])
    assert proc.returncode == 0, proc.stderr
    inits = [f for f in rpm_files(build.rpm) if f.endswith("/ipfailover/__init__.py")]
    assert len(inits) == 1, inits
    return Installed(root, Path(inits[0]).parent.parent)


def rpm_query(package: Path, *args: str) -> str:
    proc = run(["rpm", "-qp", *args, str(package)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def rpm_files(package: Path) -> list[str]:
    return rpm_query(package, "-l").splitlines()


def rpm_file_info(package: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (permissions as ls shows them, owner, group)."""
    out = rpm_query(
        package,
        "--queryformat",
        "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]",
    )
    info = {}
    for line in out.splitlines():
        perms, user, group, path = line.split(" ", 3)
        info[path] = (perms, user, group)
    return info


def tarball_members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def spec_version() -> str:
    match = re.search(r"^Version:\s*(\S+)$", SPEC.read_text(), re.MULTILINE)
    assert match
    return match.group(1)


# -- The build ---------------------------------------------------------------------------------


def test_spec_version_is_the_python_package_version() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert spec_version() == cfg["metadata"]["version"]


@needs_rpm
def test_tarball_is_the_working_tree(build: Build) -> None:
    """Tracked and untracked-but-not-ignored files, under one prefix; nothing git ignores."""
    prefix = f"{NAME}-{spec_version()}/"
    members = tarball_members(build.tarball)
    assert members and all(m.startswith(prefix) for m in members)
    names = {m.removeprefix(prefix) for m in members}
    for must in ("LICENSE", "README.md", "setup.cfg", f"packaging/{NAME}.spec",
                 "packaging/metadata2man.py", *(f"agents/{a}" for a in AGENTS)):  # fmt: skip
        assert must in names
    listed = run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout.splitlines()
    # Others may add or delete files while this session runs: compare with what existed then.
    built_at = build.tarball.stat().st_mtime
    existed = {p for p in listed if (ROOT / p).exists() and (ROOT / p).stat().st_mtime < built_at}
    assert existed - names == set()
    assert {n for n in names if (ROOT / n).exists()} - set(listed) == set()  # nothing ignored
    for name in names:
        assert "__pycache__" not in name
        assert not name.startswith((".venv/", "rpmbuild/", ".git/", ".mypy_cache/"))


@needs_rpm
def test_file_list(build: Build) -> None:
    files = set(rpm_files(build.rpm))
    tar_prefix = f"{NAME}-{spec_version()}/"
    sources = [m.removeprefix(tar_prefix) for m in tarball_members(build.tarball)]
    shipped_agents = sorted(s.removeprefix("agents/") for s in sources if s.startswith("agents/"))
    assert shipped_agents == AGENTS  # every agent of the checkout, by the spec's glob

    # The provider directory, and the OCF directories above it, are owned by the package.
    assert {"/usr/lib/ocf", "/usr/lib/ocf/resource.d", OCF_DIR} <= files
    for agent in shipped_agents:
        assert f"{OCF_DIR}/{agent}" in files
        assert f"/usr/share/man/man7/ocf_{PROVIDER}_{agent}.7.gz" in files

    inits = [f for f in files if f.endswith("/ipfailover/__init__.py")]
    assert len(inits) == 1
    sitelib = inits[0].removesuffix("/ipfailover/__init__.py")
    assert re.fullmatch(r"/usr/lib/python3[.0-9]*/(site|dist)-packages", sitelib), sitelib
    modules = [s for s in sources if re.fullmatch(r"lib/(ipfailover|ocf_shim)/[^/]+", s)]
    assert "lib/ocf_shim/py.typed" in modules
    for module in modules:
        target = f"{sitelib}/{module.removeprefix('lib/')}"
        assert target in files
        if target.endswith(".py"):  # byte-compiled at build time
            package, stem = target.rsplit("/", 1)
            cached = [f for f in files if f.startswith(f"{package}/__pycache__/{stem[:-3]}.")]
            assert any(f.endswith(".pyc") for f in cached), target

    assert f"/usr/share/licenses/{NAME}/LICENSE" in files
    assert f"{DOCDIR}/README.md" in files
    for folder in ("crm-examples", "policies"):
        for source in sources:
            if source.startswith(f"{folder}/"):
                assert f"{DOCDIR}/{source}" in files

    # Nothing else: no tests, no lab, no build leftovers.
    allowed = re.compile(
        rf"^(/usr/lib/ocf(/resource\.d(/{PROVIDER}(/[^/]+)?)?)?"
        rf"|{re.escape(sitelib)}/(ipfailover|ocf_shim)(/.*)?"
        rf"|/usr/share/man/man7/ocf_{PROVIDER}_[^/]+\.7\.gz"
        rf"|/usr/share/licenses/{NAME}(/LICENSE)?"
        rf"|{DOCDIR}(/README\.md|/crm-examples(/[^/]+)?|/policies(/[^/]+)?)?)$"
    )
    assert sorted(f for f in files if not allowed.match(f)) == []


@needs_rpm
def test_modes_and_owners(build: Build) -> None:
    info = rpm_file_info(build.rpm)
    for path, (perms, user, group) in info.items():
        assert (user, group) == ("root", "root"), path
        if path.startswith(f"{OCF_DIR}/"):
            assert perms == "-rwxr-xr-x", path
        elif perms.startswith("d"):
            assert perms == "drwxr-xr-x", path
        else:
            assert perms == "-rw-r--r--", path
    assert info[OCF_DIR][0] == "drwxr-xr-x"


@needs_rpm
def test_agents_use_the_system_python(build: Build, installed: Installed) -> None:
    for agent in AGENTS:
        first = installed.path(f"{OCF_DIR}/{agent}").read_text().splitlines()[0]
        assert first == "#!/usr/bin/python3"


@needs_rpm
def test_noarch_dependencies_and_no_scriptlets(build: Build) -> None:
    assert rpm_query(build.rpm, "--queryformat", "%{ARCH}") == "noarch"
    requires = {" ".join(line.split()) for line in rpm_query(build.rpm, "-R").splitlines()}
    assert {"python3-boto3", "python3-pyroute2 >= 0.7.2", "python(abi) >= 3.9"} <= requires
    assert "/usr/bin/python3" in requires  # from the agents' shebang
    assert not any(r.startswith("resource-agents") for r in requires)
    # No %pre/%post/%preun/%postun/triggers: installing changes nothing but our own files.
    assert rpm_query(build.rpm, "--scripts").strip() == ""
    assert rpm_query(build.rpm, "--triggers").strip() == ""
    assert rpm_query(build.rpm, "--queryformat", "%{LICENSE}") == "GPL-2.0-or-later"


# -- Each distribution's flavour: the spec rendered with its macros ---------------------------


@dataclass(frozen=True)
class Flavour:
    """What a distribution's build of the spec must ask for."""

    python: str  # the agents' interpreter (their first line)
    sitelib: str  # where the Python packages go
    requires: frozenset[str]
    recommends: frozenset[str] = frozenset()


DEFAULT = frozenset({"python(abi) >= 3.9", "python3-boto3", "python3-pyroute2 >= 0.7.2"})
PYTHON311 = Flavour(
    "/usr/bin/python3.11",
    "/usr/lib/python3.11/site-packages",
    frozenset({"python311", "python(abi) = 3.11", "python311-boto3"}),
    frozenset({"python311-pyroute2 >= 0.7.2"}),
)


def _python_macros(version: str) -> dict[str, str]:
    """What the distribution's Python RPM macros define (SUSE's and Red Hat's alike)."""
    return {
        "__python3": "/usr/bin/python3",
        "python3_pkgversion": "3",
        "python3_sitelib": f"/usr/lib/python{version}/site-packages",
    }


# (the distribution's macros, what its build asks for). SLES 15's own macros point at its
# python3, 3.6: the spec must override them.
DISTRIBUTIONS: dict[str, tuple[dict[str, str], Flavour]] = {
    "rhel9": (
        {"rhel": "9", "dist": ".el9", **_python_macros("3.9")},
        Flavour("/usr/bin/python3", "/usr/lib/python3.9/site-packages", DEFAULT),
    ),
    "rhel10": (
        {"rhel": "10", "dist": ".el10", **_python_macros("3.12")},
        Flavour("/usr/bin/python3", "/usr/lib/python3.12/site-packages", DEFAULT),
    ),
    "fedora": (
        {"fedora": "42", "dist": ".fc42", **_python_macros("3.13")},
        Flavour("/usr/bin/python3", "/usr/lib/python3.13/site-packages", DEFAULT),
    ),
    "sles15sp5": (
        {"suse_version": "1500", "sle_version": "150500", **_python_macros("3.6")},
        PYTHON311,
    ),
    "sles15sp7": (
        {"suse_version": "1500", "sle_version": "150700", **_python_macros("3.6")},
        PYTHON311,
    ),
    "leap15.6": (
        {
            "suse_version": "1500",
            "sle_version": "150600",
            "is_opensuse": "1",
            **_python_macros("3.6"),
        },
        PYTHON311,
    ),
    "sles16": (
        {"suse_version": "1600", "sle_version": "160000", **_python_macros("3.13")},
        Flavour("/usr/bin/python3", "/usr/lib/python3.13/site-packages", DEFAULT),
    ),
    "tumbleweed": (
        {"suse_version": "1699", "is_opensuse": "1", **_python_macros("3.13")},
        Flavour("/usr/bin/python3", "/usr/lib/python3.13/site-packages", DEFAULT),
    ),
}


def rpmspec(macros: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    defines = [arg for k, v in macros.items() for arg in ("--define", f"{k} {v}")]
    return run(["rpmspec", *defines, *args, str(SPEC)], timeout=60)


def _deps(macros: dict[str, str], tag: str) -> set[str]:
    proc = rpmspec(macros, "-q", "--queryformat", f"[%{{{tag}NEVRS}}\n]")
    assert proc.returncode == 0, proc.stderr
    return {" ".join(line.split()) for line in proc.stdout.splitlines() if line.strip()}


@pytest.mark.skipif(bool(_missing("rpmspec")), reason="rpmspec is missing")
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_each_distribution_gets_its_python_and_packages(distribution: str) -> None:
    macros, flavour = DISTRIBUTIONS[distribution]
    assert _deps(macros, "REQUIRE") == flavour.requires
    assert _deps(macros, "RECOMMEND") == flavour.recommends
    proc = rpmspec(macros, "-P")
    assert proc.returncode == 0, proc.stderr
    rendered = proc.stdout
    # The agents' first line is rewritten to the flavour's interpreter, which also builds them.
    assert f"sed -i '1s|^#!.*$|#!{flavour.python}|'" in rendered
    assert f"{flavour.python} packaging/metadata2man.py" in rendered
    assert re.search(rf"^install -d -m 0755 \S*{re.escape(flavour.sitelib)}$", rendered, re.M)
    assert f"BuildRequires:  python{'311' if flavour is PYTHON311 else '3'}-botocore" in rendered


@pytest.mark.skipif(bool(_missing("rpmspec")), reason="rpmspec is missing")
@pytest.mark.parametrize("sle_version", ["150400", "150300"])
def test_sles_15_before_sp5_is_refused_at_build_time(sle_version: str) -> None:
    """SP4 and older (and Leap 15.4 and older): their python3 is 3.6, the python311 stack is
    the SP5 one; no package that installs but cannot run."""
    proc = rpmspec(
        {"suse_version": "1500", "sle_version": sle_version, **_python_macros("3.6")}, "-P"
    )
    assert proc.returncode != 0
    assert "SLES 15 SP4" in proc.stderr


@needs_rpm
def test_rpmlint_reports_no_errors(build: Build) -> None:
    summary = re.search(r"(\d+) errors, (\d+) warnings", build.rpmlint)
    assert summary, build.rpmlint
    assert summary.group(1) == "0", build.rpmlint
    assert not re.search(r": E: ", build.rpmlint), build.rpmlint


def _rpmlintrc_filters() -> list[str]:
    return re.findall(r'^addFilter\(r"(.*)"\)$', RPMLINTRC.read_text(), re.MULTILINE)


@needs_rpm
def test_every_rpmlint_filter_is_explained_and_needed(build: Build) -> None:
    """Each filter has a comment and hides a finding rpmlint really makes: no stale filters."""
    text = RPMLINTRC.read_text().splitlines()
    filters = [i for i, line in enumerate(text) if line.startswith("addFilter(")]
    assert filters
    for i in filters:
        assert text[i - 1].startswith("# "), f"no comment above: {text[i]}"
    proc = run(
        ["rpmlint", str(SPEC), str(build.srpm), str(build.rpm)],
        env={**os.environ, "LANG": "C.UTF-8"},
        timeout=300,
    )
    unfiltered = proc.stdout.splitlines()
    for pattern in _rpmlintrc_filters():
        regex = re.compile(pattern)
        assert any(regex.search(line) for line in unfiltered), f"unused filter {pattern}"


# -- The installed package ---------------------------------------------------------------------


def installed_env(installed: Installed, tmp: Path) -> dict[str, str]:
    return {
        "PATH": CLEAN_PATH,
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "OCF_ROOT": "/usr/lib/ocf",
        "PYTHONPATH": str(installed.path(installed.sitelib)),
    }


@needs_rpm
@pytest.mark.parametrize("python", PYTHONS)
def test_installed_packages_are_the_ones_imported(
    installed: Installed, python: str, tmp_path: Path
) -> None:
    proc = run(
        [
            python,
            "-c",
            "import ipfailover, ocf_shim; print(ipfailover.__file__, ocf_shim.__file__)",
        ],
        env=installed_env(installed, tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for path in proc.stdout.split():
        assert Path(path).is_relative_to(installed.root), path


@needs_rpm
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("name", AGENTS)
def test_installed_agent_meta_data(
    installed: Installed, name: str, python: str, tmp_path: Path
) -> None:
    proc = run(
        offline(
            [python, "-X", "importtime", str(installed.path(f"{OCF_DIR}/{name}")), "meta-data"]
        ),
        env=installed_env(installed, tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == checkout_metadata(name)
    assert f'<resource-agent name="{name}"' in proc.stdout
    # Rendered on demand from the declaration alone: no client, no logging.
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "ocf_shim.metadata" in imported
    assert not {m for m in imported if m.startswith(("logging", "botocore", "pyroute2"))}


def _validate_all(
    installed: Installed, name: str, python: str, tmp: Path, params: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = installed_env(installed, tmp)
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    env["OCF_RESKEY_CRM_meta_timeout"] = "20000"
    return run(
        offline([python, str(installed.path(f"{OCF_DIR}/{name}")), "validate-all"]),
        env=env,
        cwd=tmp,
        timeout=60,
    )


def _exit_reason(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines, "no exit reason"
    assert lines[-1].startswith("ocf-exit-reason:"), stderr
    return lines[-1].removeprefix("ocf-exit-reason:")


@needs_rpm
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("name", AGENTS_REQUIRING)
def test_installed_validate_all_without_required_parameters(
    installed: Installed, name: str, python: str, tmp_path: Path
) -> None:
    required = required_parameters(name)
    assert required
    proc = _validate_all(installed, name, python, tmp_path, {})
    assert proc.returncode == 6, proc.stderr  # OCF_ERR_CONFIGURED
    reason = _exit_reason(proc.stderr)
    assert any(p in reason for p in required), reason
    assert "Traceback" not in proc.stderr


@needs_rpm
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("name", AGENTS)
def test_installed_validate_all_with_bad_syntax(
    installed: Installed, name: str, python: str, tmp_path: Path
) -> None:
    required = bad_syntax_parameters(name)
    params = dict.fromkeys(required, bad_value(tmp_path))
    proc = _validate_all(installed, name, python, tmp_path, params)
    assert proc.returncode == 6, proc.stderr
    reason = _exit_reason(proc.stderr)
    assert any(p in reason for p in required), reason
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned").exists()


def render_man(page: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return run(
        ["man", "--warnings", "-l", str(page)],
        env={
            "PATH": CLEAN_PATH,
            "HOME": str(tmp),
            "LANG": "C.UTF-8",
            "MANWIDTH": "80",
            "MANPAGER": "cat",
            "PAGER": "cat",
        },
        cwd=tmp,
    )


@needs_rpm
@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
@pytest.mark.parametrize("name", AGENTS)
def test_man_page_renders(installed: Installed, name: str, tmp_path: Path) -> None:
    page = installed.path(f"/usr/share/man/man7/ocf_{PROVIDER}_{name}.7.gz")
    proc = render_man(page, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # groff warnings included (--warnings)
    text = proc.stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"OCF_{PROVIDER.upper()}_{name.upper()}(7)")
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    headings = [line for line in lines if re.fullmatch(r"[A-Z][A-Z ]+", line)]
    assert headings[:4] == ["NAME", "SYNOPSIS", "DESCRIPTION", "SUPPORTED PARAMETERS"]
    assert "SUPPORTED ACTIONS" in headings
    name_line = lines[lines.index("NAME") + 1].strip()
    assert name_line.startswith(f"ocf_{PROVIDER}_{name} - ")
    params = metadata_parameters(checkout_metadata(name))
    for param, attrs in params.items():
        heading = re.compile(rf"^\s+{param} \((?:\w+, )*(?:string|integer|boolean)\b")
        entry = [line.strip() for line in lines if heading.match(line)]
        assert len(entry) == 1, param
        assert ("required" in entry[0]) == (attrs["required"] == "1"), entry
        if attrs["default"]:
            assert f"Default: {attrs['default']}" in text, param


# -- The man page generator on hostile input --------------------------------------------------


def _metadata2man() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "metadata2man", ROOT / "packaging" / "metadata2man.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


HOSTILE_METADATA = """<?xml version="1.0"?>
<resource-agent name="hostile" version="1">
  <version>1.1</version>
  <longdesc lang="en">.TH INJECTED 1
'br request at the start of a line
\\fBnot bold\\fR and a backslash \\ and -minus and &lt;tag&gt; and \u00e9\u4e2d\U0001f600

second paragraph</longdesc>
  <shortdesc lang="en">.SH also not a heading</shortdesc>
  <parameters>
    <parameter name="p" unique="0" required="1">
      <longdesc lang="en">.B not bold either</longdesc>
      <shortdesc lang="en">P</shortdesc>
      <content type="string" default="\\n(.l"/>
    </parameter>
  </parameters>
  <actions><action name="start" timeout="20s"/></actions>
</resource-agent>
"""


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_generator_prints_hostile_text_literally(tmp_path: Path) -> None:
    m2m = _metadata2man()
    page = m2m.render(m2m.parse(HOSTILE_METADATA), version="1", date="2000-01-01", docdir="/d")
    assert page.isascii()
    out = run(["groff", "-man", "-Tutf8", "-ww"], input=page, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    text = re.sub(".\b", "", out.stdout)  # overstrike (bold/underline) to plain text
    flat = " ".join(text.split())
    assert ".TH INJECTED 1 'br request at the start of a line" in flat
    assert "\\fBnot bold\\fR and a backslash \\ and -minus and <tag> and \u00e9\u4e2d" in flat
    assert "hostile - .SH also not a heading" in flat
    assert ".B not bold either" in flat
    assert "Default: \\n(.l" in flat
    assert "INJECTED" not in text.splitlines()[0]


def test_generator_rejects_what_is_not_meta_data(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<html><body/></html>")
    proc = run([str(ROOT / "packaging" / "metadata2man.py"), "--version", "1", str(bad)])
    assert proc.returncode == 1
    assert "not OCF meta-data" in proc.stderr
    assert proc.stdout == ""


# -- Meta-data as Pacemaker's tools see it (the checkout's agents) -----------------------------


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint is missing")
@pytest.mark.parametrize("name", AGENTS)
def test_metadata_is_valid_against_all_three_schemas(name: str) -> None:
    xml = checkout_metadata(name)
    xmllint(xml, "--relaxng", str(OCF_11_RNG))
    if not RA_DIR.is_dir():
        pytest.skip("resource-agents is not installed: DTD and metadata.rng not checked")
    xmllint(xml, "--dtdvalid", str(RA_API_DTD))
    xmllint(xml, "--valid")  # the way ocf-tester checks: the DOCTYPE is followed
    xmllint(xml, "--relaxng", str(RESOURCE_AGENTS_RNG))


@pytest.mark.skipif(shutil.which("crm") is None, reason="crmsh is not installed")
@pytest.mark.parametrize("name", AGENTS)
def test_crm_ra_info_lists_every_parameter(ocf_tree: OcfTree, name: str) -> None:
    proc = ocf_tree.run("crm", "ra", "info", f"ocf:{PROVIDER}:{name}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr
    # "name* (type, [default]): shortdesc" for each parameter; * marks the required ones
    shown = re.findall(r"^(\w+)(\*?) \((?:string|integer|boolean)\b", proc.stdout, re.MULTILINE)
    params = metadata_parameters(checkout_metadata(name))
    assert [p for p, _ in shown] == list(params)
    assert {p for p, star in shown if star} == {
        p for p, a in params.items() if a["required"] == "1"
    }


@pytest.mark.skipif(shutil.which("pcs") is None, reason="pcs is not installed")
@pytest.mark.parametrize("name", AGENTS)
def test_pcs_resource_describe_lists_every_parameter(ocf_tree: OcfTree, name: str) -> None:
    proc = ocf_tree.run("pcs", "resource", "describe", f"ocf:{PROVIDER}:{name}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    options, _, operations = proc.stdout.partition("\nDefault operations:\n")
    assert "\nResource options:\n" in options, proc.stdout
    shown = re.findall(r"^  (\w+)( \(required[^)]*\))?:", options, re.MULTILINE)
    xml = checkout_metadata(name)
    params = metadata_parameters(xml)
    assert [p for p, _ in shown] == list(params)
    assert {p for p, req in shown if req} == {p for p, a in params.items() if a["required"] == "1"}
    # The operations pcs adds by default are the agent's recommendations.
    # (A monitor action per check level: each is one block of its own.)
    for action in metadata_actions(xml):
        if action["name"] in ("start", "stop", "monitor"):
            blocks = re.findall(
                rf"^  {action['name']}:\n((?:    .*\n?)+)", operations, re.MULTILINE
            )
            assert blocks, operations
            assert any(f"timeout={action['timeout']}" in block.split() for block in blocks), blocks


def _agent_rc(name: str, params: dict[str, str], tmp: Path) -> int:
    env = {"PATH": CLEAN_PATH, "HOME": str(tmp), "LANG": "C.UTF-8", "OCF_ROOT": "/usr/lib/ocf"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    proc = run(offline([str(ROOT / "agents" / name), "validate-all"]), env=env, cwd=tmp)
    return proc.returncode


@pytest.mark.skipif(shutil.which("crm_resource") is None, reason="pacemaker-cli is missing")
@pytest.mark.parametrize(
    ("name", "case"),
    [(name, "missing") for name in AGENTS_REQUIRING] + [(name, "bad-syntax") for name in AGENTS],
)
def test_crm_resource_validate_exits_with_the_agents_code(
    ocf_tree: OcfTree, name: str, case: str, tmp_path: Path
) -> None:
    """crm_resource maps an OCF result 0-7 to the crm_exit_t of the same number (CRM_EX_OK,
    CRM_EX_ERROR, ..., CRM_EX_NOT_CONFIGURED = 6): its exit code is the agent's."""
    required = bad_syntax_parameters(name)
    params = {} if case == "missing" else dict.fromkeys(required, bad_value(tmp_path))
    expected = _agent_rc(name, params, tmp_path)
    assert expected == 6
    options = [arg for k, v in params.items() for arg in ("--option", f"{k}={v}")]
    proc = ocf_tree.run(
        "crm_resource", "--validate", "--output-as=xml", "--class", "ocf",
        "--provider", PROVIDER, "--agent", name, *options,
    )  # fmt: skip
    assert proc.returncode == expected, proc.stdout + proc.stderr
    status = re.search(r'<agent-status code="(\d+)"[^>]*reason="([^"]*)"', proc.stdout)
    assert status, proc.stdout
    assert int(status.group(1)) == expected
    assert any(p in status.group(2) for p in required), status.group(2)


# -- crm_resource --force-* against each agent in the lab -------------------------------------

LAB_OVERLAY_IP = "192.168.100.10"
LAB_SECONDARY_IP = "10.0.1.50"  # in subnet "a", where both lab nodes are


@dataclass
class LabCase:
    params: dict[str, str]
    started: Callable[[], bool]  # read from the simulated EC2 and the node, not from the agent


def lab_case(lab: Any, name: str) -> LabCase:
    node = lab.nodes["a"]
    if name == "aws-overlayip":
        table = lab.route_tables[0]

        def routed() -> bool:
            (rt,) = lab.ec2().describe_route_tables(RouteTableIds=[table])["RouteTables"]
            return any(
                r.get("DestinationCidrBlock") == f"{LAB_OVERLAY_IP}/32"
                and r.get("NetworkInterfaceId") == node.eni_id
                for r in rt["Routes"]
            ) and any(a.startswith(f"{LAB_OVERLAY_IP}/") for a in node_addresses(lab, "a"))

        params = {"ip": LAB_OVERLAY_IP, "routing_table": table, "source_dest_check": "disable"}
        return LabCase({**params, "endpoint_url": lab.endpoint_url}, routed)
    if name == "aws-secip":

        def assigned() -> bool:
            eni = lab.eni(node.eni_id)
            return any(
                p["PrivateIpAddress"] == LAB_SECONDARY_IP for p in eni["PrivateIpAddresses"]
            ) and any(a.startswith(f"{LAB_SECONDARY_IP}/") for a in node_addresses(lab, "a"))

        return LabCase({"ip": LAB_SECONDARY_IP, "endpoint_url": lab.endpoint_url}, assigned)
    if name == "aws-eni":
        eni = lab.create_eni(subnet="c")

        def attached() -> bool:
            attachment = lab.eni(eni.id).get("Attachment") or {}
            return attachment.get("InstanceId") == node.instance_id and any(
                link.get("address") == eni.mac for link in lab.ip_json("a", "link", "show")
            )

        return LabCase({"eni_id": eni.id, "endpoint_url": lab.endpoint_url}, attached)
    pytest.fail(f"no lab parameters for {name}: add them to lab_case()")


@pytest.mark.skipif(shutil.which("crm_resource") is None, reason="pacemaker-cli is missing")
@pytest.mark.parametrize("name", IP_AGENTS)
def test_crm_resource_force_actions_in_the_lab(
    lab: Any, ocf_tree: OcfTree, name: str, tmp_path: Path
) -> None:
    """crm_resource runs the agent as the cluster would (its shebang, Debian's python3), in
    node a: validate, probe, start, check, stop, probe. (Starting and stopping twice is in each
    agent's own ocf-tester sequence.)"""
    case = lab_case(lab, name)
    options = [arg for k, v in case.params.items() for arg in ("--option", f"{k}={v}")]
    rsctmp = tmp_path / "rsctmp"
    rsctmp.mkdir()
    env = lab.clean_env({"HA_RSCTMP": str(rsctmp), "OCF_ROOT": "/usr/lib/ocf"})

    def crm_resource(action: str) -> tuple[str, int, bool]:
        proc = ocf_tree.run(
            "crm_resource", action, "--class", "ocf", "--provider", PROVIDER, "--agent", name,
            "--timeout", "60000", *options,
            env=env, inherit_env=False, netns=lab.netns("a"), timeout=90,
        )  # fmt: skip
        log.append(f"$ crm_resource {action} -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return action, proc.returncode, case.started()

    log: list[str] = []
    got = [
        crm_resource(action)
        for action in (
            "--validate", "--force-check", "--force-start", "--force-check", "--force-stop",
            "--force-check",
        )
    ]  # fmt: skip
    assert got == [
        ("--validate", 0, False),
        ("--force-check", 7, False),
        ("--force-start", 0, True),
        ("--force-check", 0, True),
        ("--force-stop", 0, False),
        ("--force-check", 7, False),
    ], "\n".join(log)
