"""Where moto 5.2.1 differs from EC2 in ways our agents care about, and the lab's fixes.

`World` holds the state moto has no notion of (attachment transitions, asynchronous IP moves, the
per-ENI detach "hang" knob, the private IP an Elastic IP is associated with) and applies due
transitions in `tick()`. `install()` monkeypatches moto once per process; every patch says what
AWS does and what moto got wrong. Callers hold the lab server's global lock around every call
into moto or the World.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import (
    DryRunClientError,
    EC2ClientError,
    InvalidAddressError,
    InvalidAssociationIdError,
    InvalidNetworkAttachmentIdError,
    InvalidSecurityGroupNotFoundError,
    ResourceAlreadyAssociatedError,
    RouteAlreadyExistsError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_ip_addresses import ElasticAddress, ElasticAddressBackend
from moto.ec2.models.elastic_network_interfaces import Attachment, NetworkInterface
from moto.ec2.models.instances import Instance
from moto.ec2.models.route_tables import Route, RouteBackend
from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.ec2.utils import random_eip_association_id

from .spec import Timing


def instance_az(instance: Any) -> str:
    return str(instance._placement.zone)  # moto keeps the AZ here


def client_error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def invalid_value(message: str) -> EC2ClientError:
    return client_error("InvalidParameterValue", message)


@dataclass
class AttachState:
    state: str  # attaching | attached | detaching
    due: float | None  # monotonic time the state ends; None: never (a hung detach)
    since: float = field(default_factory=time.monotonic)


@dataclass
class PendingAssign:
    ip: str
    eni_id: str
    due: float


@dataclass
class GuestLink:
    """An ENI the guest OS of an instance sees as a NIC (device index >= 1)."""

    eni_id: str
    device_index: int
    mac: str
    subnet_id: str


class World:
    def __init__(self, account_id: str, region: str, timing: Timing) -> None:
        self.account_id = account_id
        self.region = region
        self.timing = timing
        self.attach: dict[str, AttachState] = {}
        self.pending: dict[str, PendingAssign] = {}  # by IP (v4 or v6)
        self.hang: set[str] = set()
        self.rng = secrets.SystemRandom()

    @property
    def backend(self) -> Any:
        return ec2_backends[self.account_id][self.region]

    def reset(self, timing: Timing) -> None:
        self.timing = timing
        self.attach.clear()
        self.pending.clear()
        self.hang.clear()
        ec2_backends.reset()

    # ---- transitions -------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for ip, move in list(self.pending.items()):
            if move.due <= now:
                del self.pending[ip]
                self._apply_assign(move)
        for eni_id, st in list(self.attach.items()):
            if st.due is not None and st.due <= now:
                self._complete(eni_id, st, now)

    def _complete(self, eni_id: str, st: AttachState, now: float) -> None:
        eni = self.backend.enis.get(eni_id)
        if eni is None or eni.instance is None:
            self.attach.pop(eni_id, None)
            return
        if st.state == "attaching":
            self.attach[eni_id] = AttachState("attached", None, since=now)
        elif st.state == "detaching":
            eni.instance.detach_eni(eni)
            self.attach.pop(eni_id, None)

    def attachment_status(self, eni_id: str) -> str:
        st = self.attach.get(eni_id)
        return st.state if st else "attached"

    def guest_links(self, now: float | None = None) -> dict[str, list[GuestLink]]:
        """instance id -> the secondary ENIs its guest sees as NICs.

        A NIC appears hotplug_delay seconds after the attachment became "attached" and stays
        while it is "detaching" (also while a hung detach waits for Force); it disappears when
        the detach completes.
        """
        now = time.monotonic() if now is None else now
        links: dict[str, list[GuestLink]] = {}
        for eni in self.backend.enis.values():
            if eni.instance is None or not eni.device_index:
                continue
            st = self.attach.get(eni.id)
            if st is not None and (
                st.state == "attaching"
                or (st.state == "attached" and now < st.since + self.timing.hotplug_delay)
            ):
                continue
            links.setdefault(eni.instance.id, []).append(
                GuestLink(eni.id, int(eni.device_index), eni.mac_address, eni.subnet.id)
            )
        return links

    # ---- ENI attachment ----------------------------------------------------------------

    def attach_eni(self, eni_id: str, instance_id: str, device_index: int) -> Any:
        eni = self.backend.get_network_interface(eni_id)
        instance = self.backend.get_instance(instance_id)
        if eni.instance is not None:
            raise client_error("InvalidNetworkInterface.InUse", f"Interface: [{eni.id}] in use.")
        if device_index in instance.nics:
            raise invalid_value(
                f"Instance '{instance.id}' already has an interface attached at device index"
                f" '{device_index}'."
            )
        if eni.availability_zone != instance_az(instance):
            raise client_error(
                "InvalidParameterCombination",
                "You may not attach a network interface to an instance if they are not in the"
                " same availability zone",
            )
        instance.attach_eni(eni, device_index)
        now = time.monotonic()
        if self.timing.attach_delay > 0:
            self.attach[eni.id] = AttachState("attaching", now + self.timing.attach_delay, now)
        else:
            self.attach[eni.id] = AttachState("attached", None, now)
        return eni.attachment

    def detach_eni(self, attachment_id: str, force: bool) -> None:
        eni = next(
            (e for e in self.backend.enis.values() if e.attachment_id == attachment_id), None
        )
        if eni is None:
            raise InvalidNetworkAttachmentIdError(attachment_id)
        if eni.device_index == 0:
            raise client_error(
                "OperationNotPermitted",
                "The network interface at device index 0 and networkCard index 0 cannot be"
                " detached.",
            )
        now = time.monotonic()
        st = self.attach.get(eni.id)
        if st is not None and st.state == "detaching":
            if force:
                st.due = min(st.due or math.inf, now + self.timing.force_detach_delay)
            return
        if force:
            due: float | None = now + self.timing.force_detach_delay
        elif eni.id in self.hang:
            due = None
        else:
            due = now + self.timing.detach_delay
        st = AttachState("detaching", due, now)
        self.attach[eni.id] = st
        if due is not None and due <= now:
            self._complete(eni.id, st, now)

    def set_hang(self, eni_id: str, hang: bool) -> None:
        self.backend.get_network_interface(eni_id)
        if hang:
            self.hang.add(eni_id)
            return
        self.hang.discard(eni_id)
        st = self.attach.get(eni_id)
        if st is not None and st.state == "detaching" and st.due is None:
            st.due = time.monotonic() + self.timing.detach_delay

    # ---- private IPv4 / IPv6 -----------------------------------------------------------

    def _holder(self, ip: str) -> tuple[Any, bool] | None:
        """The ENI an address is on (as DescribeNetworkInterfaces shows it), and if primary."""
        for eni in self.backend.enis.values():
            if ip in eni.ipv6_addresses:
                return eni, False
            for item in eni.private_ip_addresses:
                if item.get("PrivateIpAddress") == ip:
                    return eni, bool(item.get("Primary")) or ip == eni.private_ip_address
        return None

    def _owner_after_pending(self, ip: str) -> Any:
        move = self.pending.get(ip)
        if move is not None:
            return self.backend.enis.get(move.eni_id)
        holder = self._holder(ip)
        return holder[0] if holder else None

    def _schedule(self, ip: str, eni: Any) -> None:
        move = PendingAssign(ip, eni.id, time.monotonic() + self.timing.assign_delay)
        if self.timing.assign_delay > 0:
            self.pending[ip] = move
        else:
            self.pending.pop(ip, None)
            self._apply_assign(move)

    def _apply_assign(self, move: PendingAssign) -> None:
        target = self.backend.enis.get(move.eni_id)
        if target is None:
            return
        holder = self._holder(move.ip)
        if holder is not None and (holder[0] is target or holder[1]):
            return
        v6 = ":" in move.ip
        if holder is not None:
            old = holder[0]
            if v6:
                old.ipv6_addresses.remove(move.ip)
            else:
                old.private_ip_addresses[:] = [
                    i for i in old.private_ip_addresses if i.get("PrivateIpAddress") != move.ip
                ]
                for eip in self.backend.addresses:
                    if eip.eni is old and getattr(eip, "lab_private_ip", None) == move.ip:
                        eip.eni = target
        if v6:
            target.ipv6_addresses.append(move.ip)
        else:
            target.private_ip_addresses.append({"Primary": False, "PrivateIpAddress": move.ip})

    def assign_private_ips(
        self, eni_id: str, ips: list[str], count: int, allow_reassignment: bool
    ) -> list[str]:
        eni = self.backend.get_network_interface(eni_id)
        net = ipaddress.ip_network(eni.subnet.cidr_block)
        if ips and count:
            raise client_error(
                "InvalidParameterCombination",
                "Specify either PrivateIpAddresses or SecondaryPrivateIpAddressCount, not both.",
            )
        if count:
            ips = self._free_ipv4(net, count)
        for ip in ips:
            self._check_in_subnet(ip, net, eni)
            owner = self._owner_after_pending(ip)
            if owner is None or owner is eni:
                continue
            holder = self._holder(ip)
            if holder is not None and holder[1]:
                raise invalid_value(
                    f"Address {ip} is the primary private IP address of {holder[0].id} and"
                    " cannot be reassigned."
                )
            if not allow_reassignment:
                raise invalid_value(
                    f"Address {ip} is assigned to another network interface ({owner.id});"
                    " use AllowReassignment to move it."
                )
        for ip in ips:
            if self._owner_after_pending(ip) is not eni:
                self._schedule(ip, eni)
        return ips

    def _check_in_subnet(self, ip: str, net: Any, eni: Any) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise invalid_value(f"Invalid value '{ip}' for IP address.") from None
        if addr not in net:
            raise invalid_value(
                f"Address {ip} does not fall within the subnet's address range"
                f" ({net} of {eni.subnet.id})."
            )
        if addr.version == 4 and (
            int(addr) - int(net.network_address) < 4 or addr == net.broadcast_address
        ):
            raise invalid_value(f"Address {ip} is reserved by AWS in subnet {eni.subnet.id}.")

    def _free_ipv4(self, net: Any, count: int) -> list[str]:
        return self._first_free((str(host) for host in reversed(list(net.hosts())[3:])), count)

    def free_ipv4(self, cidr: str, first_host: int, count: int) -> list[str]:
        """The `count` lowest free addresses of cidr from host number first_host on."""
        net = ipaddress.ip_network(cidr)
        hosts = range(first_host, net.num_addresses - 1)
        return self._first_free((str(net.network_address + number) for number in hosts), count)

    def _first_free(self, candidates: Iterable[str], count: int) -> list[str]:
        """The first `count` of candidates that no ENI holds (or is about to)."""
        found: list[str] = []
        for ip in candidates:
            if self._owner_after_pending(ip) is None:
                found.append(ip)
                if len(found) == count:
                    return found
        raise client_error(
            "InsufficientFreeAddressesInSubnet", "The subnet has no free addresses left."
        )

    def unassign_private_ips(self, eni_id: str, ips: list[str]) -> None:
        eni = self.backend.get_network_interface(eni_id)
        for ip in ips:
            holder = self._holder(ip)
            pending = self.pending.get(ip)
            on_this = holder is not None and holder[0] is eni
            if not on_this and not (pending and pending.eni_id == eni.id):
                raise invalid_value(
                    f"Some of the specified addresses are not assigned to interface {eni.id}"
                )
            if on_this and holder is not None and holder[1]:
                raise invalid_value(f"The primary private IP address {ip} cannot be unassigned.")
        for ip in ips:
            if ip in self.pending and self.pending[ip].eni_id == eni.id:
                del self.pending[ip]
            eni.private_ip_addresses[:] = [
                i for i in eni.private_ip_addresses if i.get("PrivateIpAddress") != ip
            ]
            for eip in self.backend.addresses:
                if eip.eni is eni and getattr(eip, "lab_private_ip", None) == ip:
                    self.backend.disassociate_address(address=eip.public_ip)

    def assign_ipv6(self, eni_id: str, ips: list[str], count: int) -> list[str]:
        eni = self.backend.get_network_interface(eni_id)
        assocs = list(eni.subnet.ipv6_cidr_block_associations.values())
        if not assocs:
            raise invalid_value(f"Subnet {eni.subnet.id} has no IPv6 CIDR block.")
        net = ipaddress.ip_network(assocs[0]["ipv6CidrBlock"])
        ips = [str(ipaddress.ip_address(ip)) for ip in ips]
        while len(ips) < count:
            candidate = str(net.network_address + self.rng.randrange(16, 2**32))
            if self._owner_after_pending(candidate) is None and candidate not in ips:
                ips.append(candidate)
        for ip in ips:
            self._check_in_subnet(ip, net, eni)
            owner = self._owner_after_pending(ip)
            if owner is not None and owner is not eni:
                # AWS cannot reassign IPv6 addresses: unassign first, then assign.
                raise invalid_value(
                    f"Address {ip} is in use by another network interface ({owner.id})."
                )
        for ip in ips:
            if self._owner_after_pending(ip) is None:
                self._schedule(ip, eni)
        return ips

    def unassign_ipv6(self, eni_id: str, ips: list[str]) -> list[str]:
        eni = self.backend.get_network_interface(eni_id)
        ips = [str(ipaddress.ip_address(ip)) for ip in ips]
        done = []
        for ip in ips:
            pending = self.pending.get(ip)
            if pending and pending.eni_id == eni.id:
                del self.pending[ip]
                done.append(ip)
            elif ip in eni.ipv6_addresses:
                eni.ipv6_addresses.remove(ip)
                done.append(ip)
        return done

    # ---- Elastic IPs -------------------------------------------------------------------

    def associate_address(
        self,
        *,
        allocation_id: str | None,
        public_ip: str | None,
        instance_id: str | None,
        eni_id: str | None,
        private_ip: str | None,
        allow_reassociation: bool,
    ) -> str:
        b = self.backend
        if allocation_id:
            eip = b.address_by_allocation([allocation_id])[0]
        elif public_ip:
            eip = b.address_by_ip([public_ip])[0]
        else:
            raise client_error("MissingParameter", "Either AllocationId or PublicIp is required.")
        if eni_id:
            eni = b.get_network_interface(eni_id)
        elif instance_id:
            eni = b.get_instance(instance_id).nics[0]
        else:
            raise client_error(
                "MissingParameter", "Either InstanceId or NetworkInterfaceId is required."
            )
        private_ip = private_ip or eni.private_ip_address
        holder = self._holder(private_ip) if private_ip else None
        if holder is None or holder[0] is not eni:
            raise invalid_value(f"The private IP address {private_ip} is not assigned to {eni.id}.")
        if eip.eni is not None:
            if eip.eni is eni and eip_private_ip(eip) == private_ip:
                return str(eip.association_id)
            if not allow_reassociation:
                raise ResourceAlreadyAssociatedError(eip.allocation_id or eip.public_ip)
            b.disassociate_address(address=eip.public_ip)
        for other in b.addresses:
            if other is not eip and other.eni is eni and eip_private_ip(other) == private_ip:
                b.disassociate_address(address=other.public_ip)
        eip.eni = eni
        eip.instance = None
        eip.lab_private_ip = private_ip
        if private_ip == eni.private_ip_address:
            eni.public_ip = eip.public_ip
        eip.association_id = random_eip_association_id()
        return str(eip.association_id)

    # ---- DryRun ------------------------------------------------------------------------

    def dry_run(self, action: str, params: Mapping[str, str]) -> EC2ClientError:
        """The error a DryRun call gets: NotFound for a missing referenced id, else DryRunOperation.

        Nothing is executed. Referenced ids are recognised by parameter name, for every action.
        """
        checks = self._id_checks(action)
        for key, value in params.items():
            base = _LIST_SUFFIX.sub("", key)
            check = checks.get(base)
            if check is not None and value:
                try:
                    check(value)
                except EC2ClientError as err:
                    return err
        return DryRunClientError()

    def _id_checks(self, action: str) -> dict[str, Callable[[str], object]]:
        b = self.backend

        def attachment(value: str) -> object:
            if not any(e.attachment_id == value for e in b.enis.values()):
                raise InvalidNetworkAttachmentIdError(value)
            return value

        def group(value: str) -> object:
            if b.get_security_group_from_id(value) is None:
                raise InvalidSecurityGroupNotFoundError(value)
            return value

        def association(value: str) -> object:
            if "Address" in action and not any(a.association_id == value for a in b.addresses):
                raise InvalidAssociationIdError(value)
            return value

        def public_ip(value: str) -> object:
            if not any(a.public_ip == value for a in b.addresses):
                raise InvalidAddressError(value)
            return value

        def gateway(value: str) -> object:
            return b.get_internet_gateway(value) if value.startswith("igw-") else value

        return {
            "RouteTableId": b.get_route_table,
            "NetworkInterfaceId": b.get_network_interface,
            "InstanceId": b.get_instance,
            "AllocationId": lambda v: b.address_by_allocation([v]),
            "SubnetId": b.get_subnet,
            "VpcId": b.get_vpc,
            "AttachmentId": attachment,
            "GroupId": group,
            "SecurityGroupId": group,
            "AssociationId": association,
            "PublicIp": public_ip,
            "GatewayId": gateway,
        }


_LIST_SUFFIX = re.compile(r"\.\d+$")

_world: World | None = None
_installed = False


def world() -> World:
    if _world is None:
        raise RuntimeError("fidelity.install() has not run")
    return _world


def eip_private_ip(eip: Any) -> str | None:
    ip = getattr(eip, "lab_private_ip", None)
    if ip is None and eip.eni is not None:
        return str(eip.eni.private_ip_address)
    return ip


def _strings(values: Iterable[Any]) -> list[str]:
    return [v if isinstance(v, str) else v.get("Ipv6Address", "") for v in values]


def install(new_world: World) -> None:
    """Apply the patches (once per process) and make new_world the one they consult."""
    global _world, _installed  # noqa: PLW0603 - one world per server process
    _world = new_world
    if _installed:
        return
    _installed = True
    # a. DryRun is handled for every action by the lab server (World.dry_run), never by moto.
    _patch_routes()  # b
    _patch_private_ips()  # c
    _patch_elastic_ips()  # d
    _patch_attachments()  # e (f, hotplug, follows from World.guest_links)
    _patch_eni_filters()
    _patch_source_dest_check()
    _patch_instance_eip_association()


def _replace(owner: Any, name: str, value: Any) -> None:
    """Monkeypatch owner.name (moto is typed; replacing its methods here is deliberate)."""
    setattr(owner, name, value)


# ---- b. Routes --------------------------------------------------------------------------------
# AWS: a route to an ENI that is attached to an instance shows InstanceId and InstanceOwnerId as
# well; a route created with InstanceId shows the instance's primary ENI; a route to a detached
# ENI is a "blackhole". CreateRoute on an existing destination fails with RouteAlreadyExists,
# whatever the target.
# moto: InstanceId only when the route was created with one, no InstanceOwnerId, always "active",
# and CreateRoute with NetworkInterfaceId skips the duplicate check (it silently replaces the
# route). ReplaceRoute on a missing route already fails with InvalidParameterValue in moto, as on
# AWS (proven by a test, not patched).


def _route_instance(route: Any) -> Any:
    if route.instance is not None:
        return route.instance
    if route.interface is not None:
        return route.interface.instance
    return None


def _route_instance_id(route: Any) -> str | None:
    instance = _route_instance(route)
    return None if instance is None else str(instance.id)


def _route_instance_owner_id(route: Any) -> str | None:
    instance = _route_instance(route)
    return None if instance is None else str(instance.owner_id)


def _route_interface_id(route: Any) -> str | None:
    if route.interface is not None:
        return str(route.interface.id)
    if route.instance is not None and 0 in route.instance.nics:
        return str(route.instance.nics[0].id)
    return None


def _route_state(route: Any) -> str:
    if route.interface is not None and route.interface.instance is None:
        return "blackhole"
    return "active"


def _patch_routes() -> None:
    _replace(Route, "instance_id", property(_route_instance_id))
    _replace(Route, "instance_owner_id", property(_route_instance_owner_id))
    _replace(Route, "network_interface_id", property(_route_interface_id))
    _replace(Route, "state", property(_route_state))
    original = RouteBackend.create_route

    def create_route(
        self: Any,
        route_table_id: str,
        destination_cidr_block: str | None,
        destination_ipv6_cidr_block: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if not kwargs.get("local"):
            table = self.get_route_table(route_table_id)
            wanted = destination_cidr_block or destination_ipv6_cidr_block
            for route in table._routes.values():  # moto keeps a table's routes here
                existing = route.destination_cidr_block or route.destination_ipv6_cidr_block
                if wanted and existing and _same_network(wanted, existing):
                    raise RouteAlreadyExistsError(wanted)
        return original(
            self,
            route_table_id,
            destination_cidr_block,
            destination_ipv6_cidr_block,
            *args,
            **kwargs,
        )

    _replace(RouteBackend, "create_route", create_route)


def _same_network(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


# ---- c. AssignPrivateIpAddresses / IPv6 ---------------------------------------------------------
# AWS: AllowReassignment=True moves an address from the ENI holding it; without it a taken address
# fails with InvalidParameterValue. The assignment completes asynchronously. An address outside
# the subnet fails. IPv6 addresses cannot be reassigned at all: unassign, then assign.
# moto: ignores AllowReassignment (the address ends up on two ENIs), accepts any address, applies
# at once, and UnassignPrivateIpAddresses silently ignores addresses the ENI does not have.


def _assign_private_ip_addresses(self: Any) -> ActionResult:
    eni_id = self._get_param("NetworkInterfaceId")
    ips = world().assign_private_ips(
        eni_id,
        list(self._get_param("PrivateIpAddresses", [])),
        self._get_int_param("SecondaryPrivateIpAddressCount", 0),
        self._get_bool_param("AllowReassignment", False),
    )
    return ActionResult(
        {
            "NetworkInterfaceId": eni_id,
            "AssignedPrivateIpAddresses": [{"PrivateIpAddress": ip} for ip in ips],
        }
    )


def _unassign_private_ip_addresses(self: Any) -> EmptyResult:
    world().unassign_private_ips(
        self._get_param("NetworkInterfaceId"), list(self._get_param("PrivateIpAddresses", []))
    )
    return EmptyResult()


def _assign_ipv6_addresses(self: Any) -> ActionResult:
    eni_id = self._get_param("NetworkInterfaceId")
    ips = world().assign_ipv6(
        eni_id,
        _strings(self._get_param("Ipv6Addresses", [])),
        self._get_int_param("Ipv6AddressCount", 0),
    )
    return ActionResult({"NetworkInterfaceId": eni_id, "AssignedIpv6Addresses": ips})


def _unassign_ipv6_addresses(self: Any) -> ActionResult:
    eni_id = self._get_param("NetworkInterfaceId")
    done = world().unassign_ipv6(eni_id, _strings(self._get_param("Ipv6Addresses", [])))
    return ActionResult({"NetworkInterfaceId": eni_id, "UnassignedIpv6Addresses": done})


def _patch_private_ips() -> None:
    _replace(ElasticNetworkInterfaces, "assign_private_ip_addresses", _assign_private_ip_addresses)
    _replace(
        ElasticNetworkInterfaces, "unassign_private_ip_addresses", _unassign_private_ip_addresses
    )
    _replace(ElasticNetworkInterfaces, "assign_ipv6_addresses", _assign_ipv6_addresses)
    _replace(ElasticNetworkInterfaces, "unassign_ipv6_addresses", _unassign_ipv6_addresses)


# ---- d. Elastic IPs ----------------------------------------------------------------------------
# AWS: AssociateAddress with NetworkInterfaceId + PrivateIpAddress binds the EIP to that private
# IP; DescribeAddresses shows NetworkInterfaceId, PrivateIpAddress, AssociationId and the
# InstanceId of the instance the ENI is attached to; associating an EIP that is already
# associated needs AllowReassociation, else Resource.AlreadyAssociated; when a secondary private
# IP moves to another ENI, its EIP moves with it (World._apply_assign).
# moto: ignores PrivateIpAddress (always the primary), shows InstanceId only for instance
# associations, shows "" instead of leaving fields out, and re-associates to the same ENI
# without the flag.


def _associate_address(self: Any) -> ActionResult:
    self.error_on_dryrun()
    association_id = world().associate_address(
        allocation_id=self._get_param("AllocationId"),
        public_ip=self._get_param("PublicIp"),
        instance_id=self._get_param("InstanceId"),
        eni_id=self._get_param("NetworkInterfaceId"),
        private_ip=self._get_param("PrivateIpAddress"),
        allow_reassociation=self._get_bool_param("AllowReassociation", False),
    )
    return ActionResult({"AssociationId": association_id})


def _eip_instance_id(eip: Any) -> str | None:
    if eip.eni is not None and eip.eni.instance is not None:
        return str(eip.eni.instance.id)
    return None


def _eip_interface_id(eip: Any) -> str | None:
    return None if eip.eni is None else str(eip.eni.id)


def _eip_interface_owner(eip: Any) -> str | None:
    return None if eip.eni is None else str(eip.eni.owner_id)


def _patch_elastic_ips() -> None:
    _replace(ElasticIPAddresses, "associate_address", _associate_address)
    _replace(ElasticAddress, "instance_id", property(_eip_instance_id))
    _replace(ElasticAddress, "network_interface_id", property(_eip_interface_id))
    _replace(ElasticAddress, "network_interface_owner_id", property(_eip_interface_owner))
    _replace(ElasticAddress, "private_ip_address", property(eip_private_ip))
    original_disassociate = ElasticAddressBackend.disassociate_address
    original_filter = ElasticAddress.get_filter_value

    def disassociate_address(
        self: Any, address: str | None = None, association_id: str | None = None
    ) -> None:
        if address:
            eip = self.address_by_ip([address])[0]
        else:
            eip = self.address_by_association([association_id])[0]
        if eip.eni is not None and eip.eni.public_ip == eip.public_ip:
            eip.eni.public_ip = None
        eip.lab_private_ip = None
        eip.eni = None  # keeps moto from clearing the public IP of another EIP on that ENI
        original_disassociate(self, address=eip.public_ip)

    def eip_filter(self: Any, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name == "private-ip-address":
            return eip_private_ip(self)
        if filter_name == "instance-id":
            return _eip_instance_id(self)
        return original_filter(self, filter_name, method_name)

    _replace(ElasticAddressBackend, "disassociate_address", disassociate_address)
    _replace(ElasticAddress, "get_filter_value", eip_filter)


# ---- e. ENI attach / detach --------------------------------------------------------------------
# AWS: AttachNetworkInterface answers at once; the attachment is "attaching" for a while, then
# "attached". DetachNetworkInterface makes it "detaching"; seconds later the ENI is "available".
# An in-use ENI cannot be attached (InvalidNetworkInterface.InUse) nor deleted, a used device
# index cannot be reused (InvalidParameterValue), the ENI and instance must share the AZ
# (InvalidParameterCombination), device 0 cannot be detached (OperationNotPermitted), and
# Force=True cuts a stuck detach short.
# moto: attach/detach are instantaneous, Attachment.Status is always "attached", Force is
# ignored and none of the checks exist.


def _attachment(eni: Any) -> Any:
    if not eni.attachment_id:
        return None
    result = Attachment(eni)
    result.status = world().attachment_status(eni.id)
    return result


def _attach_network_interface(self: Any) -> ActionResult:
    self.error_on_dryrun()
    attachment = world().attach_eni(
        self._get_param("NetworkInterfaceId"),
        self._get_param("InstanceId"),
        int(self._get_param("DeviceIndex")),
    )
    return ActionResult(
        {
            "AttachmentId": attachment.attachment_id,
            "NetworkCardIndex": attachment.network_card_index,
        }
    )


def _detach_network_interface(self: Any) -> EmptyResult:
    self.error_on_dryrun()
    world().detach_eni(self._get_param("AttachmentId"), self._get_bool_param("Force", False))
    return EmptyResult()


def _delete_network_interface(self: Any) -> EmptyResult:
    self.error_on_dryrun()
    eni = self.ec2_backend.get_network_interface(self._get_param("NetworkInterfaceId"))
    if eni.instance is not None:
        raise client_error(
            "InvalidNetworkInterface.InUse", f"Network interface '{eni.id}' is currently in use."
        )
    self.ec2_backend.delete_network_interface(eni.id)
    return EmptyResult()


def _patch_attachments() -> None:
    _replace(NetworkInterface, "attachment", property(_attachment))
    _replace(ElasticNetworkInterfaces, "attach_network_interface", _attach_network_interface)
    _replace(ElasticNetworkInterfaces, "detach_network_interface", _detach_network_interface)
    _replace(ElasticNetworkInterfaces, "delete_network_interface", _delete_network_interface)


# ---- DescribeNetworkInterfaces filters ---------------------------------------------------------
# AWS: addresses.private-ip-address / private-ip-address match any private IPv4 of the ENI,
# ipv6-addresses.ipv6-address any of its IPv6 addresses. moto compares the primary address only
# and lacks the IPv6, status, MAC and attachment filters.
_ENI_FILTERS: dict[str, Callable[[Any], Any]] = {
    "addresses.private-ip-address": lambda eni: [
        i["PrivateIpAddress"] for i in eni.private_ip_addresses
    ],
    "private-ip-address": lambda eni: [i["PrivateIpAddress"] for i in eni.private_ip_addresses],
    "ipv6-addresses.ipv6-address": lambda eni: list(eni.ipv6_addresses),
    "status": lambda eni: eni.status,
    "mac-address": lambda eni: eni.mac_address,
    "attachment.status": lambda eni: (
        world().attachment_status(eni.id) if eni.attachment_id else None
    ),
    "attachment.device-index": lambda eni: (
        None if eni.device_index is None else str(eni.device_index)
    ),
}


def _patch_eni_filters() -> None:
    original = NetworkInterface.get_filter_value

    def eni_filter(self: Any, filter_name: str, method_name: str | None = None) -> Any:
        pick = _ENI_FILTERS.get(filter_name)
        if pick is not None:
            return pick(self)
        return original(self, filter_name, method_name)

    _replace(NetworkInterface, "get_filter_value", eni_filter)


# ---- source/destination check ------------------------------------------------------------------
# AWS: an instance's SourceDestCheck is its primary ENI's; changing either changes both.
# moto: keeps two unrelated flags, so ModifyNetworkInterfaceAttribute on the primary ENI does not
# show in DescribeInstances / DescribeInstanceAttribute, and vice versa.


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _get_source_dest_check(instance: Any) -> bool:
    nics = instance.__dict__.get("nics") or {}
    if 0 in nics:
        return _truthy(nics[0].source_dest_check)
    return bool(instance.__dict__.get("lab_source_dest_check", True))


def _set_source_dest_check(instance: Any, value: Any) -> None:
    flag = _truthy(value)
    nics = instance.__dict__.get("nics") or {}
    if 0 in nics:
        nics[0].source_dest_check = flag
    instance.__dict__["lab_source_dest_check"] = flag


def _patch_source_dest_check() -> None:
    _replace(
        Instance, "source_dest_check", property(_get_source_dest_check, _set_source_dest_check)
    )


# ---- EIP on a secondary private IP in DescribeInstances ---------------------------------------
# AWS: DescribeInstances shows NetworkInterfaces[].PrivateIpAddresses[].Association (PublicIp,
# IpOwnerId, PublicDnsName) for every private IP that has an Elastic IP, secondary ones included
# (awseip's monitor greps for it). moto: only for the primary private IP.


def _patch_instance_eip_association() -> None:
    original = NetworkInterface.__dict__["instance_private_ip_address_list"].fget

    def instance_private_ip_address_list(self: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = original(self)
        for item in items:
            if item.get("Association"):
                continue
            for eip in self.ec2_backend.addresses:
                if eip.eni is self and eip_private_ip(eip) == item.get("PrivateIpAddress"):
                    item["Association"] = {
                        "publicIp": eip.public_ip,
                        "ipOwnerId": self.ec2_backend.account_id,
                        "publicDnsName": "",
                    }
        return items

    _replace(
        NetworkInterface,
        "instance_private_ip_address_list",
        property(instance_private_ip_address_list),
    )
