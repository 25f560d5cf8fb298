"""The lab server's control API (``/_lab/...``, on the host listener only): set-up and
teardown, faults, timing, IAM, throttling, the call log, power, the data plane, new ENIs."""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from .dataplane import DataPlane
from .ec2_api import LOCK, LOG, Ec2Api, _reason
from .faults import (
    FaultRule,
)
from .hotplug import Hotplug
from .listeners import StartResponse
from .power import PowerState
from .spec import (
    ENI_HOST_BASE,
    PUBLIC_CIDR,
    LabSpec,
    random_mac,
)
from .throttle import ThrottleModel
from .tls import Certificates


class Control(Ec2Api):
    """The control API (a part of LabServer, which sets these attributes)."""

    port: int
    spec: LabSpec | None
    topology: dict[str, Any] | None
    hotplug: Hotplug
    certificates: dict[str, Certificates]
    dataplane: DataPlane | None
    power: dict[str, PowerState]
    power_lock: threading.Lock

    # LabServer's:
    def setup(self, spec: LabSpec) -> dict[str, Any]:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def tls_context(self, region: str) -> ssl.SSLContext:
        raise NotImplementedError

    def schedule_event_action(self, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def event_action_states(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def control(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")[len("/_lab/") :].strip("/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            data = json.loads(raw) if raw else {}
            result = self.dispatch(method, path, data, query)
            status = 200
        except (ValueError, KeyError, TypeError) as err:
            status, result = 400, {"error": f"{type(err).__name__}: {err}"}
        except Exception as err:
            LOG.error("control %s %s failed: %s", method, path, traceback.format_exc())
            status, result = 500, {"error": f"{type(err).__name__}: {err}"}
        body = json.dumps(result).encode()
        start_response(
            f"{status} {_reason(status)}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def dispatch(self, method: str, path: str, data: dict[str, Any], query: dict[str, str]) -> Any:
        routes: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, str]], Any]] = {
            ("GET", "ping"): lambda d, q: {"ok": True, "pid": os.getpid(), "port": self.port},
            ("POST", "setup"): lambda d, q: self.setup(LabSpec.from_json(d)),
            ("POST", "teardown"): lambda d, q: self.teardown(),
            ("GET", "faults"): lambda d, q: self.faults.rules(),
            ("POST", "faults"): lambda d, q: self.faults.add(FaultRule(**d)),
            ("DELETE", "faults"): lambda d, q: self.faults.clear(),
            ("GET", "calls"): self.get_calls,
            ("DELETE", "calls"): lambda d, q: self.calls.clear(),
            ("POST", "imds"): lambda d, q: self.imds[d["node"]].set_mode(
                d.get("mode"), d.get("delay")
            ),
            ("POST", "events"): lambda d, q: self.imds[d["node"]].set_events(
                d.get("scheduled"), d.get("spot"), d.get("rebalance")
            ),
            ("GET", "events"): lambda d, q: self.imds[q["node"]].events(),
            ("GET", "timing"): self.timing,
            ("POST", "timing"): self.timing,
            ("POST", "hang"): self.hang,
            ("POST", "eni"): lambda d, q: self.create_eni(d),
            ("POST", "eip"): lambda d, q: self.allocate_eip(),
            ("GET", "links"): lambda d, q: {e: asdict(p) for e, p in self.hotplug.plugged.items()},
            ("POST", "tick"): lambda d, q: self.tick(),
            ("GET", "power"): lambda d, q: self.power_states(),
            ("POST", "event-actions"): lambda d, q: self.schedule_event_action(d),
            ("GET", "event-actions"): lambda d, q: self.event_action_states(),
            ("GET", "ca"): lambda d, q: {"pem": self.ca_pem()},
            ("GET", "dataplane"): lambda d, q: self.dataplane_state(),
            ("GET", "iam"): lambda d, q: self.get_policy(),
            ("POST", "iam"): lambda d, q: self.set_policy(d),
            ("DELETE", "iam"): lambda d, q: self.clear_policy(),
            ("GET", "roles"): lambda d, q: self.get_roles(),
            ("POST", "roles"): lambda d, q: self.set_role(d),
            ("DELETE", "roles"): lambda d, q: self.forget_roles(),
            ("GET", "throttle"): lambda d, q: self.throttle_state(),
            ("POST", "throttle"): lambda d, q: self.set_throttle(d),
            ("DELETE", "throttle"): lambda d, q: self.throttle.reset(),
        }
        handler = routes.get((method, path))
        if handler is None:
            raise KeyError(f"no control endpoint {method} /_lab/{path}")
        return handler(data, query)

    def throttle_state(self) -> dict[str, Any]:
        return {**self.throttle.state(), "counts": self.throttle.counts()}

    def set_throttle(self, data: dict[str, Any]) -> dict[str, Any]:
        self.throttle.configure(ThrottleModel.from_json(data))  # a ValueError is a 400
        return self.throttle_state()

    def power_states(self) -> dict[str, Any]:
        with self.power_lock:
            return {name: state.to_json() for name, state in self.power.items()}

    def ca_pem(self) -> str:
        spec = self.spec
        if spec is None:
            raise ValueError("the lab is not set up")
        self.tls_context(spec.region)
        return self.certificates[spec.region].ca_pem

    def dataplane_state(self) -> dict[str, Any]:
        dataplane = self.dataplane
        if dataplane is None:
            return {"enabled": False, "changes": 0, "forwarding": {}}
        with dataplane.lock:
            return {"enabled": True, **dataplane.describe()}

    def get_calls(self, data: dict[str, Any], query: dict[str, str]) -> list[dict[str, Any]]:
        since = float(query["since"]) if "since" in query else None
        service = query.get("service", "ec2")
        return self.calls.select(query.get("node"), since, None if service == "*" else service)

    def timing(self, data: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        with LOCK:
            self.world.timing.update(data)
            return asdict(self.world.timing)

    def hang(self, data: dict[str, Any], query: dict[str, str]) -> None:
        with LOCK:
            self.world.set_hang(data["eni_id"], bool(data.get("hang", True)))

    def allocate_eip(self) -> dict[str, Any]:
        """A new Elastic IP, its public address the first free one of PUBLIC_CIDR."""
        with LOCK:
            backend = self.world.backend
            taken = {a.public_ip for a in backend.addresses}
            hosts = ipaddress.ip_network(PUBLIC_CIDR).hosts()
            public = next(str(ip) for ip in hosts if str(ip) not in taken)
            eip = backend.allocate_address(domain="vpc", address=public)
        return {"allocation_id": eip.allocation_id, "public_ip": eip.public_ip}

    def create_eni(self, data: dict[str, Any]) -> dict[str, Any]:
        with LOCK:
            return self._create_eni(data)

    def _create_eni(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.topology is None:
            raise ValueError("the lab is not set up")
        info = self.topology["subnets"][data.get("subnet", "c")]
        backend = self.world.backend
        subnet = backend.get_subnet(info["id"])
        ips = self.world.free_ipv4(
            subnet.cidr_block, ENI_HOST_BASE, 1 + int(data.get("secondary_ips", 0))
        )
        eni = backend.create_network_interface(
            subnet,
            ips[0],
            private_ip_addresses=[
                {"Primary": n == 0, "PrivateIpAddress": ip} for n, ip in enumerate(ips)
            ],
            group_ids=[self.topology["security_group"]],
            description=data.get("description") or "",
            ipv6_address_count=int(data.get("ipv6_count", 0)),
        )
        eni.mac_address = random_mac(self.world.rng)
        return {
            "id": eni.id,
            "mac": eni.mac_address,
            "ip": ips[0],
            "secondary_ips": ips[1:],
            "subnet_id": subnet.id,
            "az": subnet.availability_zone,
        }
