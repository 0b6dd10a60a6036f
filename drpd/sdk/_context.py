"""What a handler can do besides answering: reach drpd over the server socket.

One :class:`Context` lives as long as the ``serve`` process; every handler
gets the same one. Its calls go to ``/api-server-plugin/v4`` (docs/protocol.md
§3) over a small keep-alive pool, so handlers running concurrently can
publish and log concurrently.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from drpd import wire
from drpd.models.objects import Event

if TYPE_CHECKING:
    from drpd.http11 import UnixHTTPClient

    from ._api import ApiClient
    from ._provider import Provider

__all__ = ["Context", "ServerError"]

#: drpd answers these quickly; the bound only stops a wedged drpd from
#: wedging the handler too.
DEFAULT_TIMEOUT = 30.0


class ServerError(Exception):
    """drpd refused or failed a call on the server socket.

    ``status`` is the HTTP status (0 when no answer came at all) and
    ``messages`` the ``Messages`` of drpd's ``Error`` body when it sent one.
    """

    def __init__(self, what: str, status: int, messages: list[str]) -> None:
        super().__init__(f"{what}: {status} {'; '.join(messages)}".rstrip())
        self.status = status
        self.messages = messages


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Context:
    """The handlers' view of their instance and of drpd.

    ``name`` is the instance name and ``config`` the params of the last
    ``config`` call (both empty before it). ``provider`` is the declaration.
    Every call raises :class:`ServerError` when drpd does not answer 2xx,
    and ``trio.TooSlowError`` after ``timeout`` seconds.
    """

    def __init__(
        self, provider: Provider, server: UnixHTTPClient, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.provider = provider
        self.name = ""
        self.config: dict[str, Any] = {}
        self.timeout = timeout
        self._server = server
        self._api: ApiClient | None = None

    async def publish(self, event_type: str, action: str, key: str, obj: Any = None) -> None:
        """Put an event on drpd's bus, as if drpd made it (Principal ``plugin:<name>``)."""
        event = Event(Time=_now(), Type=event_type, Action=action, Key=key, Object=obj)
        await self._call("POST", wire.SERVER_PUBLISH, msgspec.json.encode(event))

    async def log(self, level: str, message: str, **data: Any) -> None:
        """Write a line to drpd's log, tagged with this instance."""
        line: dict[str, Any] = {"Time": _now(), "Level": level.lower(), "Message": message}
        if self.name:
            line["Service"] = self.name
        if data:
            line["Data"] = data
        await self._call("POST", wire.SERVER_LOG, msgspec.json.encode(line))

    async def leaving(self) -> None:
        """Ask drpd to stop this instance and keep it stopped until it is next updated."""
        await self._call("POST", wire.SERVER_LEAVING, b"{}")

    async def objects(self, prefix: str) -> list[Any]:
        """All stored objects of ``prefix`` (for a provider's own StoreObjects, say)."""
        body = await self._call("GET", wire.SERVER_OBJECTS + prefix, None)
        result = msgspec.json.decode(body) if body else []
        if not isinstance(result, list):
            raise ServerError(f"GET objects/{prefix}", 200, ["answer is not a JSON list"])
        return result

    @property
    def api(self) -> ApiClient:
        """An async client of drpd's REST API, built from ``RS_ENDPOINT``,
        ``RS_TOKEN`` and ``RS_CA_CERT`` on first use (httpx loads only then)."""
        if self._api is None:
            from ._api import ApiClient

            self._api = ApiClient.from_env(os.environ)
        return self._api

    async def _call(self, method: str, path: str, body: bytes | None) -> bytes:
        import trio

        from drpd.http11 import HTTPError

        what = f"{method} {wire.SERVER_PREFIX}{path}"
        try:
            with trio.fail_after(self.timeout):
                status, answer = await self._server.request(method, wire.SERVER_PREFIX + path, body)
        except HTTPError as exc:
            raise ServerError(what, 0, [str(exc)]) from exc
        if not 200 <= status <= 299:
            raise ServerError(what, status, wire.error_messages(answer, 200))
        return answer

    async def aclose(self) -> None:
        """Close the REST client if one was made; the serve loop calls this on exit."""
        if self._api is not None:
            await self._api.aclose()
            self._api = None

