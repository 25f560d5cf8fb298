"""Fencing for the lab cluster: the real fence_aws (Debian's fence-agents) against the simulator.

fence_aws calls ``boto3.resource("ec2", region_name=...)``, with no way to give an endpoint URL:
Debian 12's botocore 1.29 predates both ``AWS_ENDPOINT_URL`` and ``endpoint_url`` in the
shared config file (they came with botocore 1.31). So the lab gives the node what an instance
in a VPC with an EC2 interface endpoint and private DNS has: the regional name
``ec2.<region>.amazonaws.com`` resolves (the node's /etc/hosts) to where the lab server answers
HTTPS (127.0.0.1:443 inside the node's network namespace, see lab.tls), with a certificate that
the node trusts (the node's /etc/ssl/certs/ca-certificates.crt: the host's bundle plus the lab
CA; Debian's botocore uses that bundle through python3-certifi). Credentials come from the
instance role through the node's IMDS, the region from the resource's `region` parameter.
fence_aws itself, boto3 and botocore are the distribution's, unmodified.

The fencing resource is crm-examples/fence_aws.crm with its placeholders replaced: the node
names and instance ids in pcmk_host_map, and pcmk_delay_max=45 -> `delay_max` (0 by default:
the delay exists to let one of two live nodes win a fence race; in the crash scenarios only one
node is alive, and on a real cluster the delay adds up to 45 s to those outages).

When fence_aws stops the instance, the lab cuts the node off (lab.power: every process of the
node killed, links down); when it starts it again ("reboot" = off, then on), the node boots with a
fresh network and without its cluster stack, like an instance whose pacemaker is not enabled at
boot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .examples import instantiate

if TYPE_CHECKING:
    from lab import Lab

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
NODE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
EXAMPLE_HOST_MAP = 'pcmk_host_map="node1:i-0123456789abcdef0;node2:i-0fedcba9876543210"'


@dataclass(frozen=True)
class FenceAws:
    example: str = "fence_aws.crm"
    resource: str = "rsc_fence_aws"
    delay_max: int = 0

    def crm(self, lab: Lab, names: Sequence[str]) -> str:
        """The fencing configuration for the lab's nodes (crm shell syntax)."""
        host_map = ";".join(f"{name}:{lab.nodes[name].instance_id}" for name in names)
        return instantiate(
            self.example,
            {
                EXAMPLE_HOST_MAP: f'pcmk_host_map="{host_map}"',
                "region=eu-central-1": f"region={lab.region}",
                "pcmk_delay_max=45": f"pcmk_delay_max={self.delay_max}",
            },
        )

    @staticmethod
    def hosts_entries(lab: Lab) -> list[str]:
        """Lines for the node's /etc/hosts: the regional EC2 name -> the lab's TLS endpoint."""
        host = lab.regional_endpoint.removeprefix("https://")
        return [f"127.0.0.1\t{host}"]

    @staticmethod
    def ca_bundle(lab: Lab) -> str:
        """The node's system CA bundle: the host's plus the lab CA."""
        try:
            system = HOST_CA_BUNDLE.read_text()
        except FileNotFoundError:
            system = ""
        if system and not system.endswith("\n"):
            system += "\n"
        return system + "# ipfailover lab CA (tests/lab/tls.py)\n" + lab.ca_pem()
