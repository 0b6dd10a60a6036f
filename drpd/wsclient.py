"""A resuming client of drpd's event websocket (``/api/v3/ws``).

drpcli's ``events watch`` and the provider SDK's selected events both use
:class:`EventStream`; it is to the websocket what :mod:`drpd.client` is to
the REST API, and takes its endpoint, credentials and TLS rule from there
(:func:`~drpd.client.resolve_settings`, :func:`~drpd.client.tls_verify`).

What it promises: each event at most once, in the order drpd sent it, and
none lost across a dropped connection while the events are still in drpd's
ring buffer. It keeps a resume point and reconnects with ``?since=``:

- on a connection, it registers every pattern and waits for the
  acknowledgements. drpd queues everything up to an acknowledgement's
  ``Object.Last`` before it and only later events after it, so once the
  *last* acknowledgement arrives the resume point becomes that ``Last``, and
  from then on each delivered event's Seq (those arrive in increasing order);
- until then (a fresh connection replays older events for each pattern in
  turn), it delivers each Seq above the resume point once, remembering which;
- an ``overflow`` frame (this reader fell behind and drpd dropped events)
  makes it reconnect at once from its resume point: the ring fills the gap;
- a ``gap`` frame (the ring no longer holds what it asked for, or drpd
  restarted) is handed to ``on_notice``: those events are gone.

Connection failures are retried with a capped back-off; a refused handshake
(401/403: bad credentials) is not retried, nor, with ``fail_first``, a first
connection that fails (drpcli says so in one line instead of waiting).
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NoReturn

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from .client import API_BASE, ClientError, Settings, resolve_settings, tls_verify
from .models import Event
from .patterns import Pattern

__all__ = ["EventStream", "Deliver", "Notify"]

#: ``deliver(event, text)``: one event and the JSON text it arrived as
Deliver = Callable[[Event, str], Awaitable[None]]
#: ``on_notice(frame)``: a ``gap`` or ``error`` frame (Type ``websocket``)
Notify = Callable[[Event], Awaitable[None]]

_decode = msgspec.json.Decoder(Event).decode
NOTICE_TYPE = "websocket"
#: verdicts of :meth:`EventStream.on_frame`
DELIVER, SKIP, READY, NOTICE, RESUME = "deliver", "skip", "ready", "notice", "resume"
#: the largest frame accepted (an event carries a whole object)
MAX_MESSAGE = 64 * 1024 * 1024


class EventStream:
    """Registered patterns on drpd's websocket, kept across reconnections.

    ``since`` starts from a known Seq (``None``: from now on). ``since`` and
    ``connections`` are readable while it runs.
    """

    def __init__(
        self,
        settings: Settings,
        patterns: Sequence[str],
        *,
        since: int | None = None,
        retry_first: float = 0.1,
        retry_max: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if not patterns:
            raise ValueError("an event stream needs at least one pattern")
        self.settings = settings
        self.patterns = list(dict.fromkeys(Pattern(p).text for p in patterns))
        self.since = since
        self.connections = 0
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.connect_timeout = connect_timeout
        self._seen: set[int] = set()
        self._settled = False
        verify = tls_verify(settings)
        if isinstance(verify, ssl.SSLContext):
            self._ssl: ssl.SSLContext | None = verify
        elif settings.endpoint.startswith("https://"):
            self._ssl = ssl.create_default_context()
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        else:
            self._ssl = None
        if settings.token:
            auth = f"Bearer {settings.token}"
        else:
            pair = f"{settings.username}:{settings.password}".encode()
            auth = "Basic " + base64.b64encode(pair).decode()
        self._headers = [(b"authorization", auth.encode())]

    @classmethod
    def from_env(cls, env: Mapping[str, str], patterns: Sequence[str]) -> EventStream:
        """For a provider: ``RS_ENDPOINT``, ``RS_TOKEN`` and ``RS_CA_CERT`` (docs/protocol.md §1)."""
        endpoint = env.get("RS_ENDPOINT", "")
        if not endpoint:
            raise ClientError("RS_ENDPOINT is not set: is this provider running under drpd?")
        settings = resolve_settings(endpoint=endpoint, token=env.get("RS_TOKEN", ""),
                                    ca_cert=env.get("RS_CA_CERT", ""), env={})
        return cls(settings, patterns)

    @property
    def url(self) -> str:
        parts = urllib.parse.urlsplit(self.settings.endpoint)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = "" if self.since is None else f"?since={self.since}"
        return f"{scheme}://{parts.netloc}{parts.path}{API_BASE}/ws{query}"

    async def run(
        self,
        deliver: Deliver,
        *,
        on_notice: Notify | None = None,
        on_ready: Callable[[], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        fail_first: bool = False,
    ) -> NoReturn:
        """Deliver events until cancelled.

        ``on_ready`` is called each time every pattern is registered (once per
        connection); ``on_disconnect(reason)`` each time an established
        connection is lost (failed attempts to reconnect are retried quietly).
        Raises :class:`~drpd.client.ClientError` when drpd refuses the
        credentials, or (``fail_first``) when the first connection fails.
        """
        delay = self.retry_first
        while True:
            self.begin()
            established = self.connections
            try:
                await self._session(deliver, on_notice, on_ready)
                continue  # an overflow: resume at once, the ring fills the gap
            except ConnectionRejected as exc:
                reason = _rejection(exc)
                if exc.status_code in (401, 403) or (fail_first and not self.connections):
                    raise ClientError(reason, code=exc.status_code) from None
            except (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError) as exc:
                reason = _reason(exc)
                if fail_first and not self.connections:
                    raise ClientError(f"cannot connect to {self.settings.endpoint}: {reason}") \
                        from None
            if on_disconnect is not None and self.connections != established:
                on_disconnect(reason)
            if self._settled:
                delay = self.retry_first  # that connection worked: start the back-off over
            await trio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    async def _session(self, deliver: Deliver, on_notice: Notify | None,
                       on_ready: Callable[[], None] | None) -> None:
        """One connection; returns to reconnect at once, raises when it is lost."""
        opened: list[WebSocketConnection] = []
        try:
            await self._exchange(deliver, on_notice, on_ready, opened)
        finally:
            # trio-websocket leaves the socket of a connection that drpd closed
            # to the garbage collector; a reconnecting client closes it itself
            for ws in opened:
                stream = getattr(ws, "_stream", None)
                if stream is not None:
                    await trio.aclose_forcefully(stream)

    async def _exchange(self, deliver: Deliver, on_notice: Notify | None,
                        on_ready: Callable[[], None] | None,
                        opened: list[WebSocketConnection]) -> None:
        async with open_websocket_url(
            self.url, self._ssl, extra_headers=self._headers, max_message_size=MAX_MESSAGE,
            connect_timeout=self.connect_timeout, disconnect_timeout=2.0,
        ) as ws:
            opened.append(ws)
            self.connections += 1
            waiting = set(self.patterns)
            for pattern in self.patterns:
                await ws.send_message(f"register {pattern}")
            while True:
                text = await _text(ws)
                event = _decode(text)
                verdict = self.on_frame(event, waiting)
                if verdict == DELIVER:
                    await deliver(event, text)
                elif verdict == READY and on_ready is not None:
                    on_ready()
                elif verdict == NOTICE and on_notice is not None:
                    await on_notice(event)
                elif verdict == RESUME:
                    return

    def on_frame(self, event: Event, waiting: set[str]) -> str:
        """What to do with one decoded frame (the I/O-free half of a session).

        ``waiting`` holds this connection's unacknowledged patterns. Returns
        ``DELIVER`` (a new event), ``SKIP`` (seen already, or an
        acknowledgement), ``READY`` (the last acknowledgement), ``NOTICE``
        (``gap`` or ``error``) or ``RESUME`` (``overflow``: reconnect now).
        """
        if event.Type == NOTICE_TYPE and not event.Seq:
            if event.Action == "register" and event.Key in waiting:
                waiting.discard(event.Key)
                if not waiting:
                    self._settle(event.Object)
                    return READY
                return SKIP
            if event.Action == "overflow":
                return RESUME
            if event.Action in ("gap", "error"):
                return NOTICE
            return SKIP
        return DELIVER if self._fresh(event.Seq) else SKIP

    def begin(self) -> None:
        """A new connection starts (``run`` calls it; simulations too)."""
        self._settled = False

    def _fresh(self, seq: int) -> bool:
        """True the first time ``seq`` arrives; moves the resume point."""
        if self.since is not None and seq <= self.since:
            return False
        if self._settled:
            self.since = seq
            return True
        if seq in self._seen:
            return False
        self._seen.add(seq)
        return True

    def _settle(self, ack: object) -> None:
        last = ack.get("Last") if isinstance(ack, dict) else None
        candidates = [s for s in (self.since, *self._seen) if s is not None]
        if isinstance(last, int):
            candidates.append(last)
        self.since = max(candidates) if candidates else None
        self._seen.clear()
        self._settled = True


async def _text(ws: WebSocketConnection) -> str:
    message = await ws.get_message()
    return message if isinstance(message, str) else message.decode()


def _rejection(exc: ConnectionRejected) -> str:
    try:
        body = msgspec.json.decode(exc.body or b"{}")
        messages = body.get("Messages") if isinstance(body, dict) else None
    except msgspec.DecodeError:
        messages = None
    detail = "; ".join(str(m) for m in messages) if messages else ""
    return f"websocket refused ({exc.status_code}){': ' + detail if detail else ''}"


def _reason(exc: BaseException) -> str:
    """The most telling message in the cause chain (trio wraps connect errors twice)."""
    if isinstance(exc, ConnectionClosed):
        why = exc.reason
        if why is None:
            return "connection closed"
        return f"connection closed: {why.code} {why.reason or why.name}"
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        if isinstance(current, BaseExceptionGroup) and current.exceptions:
            current = current.exceptions[0]
        else:
            current = current.__cause__ or current.__context__
    for e in reversed(chain):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    for e in chain:
        if str(e):
            return " ".join(str(e).split())
    return type(exc).__name__
