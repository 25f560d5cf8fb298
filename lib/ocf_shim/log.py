"""The agent's log, configured the way ocf-shellfuncs reads HA_LOGFACILITY, HA_LOGFILE, HA_debug.

A small logger of its own rather than the ``logging`` package: importing that costs more than the
whole syntax check of an agent. Each record is one ``write`` (or one datagram), so records of
parallel agents never interleave in a shared file.
The syslog socket is connected when the first record reaches it.

Debug records are written as Pacemaker asks (``debug_enabled``): ``HA_debug`` as ocf-shellfuncs'
``ha_debug`` reads it, so any value but ``0`` turns them on, ``no`` and ``false`` included;
when ``HA_debug`` is unset or empty, ``PCMK_debug`` as Pacemaker reads it.

A record is never lost silently and a write never blocks, so logging cannot hold an action past
Pacemaker's timeout (the watchdog is armed only once the parameters are known):

- syslog is connected and written without blocking: a full queue (EAGAIN), a record larger than
  a datagram (EMSGSIZE) or syslog down (ENOENT, ECONNREFUSED) fails that record at once. A stream
  ``/dev/log`` (EPROTOTYPE on a datagram connect) is written as a stream, each record ended by a
  NUL, as glibc's ``syslog()`` frames it.
- ``HA_LOGFILE`` is opened with O_NONBLOCK, kept so: a FIFO nobody reads fails to open (ENXIO),
  a full one fails the record (EAGAIN). Only a regular file, a FIFO or a character device
  (``/dev/null``, a terminal) is used; a directory, a block device or a socket is not.
- A record that no target took goes to stderr. stderr itself is written as it is: it is where
  Pacemaker reads the exit reason, and pacemaker-execd drains it.

Every record, whoever wrote its text (a library's exception included), has the user information
of any URL in it hidden (``text.hide_userinfo``): a proxy's password reaches no target.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from .errors import parse_bool
from .text import hide_userinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Optional

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}
_SEVERITY = {DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3}  # syslog's debug, info, warning, err
SYSLOG_ADDRESS = "/dev/log"
FACILITIES = {
    **{
        name: code
        for code, name in enumerate(
            ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron"]
        )
    },
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
EXECD = "pacemaker-execd"  # the daemon that runs resource agents, as PCMK_debug names it


class Target:
    """Where records go: a file (appended to), stderr, or a syslog socket."""

    def __init__(
        self,
        kind: str,
        where: str = "",
        facility: int = FACILITIES["daemon"],
        fd: Optional[int] = None,
    ) -> None:
        self.kind = kind  # "file" | "stderr" | "syslog"
        self.where = where
        self.facility = facility
        self._fd = fd  # the open file (kind file)
        self._sock: Optional[socket.socket] = None

    def emit(self, level: int, tag: str, message: str) -> None:
        if self.kind == "syslog":
            line = f"<{self.facility * 8 + _SEVERITY[level]}>{tag}: {LEVEL_NAMES[level]}: {message}"
            self._send(line.encode("utf-8", "replace") + b"\0")
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = f"{stamp},{int(now * 1000) % 1000:03d} {tag}: {LEVEL_NAMES[level]}: {message}\n"
        if self.kind == "stderr":
            sys.stderr.write(line)
            sys.stderr.flush()
            return
        data = line.encode("utf-8", "replace")
        if self._fd is not None and os.write(self._fd, data) != len(data):
            raise BlockingIOError(f"{self.where}: only part of a record could be written")

    def _send(self, data: bytes) -> None:
        """One record to syslog, or OSError at once; the next record reconnects after an error
        (syslog restarted), and after a stream took part of a record (its frame is cut)."""
        if self._sock is None:
            self._sock = _connect(self.where)
        try:
            sent = self._sock.send(data)
        except OSError:
            self._close_socket()
            raise
        if sent != len(data):
            self._close_socket()
            raise BlockingIOError(f"{self.where}: only part of a record could be sent")

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._close_socket()


class Log:
    """One named logger: ``debug/info/warning/error(msg, *args)``, %-formatted like ``logging``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.level = INFO
        self.tag = name
        self.targets: list[Target] = []

    def configure(self, tag: str, env: Mapping[str, str]) -> Log:
        """Send records to the targets HA_LOGFACILITY and HA_LOGFILE name (stderr when neither
        can be used), at DEBUG when ``debug_enabled(env)``; replaces earlier targets."""
        self.close()
        self.tag = tag
        self.level = DEBUG if debug_enabled(env) else INFO
        facility = env.get("HA_LOGFACILITY", "").strip().lower()
        if facility and facility != "none" and os.path.exists(SYSLOG_ADDRESS):
            self.targets.append(
                Target("syslog", SYSLOG_ADDRESS, FACILITIES.get(facility, FACILITIES["daemon"]))
            )
        logfile = env.get("HA_LOGFILE", "")
        if logfile:
            try:  # noqa: SIM105 - contextlib costs an import of functools and collections
                self.targets.append(Target("file", logfile, fd=_append(logfile)))
            except OSError:
                pass  # not writable, or would block: the other targets, or stderr
        if not self.targets:
            self.targets.append(Target("stderr"))
        return self

    def close(self) -> None:
        for target in self.targets:
            target.close()
        self.targets = []

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        if level < self.level:
            return
        message = msg % args if args else msg
        if exc_info:
            import traceback

            message = f"{message}\n{traceback.format_exc().rstrip()}"
        message = hide_userinfo(message)  # a proxy's password, whoever wrote the message
        delivered = False
        for target in self.targets:
            try:
                target.emit(level, self.tag, message)
                delivered = True
            except OSError:
                pass  # a full disk or queue, a gone syslog must not change the action's result
        if not delivered and all(target.kind != "stderr" for target in self.targets):
            try:  # noqa: SIM105 - contextlib costs an import of functools and collections
                Target("stderr").emit(level, self.tag, message)  # never lost silently
            except OSError:
                pass

    def debug(self, msg: str, *args: object, exc_info: bool = False) -> None:
        self.log(DEBUG, msg, *args, exc_info=exc_info)

    def info(self, msg: str, *args: object) -> None:
        self.log(INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.log(WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.log(ERROR, msg, *args)


_LOGS: dict[str, Log] = {}


def get_log(name: str) -> Log:
    """The logger ``name``; the same object every time, so modules may hold it from import."""
    log = _LOGS.get(name)
    if log is None:
        log = _LOGS[name] = Log(name)
    return log


def debug_enabled(env: Mapping[str, str]) -> bool:
    """Whether Pacemaker asks for debug records.

    ``HA_debug`` as ocf-shellfuncs' ``ha_debug`` reads it: any value but ``0`` is on (``no`` too).
    When it is unset or empty, ``PCMK_debug`` as Pacemaker's ``pcmk__env_option_enabled`` reads
    it for pacemaker-execd: a boolean (yes/true/on/y/1 or no/false/off/n/0, any case), else a
    list of daemons (Pacemaker separates it by commas; spaces are taken too) that names
    ``pacemaker-execd``. Pacemaker itself sets both (pacemakerd from its configuration file,
    ``crm_resource --force-*`` from its verbosity)."""
    ha_debug = env.get("HA_debug", "")
    if ha_debug:
        return ha_debug != "0"
    pcmk_debug = env.get("PCMK_debug", "")
    try:
        return parse_bool(pcmk_debug)
    except ValueError:
        return EXECD in pcmk_debug.replace(",", " ").split()


def _append(path: str) -> int:
    """``path`` opened for appending (created if missing) without ever blocking: see the module's
    docstring. OSError when it cannot be opened so, or is not a file, FIFO or character device."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        os.close(fd)
        raise OSError(f"{path}: not a file, FIFO or character device")
    return fd


def _connect(address: str) -> socket.socket:
    """A non-blocking socket connected to syslog at ``address``: a datagram socket, or a stream
    when syslog listens on one (syslog-ng's ``unix-stream``)."""
    import errno
    import socket

    try:
        return _connected(address, socket.SOCK_DGRAM)
    except OSError as err:
        if err.errno != errno.EPROTOTYPE:
            raise
    return _connected(address, socket.SOCK_STREAM)


def _connected(address: str, kind: int) -> socket.socket:
    import socket

    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.setblocking(False)  # connect and send fail with EAGAIN rather than wait
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock
