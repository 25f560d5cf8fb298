"""The packages botocore imports though no client of ours uses them (ipfailover.aws): marked
absent before botocore's import, so it falls back as it does where they are not installed;
awscrt stays importable where a profile uses ``aws login`` (``login_session``), which needs it.
Each case runs in its own interpreter: the marks are for the whole process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit import ROOT

# The venv's python, and the agents' (Debian's, whose botocore finds python3-awscrt installed).
PYTHONS = [sys.executable] + (["/usr/bin/python3"] if Path("/usr/bin/python3").exists() else [])

PROBE = """
import json, os, sys
from ipfailover.aws import skip_unused_imports
skip_unused_imports(os.environ)
import botocore.httpsession, botocore.session
from botocore.compat import HAS_CRT
names = ("awscrt", "urllib3.contrib.pyopenssl")
print(json.dumps({"blocked": [n for n in names if n in sys.modules and sys.modules[n] is None],
                  "crt": HAS_CRT}))
"""


def probe(python: str, home: Path, config: str = "") -> dict[str, object]:
    if config:
        (home / ".aws").mkdir()
        (home / ".aws" / "config").write_text(config)
    done = subprocess.run(
        [python, "-c", PROBE],
        env={"HOME": str(home), "PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("python", PYTHONS)
def test_pyopenssl_and_awscrt_are_left_out(python: str, tmp_path: Path) -> None:
    expected = {"blocked": ["awscrt", "urllib3.contrib.pyopenssl"], "crt": False}
    assert probe(python, tmp_path) == expected


@pytest.mark.parametrize("python", PYTHONS)
def test_awscrt_stays_for_a_login_session_profile(python: str, tmp_path: Path) -> None:
    config = "[profile dev]\nlogin_session = arn:aws:iam::123456789012:user/dev\n"
    assert probe(python, tmp_path, config)["blocked"] == ["urllib3.contrib.pyopenssl"]
