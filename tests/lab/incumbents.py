"""The incumbents: Debian's resource-agents AWS agents, wired into the lab for the benchmark.

``aws-vpc-move-ip`` (overlay IP by route tables), ``awsvip`` (secondary private IP) and
``awseip`` (Elastic IP) are /bin/sh scripts in /usr/lib/ocf/resource.d/heartbeat/. They call
the AWS CLI (their ``awscli`` parameter, default /usr/bin/aws) with ``--profile <profile>`` and
curl IMDSv2 at 169.254.169.254, which the lab serves inside every node namespace.

How they reach the simulated EC2 API without touching the host (`install_cli`):

- Debian's awscli is 2.9: it reads no endpoint from its config file (``endpoint_url`` there came
  with 2.13) nor from ``AWS_ENDPOINT_URL``. The only honest route is the command line, so the
  lab writes a wrapper ``<workdir>/aws-cli/aws`` that execs ``/usr/bin/aws --endpoint-url <lab
  endpoint> "$@"``, and the agents are given it through their ``awscli`` parameter.
- The wrapper sets ``AWS_CONFIG_FILE`` to ``<workdir>/aws-cli/config``: a ``[default]`` profile
  with the region, JSON output and no pager, which is what ``aws configure`` leaves on a real
  node. The agents pass ``--profile default``, and the CLI refuses a named profile that does not
  exist; awsvip and awseip have no region parameter and take it from there, aws-vpc-move-ip
  passes its ``region`` parameter as ``--region``.
- ``AWS_SHARED_CREDENTIALS_FILE`` names a file that does not exist: the CLI finds no keys and
  takes the instance role's credentials from the node's IMDS, as our agents do.
- The wrapper appends one line per CLI process to ``<workdir>/aws-cli/invocations`` (its
  arguments), so the bench can count AWS CLI processes per action. That and the extra ``exec``
  cost about a millisecond per CLI call (a CLI call costs ~0.6 s).

Nothing of the host is used but /usr/bin/aws, curl, ip and /bin/sh; HOME is the lab's.

Setup the incumbents need that users do by hand: aws-vpc-move-ip only replaces routes
(``ReplaceRoute`` fails on a missing route), so the route must exist before the first start
(`create_routes`, with the same CLI).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .harness import AgentResult, Lab

HEARTBEAT_DIR = Path("/usr/lib/ocf/resource.d/heartbeat")
AWS_CLI = Path("/usr/bin/aws")
SHELL = "/bin/sh"
MOVE_IP = "aws-vpc-move-ip"
AWSVIP = "awsvip"
AWSEIP = "awseip"
INCUMBENTS = (MOVE_IP, AWSVIP, AWSEIP)
# The start/stop timeouts the incumbents advertise in their meta-data.
TIMEOUT_MS = {MOVE_IP: 180_000, AWSVIP: 30_000, AWSEIP: 30_000}


def agent_path(name: str) -> Path:
    return HEARTBEAT_DIR / name


def missing() -> str | None:
    """Why the incumbents cannot run on this machine, or None when they can."""
    needs = [AWS_CLI, Path("/usr/bin/curl"), Path(SHELL)]
    needs += [agent_path(name) for name in INCUMBENTS]
    absent = [str(path) for path in needs if not path.exists()]
    if absent:
        return "missing " + ", ".join(absent) + " (Debian packages awscli, curl, resource-agents)"
    return None


@dataclass(frozen=True)
class AwsCli:
    """The AWS CLI wrapper of one lab (see the module docstring)."""

    directory: Path
    endpoint_url: str
    region: str

    @property
    def wrapper(self) -> Path:
        return self.directory / "aws"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def log(self) -> Path:
        return self.directory / "invocations"

    def reset(self) -> None:
        """Forget the logged CLI invocations."""
        self.log.write_text("")

    def invocations(self) -> list[str]:
        """The arguments of each CLI process started since the last reset, oldest first."""
        try:
            return self.log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def run(self, lab: Lab, node: str, *args: str) -> AgentResult:
        """Run the CLI in a node, as an administrator would (profile default, text output)."""
        result = lab.run_process(
            node, [str(self.wrapper), "--profile", "default", "--output", "text", *args]
        )
        if result.rc != 0:
            raise RuntimeError(f"aws {' '.join(args)} in node {node}: {result.stderr.strip()}")
        return result


def install_cli(lab: Lab, directory: Path | None = None) -> AwsCli:
    """Write the CLI wrapper and its config into the lab's workdir (nothing outside it)."""
    cli = AwsCli(directory or lab.workdir / "aws-cli", lab.endpoint_url, lab.region)
    cli.directory.mkdir(parents=True, exist_ok=True)
    cli.config.write_text(f"[default]\nregion = {lab.region}\noutput = json\ncli_pager =\n")
    q = shlex.quote
    cli.wrapper.write_text(
        "#!/bin/sh\n"
        "# The AWS CLI for the lab (tests/lab/incumbents.py): Debian's awscli 2.9 takes the\n"
        "# endpoint only from the command line. Credentials come from the node's IMDS.\n"
        f"AWS_CONFIG_FILE={q(str(cli.config))}\n"
        f"AWS_SHARED_CREDENTIALS_FILE={q(str(cli.directory / 'no-credentials'))}\n"
        "export AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE\n"
        f'echo "$*" >> {q(str(cli.log))}\n'
        f'exec {q(str(AWS_CLI))} --endpoint-url {q(lab.endpoint_url)} "$@"\n'
    )
    cli.wrapper.chmod(0o755)
    cli.reset()
    return cli


def create_routes(cli: AwsCli, lab: Lab, node: str, ip: str, tables: Sequence[str]) -> None:
    """The routes aws-vpc-move-ip needs before its first start, to node's primary ENI."""
    eni = lab.nodes[node].eni_id
    for table in tables:
        cli.run(
            lab,
            node,
            "ec2",
            "create-route",
            "--route-table-id",
            table,
            "--destination-cidr-block",
            f"{ip}/32",
            "--network-interface-id",
            eni,
        )


def eip_public_ip(cli: AwsCli, lab: Lab, node: str, allocation_id: str) -> str:
    """The public address of an Elastic IP (awseip wants it as well as the allocation id)."""
    result = cli.run(
        lab,
        node,
        "ec2",
        "describe-addresses",
        "--allocation-ids",
        allocation_id,
        "--query",
        "Addresses[0].PublicIp",
    )
    return result.stdout.strip()


def move_ip_params(cli: AwsCli, ip: str, tables: Sequence[str]) -> dict[str, str]:
    """aws-vpc-move-ip checking the route tables on every monitor, by this node's ENI."""
    return {
        "ip": ip,
        "routing_table": ",".join(tables),
        "interface": "eth0",
        "monapi": "true",
        "lookup_type": "NetworkInterfaceId",
        "region": cli.region,
        "awscli": str(cli.wrapper),
    }


def awsvip_params(cli: AwsCli, ip: str) -> dict[str, str]:
    return {"secondary_private_ip": ip, "awscli": str(cli.wrapper)}


def awseip_params(cli: AwsCli, public_ip: str, allocation_id: str, ip: str) -> dict[str, str]:
    """awseip with private_ip_address: the EIP on the secondary IP that awsvip moves."""
    return {
        "elastic_ip": public_ip,
        "allocation_id": allocation_id,
        "private_ip_address": ip,
        "awscli": str(cli.wrapper),
    }
