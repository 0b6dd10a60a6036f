"""The systemd notify protocol (``sd_notify``), spoken directly.

systemd gives a ``Type=notify`` service the address of a datagram socket in
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading
``@``); the service sends newline-separated ``KEY=value`` assignments to
it: ``READY=1`` once it serves, ``STATUS=...`` for ``systemctl status``,
``RELOADING=1`` / ``STOPPING=1`` around reloads and shutdown, and
``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` when ``WatchdogSec=`` is
set. The protocol is a single ``sendto``, so drpd needs no library for it.

Sending never blocks and never fails the caller: the socket is
non-blocking, and a datagram that cannot be sent (systemd gone, queue full)
is logged once and dropped. A lost ``STATUS`` is harmless, and a service
that systemd cannot hear from is better off running than crashing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import trio

log = logging.getLogger("drpd.notify")


class Notifier:
    """Sends notify messages to one address; a no-op without one.

    Use ``Notifier.from_env()``; ``Notifier(None)`` is the silent notifier
    drpd uses when it was not started by systemd.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False
        #: the last STATUS sent, so a reporter sends only changes
        self.last_status = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None)
        if raw[0] not in "/@":
            # vsock: and other transports systemd added later: not needed here
            log.warning("NOTIFY_SOCKET=%s is not a UNIX socket address: not notifying", raw)
            return cls(None)
        return cls(raw)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it left.

        Keys are systemd's (``READY``, ``STATUS``, ...), given as keyword
        arguments: ``notify(READY=1, STATUS="serving")``.
        """
        if self.address is None:
            return False
        text = "\n".join(f"{key}={_one_line(str(value))}" for key, value in fields.items())
        if "STATUS" in fields:
            self.last_status = str(fields["STATUS"])
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(text.encode(), self._target())
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc.strerror or exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``, which systemd wants with it."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec())

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(value: str) -> str:
    # a newline would start a new assignment
    return value.replace("\n", " ")


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None without a watchdog.

    ``sd_watchdog_enabled`` semantics: ``$WATCHDOG_USEC`` must be a positive
    integer; ``$WATCHDOG_PID``, when set, must be this process (systemd sets
    it so a child that inherited the environment does not ping for its
    parent); unset means this process. drpd pings at half the timeout, as
    systemd recommends.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1e6 / 2


async def watchdog(notifier: Notifier, interval: float) -> None:
    """Ping forever, every ``interval`` seconds.

    A trio task on purpose, not a thread: a ping proves that the trio loop
    still schedules tasks. When the loop is stuck (a blocking call on the
    trio thread, a busy loop, a deadlock) the pings stop and systemd restarts
    drpd after ``WatchdogSec=``.
    """
    while True:
        notifier.notify(WATCHDOG=1)
        await trio.sleep(interval)
