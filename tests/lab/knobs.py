"""Lab, part two: the client of the lab server's control API (``/_lab/...``): faults, timing,
IAM enforcement, throttling, the call log, power, the data plane's table, new ENIs."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from .power import EventAction
from .records import Call, Eni, LabError, PowerInfo, ThrottleCount
from .spec import Timing
from .throttle import ThrottleModel


class Knobs:
    """The control API (a part of Lab, which sets these attributes)."""

    endpoint_url: str
    account_id: str
    role_name: str
    _opener: urllib.request.OpenerDirector

    def _control(
        self, method: str, path: str, data: Any = None, query: Mapping[str, Any] | None = None
    ) -> Any:
        url = f"{self.endpoint_url}/_lab/{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            url, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise LabError(f"{method} /_lab/{path}: {err.code} {err.read().decode()}") from None
        return json.loads(raw) if raw else None

    def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "ping")
        return result

    def set_fault(
        self,
        action: str = "*",
        kind: str = "throttle",
        *,
        rate: float = 1.0,
        code: str | None = None,
        status: int | None = None,
        delay: float | None = None,
        count: int | None = None,
        node: str | None = None,
    ) -> None:
        """Inject a fault into matching EC2 calls (kinds: throttle, error, latency, late, reset,
        blackhole). Calls from `ec2()` clients skip faults unless made with bypass_faults=False."""
        self._control(
            "POST",
            "faults",
            {
                "action": action,
                "kind": kind,
                "rate": rate,
                "code": code,
                "status": status,
                "delay": delay,
                "count": count,
                "node": node,
            },
        )

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def set_imds_fault(self, node: str, mode: str | None, delay: float | None = None) -> None:
        """mode: down, slow (delay seconds), stale_token, disabled, garbage; None clears."""
        self._control("POST", "imds", {"node": node, "mode": mode, "delay": delay})

    def set_instance_events(
        self,
        node: str,
        scheduled: list[dict[str, Any]] | None = None,
        spot: dict[str, Any] | None = None,
        rebalance: dict[str, Any] | None = None,
    ) -> None:
        """What the node's IMDS says of AWS's plans for its instance (lab.imds), replacing what
        was set: `scheduled` is events/maintenance/scheduled (None: ``[]``; lab.imds
        .scheduled_event makes one), `spot` spot/instance-action, `rebalance`
        events/recommendations/rebalance (None: 404). reset() clears them."""
        self._control(
            "POST",
            "events",
            {"node": node, "scheduled": scheduled, "spot": spot, "rebalance": rebalance},
        )

    def instance_events(self, node: str) -> dict[str, Any]:
        """{"scheduled", "spot", "rebalance"} as set for `node` (None: nothing)."""
        result: dict[str, Any] = self._control("GET", "events", query={"node": node})
        return result

    def set_timing(
        self,
        *,
        assign_delay: float | None = None,
        attach_delay: float | None = None,
        detach_delay: float | None = None,
        hotplug_delay: float | None = None,
        force_detach_delay: float | None = None,
    ) -> Timing:
        values = {
            "assign_delay": assign_delay,
            "attach_delay": attach_delay,
            "detach_delay": detach_delay,
            "hotplug_delay": hotplug_delay,
            "force_detach_delay": force_detach_delay,
        }
        return Timing(**self._control("POST", "timing", values))

    def timing(self) -> Timing:
        return Timing(**self._control("GET", "timing"))

    def enforce_policy(self, document: Mapping[str, Any] | None) -> None:
        """Enforce an IAM identity policy on the nodes' instance role (lab.iam), None: stop.

        Evaluated before moto runs a request signed with a node's IMDS credentials (agents),
        DryRun included; `ec2()` clients and other keys are not. A denied request gets 403
        UnauthorizedOperation with EC2's message. reset() and teardown stop enforcing.
        """
        if document is None:
            self._control("DELETE", "iam")
        else:
            self._control("POST", "iam", {"policy": dict(document)})

    def set_role(
        self,
        arn: str,
        trust: Mapping[str, Any],
        policy: Mapping[str, Any] | None = None,
        max_seconds: int = 3600,
    ) -> None:
        """Declare a role the lab's STS lets callers assume (lab.sts): its trust policy
        (Principal AWS, sts:AssumeRole, sts:ExternalId conditions) and its identity policy,
        enforced on the EC2 requests its sessions sign (None: not enforced). Replaces a role of
        that ARN; reset() forgets them all."""
        data = {"arn": arn, "trust": dict(trust), "max_seconds": max_seconds}
        data["policy"] = dict(policy) if policy is not None else None
        self._control("POST", "roles", data)

    def nodes_trust(self) -> dict[str, Any]:
        """A trust policy (for set_role) that lets the nodes' instance role assume the role."""
        return {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{self.account_id}:role/{self.role_name}"},
                "Action": "sts:AssumeRole",
            },
        }

    def role_sessions(self) -> list[dict[str, Any]]:
        """The sessions the lab's STS issued: access_key, role_arn, session_name, arn, caller."""
        result: dict[str, Any] = self._control("GET", "roles")
        sessions: list[dict[str, Any]] = result["sessions"]
        return sessions

    def forget_roles(self) -> None:
        self._control("DELETE", "roles")

    def set_throttle(self, model: ThrottleModel) -> None:
        """Throttle with `model` from now on: every bucket starts over, full; the counters stay.
        reset() goes back to the model the Lab was created with."""
        self._control("POST", "throttle", model.to_json())

    def throttle_state(self) -> dict[str, Any]:
        """{"model": ..., "buckets": {bucket: {tokens, capacity, refill, background}},
        "counts": {action: {answered, throttled}}}: the buckets used so far, as of now."""
        state: dict[str, Any] = self._control("GET", "throttle")
        return state

    def throttle_counts(self) -> dict[str, ThrottleCount]:
        """Per EC2 action, the calls that got a token (answered, whatever EC2 then said) and
        those throttled by the buckets, since the lab (or reset_throttle) began."""
        counts = self._control("GET", "throttle")["counts"]
        return {action: ThrottleCount(**count) for action, count in counts.items()}

    def reset_throttle(self) -> None:
        """Full buckets, zero counters."""
        self._control("DELETE", "throttle")

    def hang_detach(self, eni_id: str, hang: bool = True) -> None:
        """While hung, a normal detach of eni_id stays `detaching` until a Force detach."""
        self._control("POST", "hang", {"eni_id": eni_id, "hang": hang})

    def calls(
        self, node: str | None = None, since: float | None = None, service: str = "ec2"
    ) -> list[Call]:
        """Logged calls, oldest first; service "ec2", "imds" or "*"."""
        rows = self._control(
            "GET", "calls", query={"node": node, "since": since, "service": service}
        )
        return [Call(**row) for row in rows]

    def reset_calls(self) -> None:
        self._control("DELETE", "calls")

    def fault_rules(self) -> list[dict[str, Any]]:
        """The fault rules still in force (a rule with `count` is gone once it hit its calls)."""
        rules: list[dict[str, Any]] = self._control("GET", "faults")
        return rules

    def power(self) -> dict[str, PowerInfo]:
        """Node -> the power state of its instance as the lab last acted on it (lab.power)."""
        return {name: PowerInfo(**p) for name, p in self._control("GET", "power").items()}

    def schedule_event_action(
        self,
        node: str,
        at: float,
        kind: str = "system-reboot",
        grace: float | None = None,
        event_id: str | None = None,
    ) -> EventAction:
        """Have the lab do at `at` (time.time()) what EC2 does at an event's NotBefore: a
        graceful shutdown of the node (SIGTERM to its init), after at most `grace` seconds
        (default lab.power.DEFAULT_GRACE) the hard stop, then for reboots the boot (lab.power).
        kind: system-reboot, instance-reboot, instance-stop, instance-retirement, spot-stop,
        spot-hibernate, spot-terminate. With `event_id`, that event then leaves the node's
        events/maintenance/scheduled. reset() cancels what has not begun."""
        data: dict[str, Any] = {"node": node, "at": at, "kind": kind, "event_id": event_id}
        if grace is not None:
            data["grace"] = grace
        return EventAction.from_json(self._control("POST", "event-actions", data))

    def event_actions(self) -> list[EventAction]:
        """The event actions scheduled since the lab (or reset()) began, with their progress."""
        return [EventAction.from_json(a) for a in self._control("GET", "event-actions")]

    def ca_pem(self) -> str:
        """The lab CA's certificate (PEM): it signs the regional endpoint's certificate."""
        pem: str = self._control("GET", "ca")["pem"]
        return pem

    def forwarding(self) -> dict[str, dict[str, str]]:
        """The data plane's current table: destination CIDR -> {node, eni_id, bridge, mac, via}."""
        result: dict[str, dict[str, str]] = self._control("GET", "dataplane")["forwarding"]
        return result

    def elastic_ips(self) -> dict[str, str]:
        """The Elastic IPs the data plane translates now: public -> private address."""
        result: dict[str, str] = self._control("GET", "dataplane").get("elastic_ips", {})
        return result

    def forwarded_to(self, address: str) -> str | None:
        """The node the VPC sends `address` to now (its most specific route), or None."""

        ip = ipaddress.ip_address(address)
        best: tuple[int, str] | None = None
        for cidr, hop in self.forwarding().items():
            net = ipaddress.ip_network(cidr)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, hop["node"])
        return best[1] if best else None

    def guest_links(self) -> dict[str, Any]:
        """ENI id -> the hotplugged link the server made for it (node, ifname, mac...)."""
        result: dict[str, Any] = self._control("GET", "links")
        return result

    def create_eni(
        self,
        subnet: str = "c",
        description: str = "",
        secondary_ips: int = 0,
        ipv6_count: int = 0,
    ) -> Eni:
        """A new available ENI with the next free addresses from .100 of the subnet."""
        info = self._control(
            "POST",
            "eni",
            {
                "subnet": subnet,
                "description": description,
                "secondary_ips": secondary_ips,
                "ipv6_count": ipv6_count,
            },
        )
        return Eni(
            id=info["id"],
            mac=info["mac"],
            ip=info["ip"],
            secondary_ips=tuple(info["secondary_ips"]),
            subnet=subnet,
            subnet_id=info["subnet_id"],
            az=info["az"],
        )

    def allocate_eip(self) -> str:
        result: str = self._control("POST", "eip")["allocation_id"]
        return result
