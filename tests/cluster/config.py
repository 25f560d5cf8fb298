"""The files of a cluster node, as text: corosync.conf, /etc/hosts (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    name: str
    nodeid: int
    ip: str


def corosync_conf(
    cluster_name: str,
    members: Sequence[Member],
    *,
    token_ms: int = 3000,
    logfile: str = "/var/log/corosync/corosync.log",
) -> str:
    """corosync 3 configuration: knet (encrypted, authenticated), votequorum with two_node."""
    nodes = "".join(
        f"    node {{\n"
        f"        ring0_addr: {m.ip}\n"
        f"        name: {m.name}\n"
        f"        nodeid: {m.nodeid}\n"
        f"    }}\n"
        for m in members
    )
    two_node = "    two_node: 1\n" if len(members) == 2 else ""
    return (
        "# Written by the ipfailover test lab (tests/cluster).\n"
        "totem {\n"
        "    version: 2\n"
        f"    cluster_name: {cluster_name}\n"
        "    transport: knet\n"
        "    crypto_cipher: aes256\n"
        "    crypto_hash: sha256\n"
        f"    token: {token_ms}\n"
        "}\n"
        "nodelist {\n"
        f"{nodes}"
        "}\n"
        "quorum {\n"
        "    provider: corosync_votequorum\n"
        f"{two_node}"
        "}\n"
        "logging {\n"
        "    to_logfile: yes\n"
        f"    logfile: {logfile}\n"
        "    to_syslog: no\n"
        "    to_stderr: no\n"
        "    timestamp: on\n"
        "}\n"
    )


def hosts_file(members: Sequence[Member]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{m.ip}\t{m.name}" for m in members]
    return "\n".join(lines) + "\n"
