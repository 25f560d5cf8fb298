"""IMDSv2 for one node, answered from the live moto state of the node's instance.

Served inside the node's namespace at 169.254.169.254:80. Tokens are required (a GET without a
valid X-aws-ec2-metadata-token gets 401). Fault modes, set per node through the control API:

- ``down``: connections are reset at accept (the server asks `refuses()`);
- ``slow``: every answer is delayed by ``delay`` seconds;
- ``stale_token``: the next GET with a valid token gets 401 once and every token issued so far
  is forgotten, so the client must fetch a new one;
- ``disabled``: every request gets 403 (the instance's metadata endpoint is turned off);
- ``garbage``: 200 with random bytes that are neither UTF-8 nor JSON.

The fault modes apply to every path, the instance events below included.

Instance events (set per node with ``Lab.set_instance_events``), in the formats of AWS's
instance metadata documentation (sources: "Instance metadata categories",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-categories.html;
"Spot Instance interruption notices",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html;
"EC2 instance rebalance recommendations",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html):

- ``events/maintenance/scheduled``: always present; a JSON list (``[]`` when there is none) of
  ``{"Code", "Description", "EventId", "NotAfter", "NotBefore", "NotBeforeDeadline"?,
  "State"}``, the times as ``21 Jan 2019 09:00:43 GMT`` (English month names, whatever the
  locale: `aws_event_time`);
- ``spot/instance-action``: ``{"action": "terminate"|"stop"|"hibernate", "time":
  "2017-09-18T08:22:00Z"}``; 404 when there is no interruption notice;
- ``events/recommendations/rebalance``: ``{"noticeTime": "2020-10-27T08:22:00Z"}``; 404 when
  there is none.

The lab serves what the test set, as given (a test may set malformed events on purpose).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from .faults import CallLog, CallRecord
from .fidelity import instance_az

MODES = ("down", "slow", "stale_token", "disabled", "garbage")
TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"
TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"
CREDENTIAL_LIFETIME = timedelta(hours=6)

Tree = dict[str, Any]  # a directory: name -> Tree or str
StartResponse = Callable[..., Any]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def aws_event_time(moment: datetime) -> str:
    """A scheduled event's time as IMDS writes it (``21 Jan 2019 09:00:43 GMT``), in English
    whatever the locale (strftime's %b is not)."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc.day:02d} {MONTHS[utc.month - 1]} {utc.year} {utc:%H:%M:%S} GMT"


def scheduled_event(
    code: str,
    not_before: datetime,
    *,
    duration: timedelta = timedelta(hours=2),
    state: str = "active",
    event_id: str | None = None,
    description: str | None = None,
    deadline: datetime | None = None,
) -> dict[str, str]:
    """One entry of ``events/maintenance/scheduled`` (a convenience for tests)."""
    event = {
        "Code": code,
        "Description": description or f"scheduled {code.replace('-', ' ')}",
        "EventId": event_id or "instance-event-" + secrets.token_hex(8) + "0",
        "NotAfter": aws_event_time(not_before + duration),
        "NotBefore": aws_event_time(not_before),
        "State": state,
    }
    if deadline is not None:
        event["NotBeforeDeadline"] = aws_event_time(deadline)
    return event


def make_credentials(rng: secrets.SystemRandom | None = None) -> dict[str, str]:
    upper = string.ascii_uppercase + string.digits
    chars = string.ascii_letters + string.digits
    rng = rng or secrets.SystemRandom()
    now = datetime.now(timezone.utc)
    return {
        "Code": "Success",
        "LastUpdated": iso(now),
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIA" + "".join(rng.choice(upper) for _ in range(16)),
        "SecretAccessKey": "".join(rng.choice(chars + "/+") for _ in range(40)),
        "Token": "IQoJb3JpZ2luX2VjE" + "".join(rng.choice(chars) for _ in range(300)),
        "Expiration": iso(now + CREDENTIAL_LIFETIME),
    }


class Imds:
    def __init__(
        self,
        *,
        node: str,
        instance_id: str,
        region: str,
        account_id: str,
        role: str,
        lock: threading.RLock,
        backend: Callable[[], Any],
        guest_enis: Callable[[str], list[str]],
        calls: CallLog,
    ) -> None:
        self.node = node
        self.instance_id = instance_id
        self.region = region
        self.account_id = account_id
        self.role = role
        self.lock = lock
        self.backend = backend
        self.guest_enis = guest_enis
        self.calls = calls
        self.credentials = make_credentials()
        self.profile_id = "AIPA" + secrets.token_hex(8).upper()
        self.tokens: dict[str, float] = {}
        self.mode: str | None = None
        self.delay = 0.0
        # Instance events (set_events): None is "nothing" ([] for scheduled, 404 otherwise).
        self.scheduled: list[Any] | None = None
        self.spot: dict[str, Any] | None = None
        self.rebalance: dict[str, Any] | None = None

    # ---- control -------------------------------------------------------------------------

    def set_mode(self, mode: str | None, delay: float | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown IMDS mode {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.delay = float(delay) if delay is not None else (2.0 if mode == "slow" else 0.0)

    def set_events(
        self,
        scheduled: list[Any] | None = None,
        spot: dict[str, Any] | None = None,
        rebalance: dict[str, Any] | None = None,
    ) -> None:
        """Replace this node's instance events (None: none of that kind)."""
        if scheduled is not None and not isinstance(scheduled, list):
            raise ValueError("scheduled: a list of events or None")
        for name, value in (("spot", spot), ("rebalance", rebalance)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name}: an object or None")
        with self.lock:
            self.scheduled, self.spot, self.rebalance = scheduled, spot, rebalance

    def events(self) -> dict[str, Any]:
        return {"scheduled": self.scheduled, "spot": self.spot, "rebalance": self.rebalance}

    def event_tree(self) -> tuple[Tree, Tree | None]:
        """The ``events`` directory and, with a notice, the ``spot`` one (caller holds the lock)."""
        events: Tree = {
            "maintenance": {
                "history": "[]",
                "scheduled": json.dumps(self.scheduled or [], indent=2),
            }
        }
        if self.rebalance is not None:
            events["recommendations"] = {"rebalance": json.dumps(self.rebalance)}
        spot = {"instance-action": json.dumps(self.spot)} if self.spot is not None else None
        return events, spot

    def refuses(self) -> bool:
        return self.mode == "down"

    # ---- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        status, body, ctype = self.answer(method, path, environ)
        self.calls.add(
            CallRecord(
                time=time.time(),
                node=self.node,
                service="imds",
                action=f"{method} {path}",
                status=int(status.split()[0]),
                fault=self.mode,
            )
        )
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def answer(self, method: str, path: str, environ: dict[str, Any]) -> tuple[str, bytes, str]:
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "disabled":
            return "403 Forbidden", b"", "text/plain"
        if self.mode == "garbage":
            return "200 OK", b"\xff\xfe\x00\xc3" + os.urandom(61), "text/plain"
        if path == "/latest/api/token":
            if method != "PUT":
                return "405 Method Not Allowed", b"", "text/plain"
            return self.new_token(environ.get(TTL_HEADER))
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"", "text/plain"
        return self.get(path, environ.get(TOKEN_HEADER, ""))

    def get(self, path: str, token: str) -> tuple[str, bytes, str]:
        with self.lock:
            if self.tokens.get(token, 0.0) <= time.monotonic():
                return "401 Unauthorized", b"", "text/plain"
            if self.mode == "stale_token":
                self.mode = None
                self.tokens.clear()
                return "401 Unauthorized", b"", "text/plain"
            try:
                tree = self.tree()
            except Exception as err:  # the instance is gone (lab reset): say so, as a 404
                return "404 Not Found", str(err).encode(), "text/plain"
        return self.lookup(tree, path)

    def new_token(self, ttl: str | None) -> tuple[str, bytes, str]:
        try:
            seconds = int(ttl or "")
        except ValueError:
            return "400 Bad Request", b"", "text/plain"
        if not 1 <= seconds <= 21600:
            return "400 Bad Request", b"", "text/plain"
        token = secrets.token_urlsafe(42)
        with self.lock:
            self.tokens[token] = time.monotonic() + seconds
        return "200 OK", token.encode(), "text/plain"

    @staticmethod
    def lookup(tree: Tree, path: str) -> tuple[str, bytes, str]:
        parts = [p for p in path.split("/") if p]
        node: Any = tree
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return "404 Not Found", b"", "text/plain"
            node = node[part]
        if isinstance(node, dict):
            lines = [f"{key}/" if isinstance(value, dict) else key for key, value in node.items()]
            return "200 OK", "\n".join(lines).encode(), "text/plain"
        ctype = "application/json" if node.startswith("{") else "text/plain"
        return "200 OK", node.encode(), ctype

    # ---- the tree, from moto (caller holds the lock) --------------------------------------

    def tree(self) -> Tree:
        backend = self.backend()
        instance = backend.get_instance(self.instance_id)
        primary = instance.nics[0]
        enis = [primary]
        for eni_id in self.guest_enis(self.node):
            eni = backend.enis.get(eni_id)
            if eni is not None:
                enis.append(eni)
        az = instance_az(instance)
        zone = (
            next((s.availability_zone_id for s in backend.subnets.get(az, {}).values()), None)
            or f"{self.region[:2]}-az1"
        )
        hostname = (
            f"ip-{primary.private_ip_address.replace('.', '-')}.{self.region}.compute.internal"
        )
        now = datetime.now(timezone.utc)
        document = {
            "accountId": self.account_id,
            "architecture": "x86_64",
            "availabilityZone": az,
            "imageId": instance.image_id,
            "instanceId": instance.id,
            "instanceType": instance.instance_type,
            "pendingTime": iso(now),
            "privateIp": primary.private_ip_address,
            "region": self.region,
            "version": "2017-09-30",
        }
        events, spot = self.event_tree()
        meta: Tree = {
            "ami-id": instance.image_id,
            "events": events,
            "hostname": hostname,
            "iam": {
                "info": json.dumps(
                    {
                        "Code": "Success",
                        "LastUpdated": self.credentials["LastUpdated"],
                        "InstanceProfileArn": f"arn:aws:iam::{self.account_id}"
                        f":instance-profile/{self.role}",
                        "InstanceProfileId": self.profile_id,
                    },
                    indent=2,
                ),
                "security-credentials": {self.role: json.dumps(self.credentials, indent=2)},
            },
            "instance-id": instance.id,
            "instance-type": instance.instance_type,
            "local-hostname": hostname,
            "local-ipv4": primary.private_ip_address,
            "mac": primary.mac_address,
            "network": {
                "interfaces": {
                    "macs": {eni.mac_address: self.interface(backend, eni) for eni in enis}
                }
            },
            "placement": {
                "availability-zone": az,
                "availability-zone-id": zone,
                "region": self.region,
            },
            "services": {"domain": "amazonaws.com", "partition": "aws"},
        }
        if spot is not None:
            meta["spot"] = spot
        return {
            "latest": {
                "api": {},
                "meta-data": meta,
                "dynamic": {"instance-identity": {"document": json.dumps(document, indent=2)}},
            }
        }

    def interface(self, backend: Any, eni: Any) -> Tree:
        subnet = eni.subnet
        vpc = backend.get_vpc(subnet.vpc_id)
        v4 = [c["cidr_block"] for c in vpc.get_cidr_block_association_set(ipv6=False)]
        v6 = [c["cidr_block"] for c in vpc.get_cidr_block_association_set(ipv6=True)]
        ips = [i["PrivateIpAddress"] for i in eni.private_ip_addresses]
        groups = list(eni.group_set)
        info: Tree = {
            "device-number": str(eni.device_index),
            "interface-id": eni.id,
            "local-hostname": f"ip-{eni.private_ip_address.replace('.', '-')}"
            f".{self.region}.compute.internal",
            "local-ipv4s": "\n".join(ips),
            "mac": eni.mac_address,
            "owner-id": self.account_id,
            "security-group-ids": "\n".join(g.id for g in groups),
            "security-groups": "\n".join(g.name for g in groups),
            "subnet-id": subnet.id,
            "subnet-ipv4-cidr-block": subnet.cidr_block,
            "vpc-id": vpc.id,
            "vpc-ipv4-cidr-block": vpc.cidr_block,
            "vpc-ipv4-cidr-blocks": "\n".join(v4),
        }
        if eni.public_ip:
            info["public-ipv4s"] = eni.public_ip
        if eni.ipv6_addresses:
            info["ipv6s"] = "\n".join(eni.ipv6_addresses)
            six = [a["ipv6CidrBlock"] for a in subnet.ipv6_cidr_block_associations.values()]
            info["subnet-ipv6-cidr-blocks"] = "\n".join(six)
            info["vpc-ipv6-cidr-blocks"] = "\n".join(v6)
        return dict(sorted(info.items()))
