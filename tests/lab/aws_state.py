"""Lab, part three: AWS as the tests see it: a botocore EC2 client on the lab's listener and
the readers built on it (route targets, which ENIs hold an address)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

_botocore_session: Any = None


class AwsState:
    """EC2 from the test side (a part of Lab, which sets these attributes)."""

    region: str
    endpoint_url: str
    route_tables: list[str]
    _clients: dict[tuple[bool, float], Any]

    def ec2(self, *, bypass_faults: bool = True, read_timeout: float = 60.0) -> Any:
        """A botocore EC2 client on the host listener: dummy credentials, no retries.

        With bypass_faults (the default) injected faults do not apply to its calls.
        """
        key = (bypass_faults, read_timeout)
        client = self._clients.get(key)
        if client is not None:
            return client
        import botocore.session
        from botocore.config import Config

        global _botocore_session  # noqa: PLW0603 - one session: models load once per process
        if _botocore_session is None:
            _botocore_session = botocore.session.Session()
        client = _botocore_session.create_client(
            "ec2",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="AKIDLABTESTS000000000",
            aws_secret_access_key="lab-tests-dummy-secret",
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=read_timeout,
                proxies={},
            ),
        )
        if bypass_faults:

            def mark(request: Any, **_: Any) -> None:
                request.headers["X-Lab-Bypass"] = "1"

            client.meta.events.register("before-sign.ec2", mark)
        self._clients[key] = client
        return client

    def describe_route_tables(self) -> list[dict[str, Any]]:
        tables: list[dict[str, Any]] = self.ec2().describe_route_tables(
            RouteTableIds=self.route_tables
        )["RouteTables"]
        return tables

    def eni(self, eni_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.ec2().describe_network_interfaces(
            NetworkInterfaceIds=[eni_id]
        )["NetworkInterfaces"][0]
        return result

    def route_targets(
        self, cidr: str, tables: Sequence[str] | None = None
    ) -> dict[str, str | None]:
        """Per route table (default: the lab's), the ENI its route for ``cidr`` (IPv4 or IPv6)
        points at; None where the table has no such route."""
        answer = self.ec2().describe_route_tables(RouteTableIds=list(tables or self.route_tables))
        found: dict[str, str | None] = {}
        for table in answer["RouteTables"]:
            hit = [
                r
                for r in table["Routes"]
                if cidr in (r.get("DestinationCidrBlock"), r.get("DestinationIpv6CidrBlock"))
            ]
            found[table["RouteTableId"]] = hit[0].get("NetworkInterfaceId") if hit else None
        return found

    def holders(self, ip: str) -> set[str]:
        """The ENIs the simulator lists ``ip`` on, as a private IPv4 or an IPv6 address (read
        without any filter, so whatever the agents' filters do does not matter)."""
        wanted = ipaddress.ip_address(ip)
        found = set()
        for eni in self.ec2().describe_network_interfaces()["NetworkInterfaces"]:
            v4 = [item["PrivateIpAddress"] for item in eni.get("PrivateIpAddresses", [])]
            v6 = [item["Ipv6Address"] for item in eni.get("Ipv6Addresses", [])]
            if any(ipaddress.ip_address(a) == wanted for a in v4 + v6):
                found.add(str(eni["NetworkInterfaceId"]))
        return found
