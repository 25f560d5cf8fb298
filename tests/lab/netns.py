"""Network namespaces of the lab: names, creation, removal, the stale sweeper, and setns.

Every namespace the lab creates is called ``ipf-<creator pid>-<lab id>-<role>``. The creator is
the process that owns the Lab (pytest, ``python -m lab up``); when it is gone, ``sweep()`` may
delete the namespace. Nothing here ever changes the host (root) network namespace: links are
created with ``ip -n <lab namespace>`` and their peers are moved straight into another lab
namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

PREFIX = "ipf-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_NAME_RE = re.compile(r"^ipf-(\d+)-([0-9a-z]+)-[0-9a-z-]+$")


class IpError(RuntimeError):
    """An `ip` command failed."""


def lab_prefix(pid: int, lab_id: str) -> str:
    return f"{PREFIX}{pid}-{lab_id}"


def ip(*args: str, netns: str | None = None, stdin: str | None = None) -> str:
    """Run `ip [-n netns] args...`; return stdout, raise IpError on failure."""
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    argv += list(args)
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise IpError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    """Run several `ip` commands in one process (`ip -batch -`), stopping at the first error."""
    if commands:
        ip("-batch", "-", netns=netns, stdin="\n".join(commands) + "\n")


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def lab_namespaces(prefix: str) -> list[str]:
    return [name for name in list_netns() if name.startswith(prefix + "-")]


def delete_netns(names: Sequence[str]) -> list[str]:
    """Delete namespaces, ignoring ones already gone; return the names that could not be deleted."""
    failed = []
    for name in names:
        if not (NETNS_DIR / name).exists():
            continue
        proc = subprocess.run(
            ["ip", "netns", "delete", name], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0 and (NETNS_DIR / name).exists():
            failed.append(name)
    return failed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_namespaces() -> list[str]:
    """Lab namespaces whose creator process no longer exists."""
    stale = []
    for name in list_netns():
        match = _NAME_RE.match(name)
        if match and not pid_alive(int(match.group(1))):
            stale.append(name)
    return stale


def sweep() -> list[str]:
    """Delete stale lab namespaces; return their names."""
    stale = stale_namespaces()
    delete_netns(stale)
    return stale


_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace behind fd (Python 3.11 lacks os.setns)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the body with the calling thread inside netns, then switch back.

    Only sockets created in the body live in netns; they stay there after we switch back.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


@contextlib.contextmanager
def scratch(role: str, commands: Sequence[str] = ()) -> Iterator[str]:
    """A namespace of its own for one test, named as the lab's (so the sweeper removes it if its
    creator dies), set up by ``commands`` (`ip -batch` lines run inside it), deleted after."""
    name = f"{lab_prefix(os.getpid(), os.urandom(3).hex())}-{role}"
    ip("netns", "add", name)
    try:
        ip_batch(["link set lo up", *commands], netns=name)
        yield name
    finally:
        delete_netns([name])
