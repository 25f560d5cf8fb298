"""The agent's log, configured the way ocf-shellfuncs reads HA_LOGFACILITY, HA_LOGFILE, HA_debug.

A small logger of its own rather than the ``logging`` package: importing that costs more than the
whole syntax check of an agent. Each record is one ``write`` (or one datagram), so records of
parallel agents never interleave in a shared file.
The syslog socket is connected when the first record reaches it.
"""

from __future__ import annotations

import os
import sys
import time

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
        if self._fd is not None:
            os.write(self._fd, data)

    def _send(self, data: bytes) -> None:
        import socket

        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(self.where)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._sock.send(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Log:
    """One named logger: ``debug/info/warning/error(msg, *args)``, %-formatted like ``logging``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.level = INFO
        self.tag = name
        self.targets: list[Target] = []

    def configure(self, tag: str, env: Mapping[str, str]) -> Log:
        """Send records to the targets HA_LOGFACILITY and HA_LOGFILE name (stderr when neither
        can be used), at DEBUG when HA_debug is a positive number; replaces earlier targets."""
        self.close()
        self.tag = tag
        self.level = DEBUG if _debug_level(env.get("HA_debug")) > 0 else INFO
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
                pass  # not writable: the other targets, or stderr
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
        for target in self.targets:
            try:  # noqa: SIM105 - contextlib costs an import of functools and collections
                target.emit(level, self.tag, message)
            except OSError:
                pass  # a full disk or a gone syslog must not change the action's result

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


def _append(path: str) -> int:
    """``path`` opened for appending (created if missing)."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _debug_level(raw: Optional[str]) -> float:
    """HA_debug is a number; anything else means 0."""
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
