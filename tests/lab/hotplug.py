"""ENI hotplug: the links the lab server plugs into a node when EC2 says an ENI is attached
(and unplugs when it is detached), like the Nitro hypervisor does."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import netns

LOG = logging.getLogger("lab.server")


@dataclass
class Plugged:
    node: str
    netns: str
    ifname: str
    peer: str
    mac: str
    device_index: int


class Hotplug:
    """Shows each attached ENI in its node as a NIC: a veth end named eth<N>, DOWN."""

    def __init__(self) -> None:
        self.plugged: dict[str, Plugged] = {}
        self.lock = threading.Lock()

    def enis_of(self, node: str) -> list[str]:
        """The ENIs plugged into node, by device index (what the guest, and so IMDS, sees)."""
        items = sorted(self.plugged.items(), key=lambda item: item[1].device_index)
        return [eni_id for eni_id, plug in items if plug.node == node]

    def reconcile(
        self,
        want: dict[str, tuple[Plugged, str | None]],
        vpc_ns: str,
        current: Callable[[], bool],
    ) -> None:
        """Plug and unplug links so the nodes show exactly `want` (ENI id -> link, bridge).

        `current` tells whether the world `want` was computed from still exists (a teardown
        may have happened in between): if not, nothing is done.
        """
        with self.lock:
            if not current():
                return
            for eni_id, have in list(self.plugged.items()):
                wanted = want.get(eni_id)
                if wanted is None or wanted[0] != have:
                    self._unplug(eni_id, vpc_ns)
            for eni_id, (plug, bridge) in want.items():
                if eni_id not in self.plugged:
                    self._plug(eni_id, plug, bridge, vpc_ns)

    def _plug(self, eni_id: str, p: Plugged, bridge: str | None, vpc_ns: str) -> None:
        add = f"link add {p.peer} type veth peer name {p.ifname} address {p.mac} netns {p.netns}"
        up = f"link set {p.peer} master {bridge} up" if bridge else f"link set {p.peer} up"
        try:
            netns.ip_batch([add, up], vpc_ns)
        except netns.IpError:
            # a stale link of the same name (ours or the guest's): clear both ends and retry once
            for name, ns in ((p.ifname, p.netns), (p.peer, vpc_ns)):
                with contextlib.suppress(netns.IpError):
                    netns.ip("link", "del", name, netns=ns)
            try:
                netns.ip_batch([add, up], vpc_ns)
            except netns.IpError as err:
                LOG.error("hotplug of %s into %s failed: %s", eni_id, p.node, err)
                return
        self.plugged[eni_id] = p

    def _unplug(self, eni_id: str, vpc_ns: str) -> None:
        p = self.plugged.pop(eni_id)
        try:
            netns.ip("link", "del", p.peer, netns=vpc_ns)
        except netns.IpError:
            with contextlib.suppress(netns.IpError):
                netns.ip("link", "del", p.ifname, netns=p.netns)

    def forget(self) -> None:
        with self.lock:
            self.plugged.clear()
