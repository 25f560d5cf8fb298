"""The metadata service is never reached through a proxy: neither by our IMDS client nor by
botocore's own credential fetch, whether the proxy comes from the environment (HTTP(S)_PROXY)
or from the ``proxy`` parameter, for the IPv4 and the IPv6 address of the service.

A process in a lab node (its metadata service at 169.254.169.254, no IPv6 route, so
[fd00:ec2::254] is unreachable at once) runs a proxy on its loopback that records every request
line it gets, then connects. The EC2 call afterwards goes through the proxy: the control that
shows the proxy is in use at all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

LIB_DIR = Path(__file__).resolve().parent.parent / "lib"


SCRIPT = r"""
import json, os, socket, sys, threading
from ipfailover.aws import instance as node
from ipfailover.aws.client import connect
from ipfailover.aws.imds import Imds
from ipfailover.config.params import AwsSettings
from ocf_shim import Deadline, OCFError

mode, endpoint = sys.argv[1], sys.argv[2]
seen = []
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
proxy = "http://127.0.0.1:%d" % server.getsockname()[1]


def serve():
    while True:
        conn, _ = server.accept()
        conn.settimeout(1)
        try:
            seen.append(conn.recv(300).split(b"\r\n")[0].decode("ascii", "replace"))
        except OSError:
            seen.append("(nothing)")
        conn.close()


threading.Thread(target=serve, daemon=True).start()
settings = AwsSettings(endpoint_url=endpoint, proxy=proxy if mode == "parameter" else None)
if mode.startswith("environment"):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = proxy
if mode == "environment-ipv6":
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6"
deadline = Deadline(10)
result = {"instance": node.instance_id(Imds(deadline))}
try:
    api = connect(settings, "eu-central-1", deadline, "test")
except OCFError as exc:
    result["connect"] = [exc.rc, exc.reason]
else:
    before = len(seen)
    api.deadline = Deadline(1.0)  # one attempt is enough to see where it goes
    try:
        api.call("DescribeVpcs")
    except OCFError as exc:
        pass
    result["proxied"] = len(seen) > before
result["seen"] = seen
print(json.dumps(result))
"""

PYTHONS = [sys.executable] + (["/usr/bin/python3"] if os.path.exists("/usr/bin/python3") else [])


@pytest.mark.parametrize("python", PYTHONS, ids=["venv", "system"][: len(PYTHONS)])
@pytest.mark.parametrize("mode", ["environment", "parameter", "environment-ipv6"])
def test_the_metadata_service_is_never_proxied(lab: Any, python: str, mode: str) -> None:
    env = lab.clean_env({"PYTHONPATH": str(LIB_DIR)})
    done = lab.run_process("a", [python, "-c", SCRIPT, mode, lab.endpoint_url], env=env)
    assert done.rc == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["instance"].startswith("i-")
    imds = [line for line in result["seen"] if "169.254.169.254" in line or "fd00:ec2" in line]
    assert not imds, f"the metadata service was asked through the proxy: {imds}"
    if mode == "environment-ipv6":
        # botocore's fetch went to [fd00:ec2::254] directly: unreachable here, so no credentials.
        assert result["connect"][0] == 1 and "credentials" in result["connect"][1]
    else:
        assert "connect" not in result, result  # credentials from the metadata service, directly
        assert result["proxied"], f"the EC2 call did not use the proxy: {result['seen']}"
