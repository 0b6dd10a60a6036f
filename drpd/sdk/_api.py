"""An async client of drpd's REST API for handlers (``ctx.api``).

Imported only when a handler first touches ``ctx.api``: httpx costs about
0.1 s and 10 MB, which a provider that never calls the API should not pay.
Settings, TLS rules and errors are those of :mod:`drpd.client` (drpcli's
client), so a provider and drpcli agree on what ``RS_ENDPOINT``,
``RS_TOKEN`` and ``RS_CA_CERT`` mean and fail with the same
:class:`~drpd.client.ClientError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from drpd.client import (
    API_BASE,
    ClientError,
    is_loopback,
    quote_path,
    resolve_settings,
    tls_verify,
)

__all__ = ["ApiClient", "ClientError"]

_MERGE_PATCH = "application/merge-patch+json"


class ApiClient:
    """``/api/v3`` with the instance's bearer token; JSON in, decoded JSON out.

    Object helpers take the prefix and key unquoted (``get("machines",
    "Name:m1")``, param names with ``/`` work). :meth:`request` is the one
    primitive; any non-2xx answer or transport failure raises
    :class:`ClientError`.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        ca_cert: str = "",
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = resolve_settings(endpoint=endpoint, token=token, ca_cert=ca_cert, env={})
        self.endpoint = settings.endpoint
        self._http = httpx.AsyncClient(
            base_url=settings.endpoint + API_BASE,
            headers={"Accept": "application/json", "Authorization": f"Bearer {token}"},
            verify=tls_verify(settings),
            timeout=timeout,
            trust_env=not is_loopback(settings.host),
            transport=transport,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiClient:
        endpoint = env.get("RS_ENDPOINT", "")
        if not endpoint:
            raise ClientError("RS_ENDPOINT is not set: is this provider running under drpd?")
        return cls(endpoint, env.get("RS_TOKEN", ""), env.get("RS_CA_CERT", ""))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send to ``/api/v3<path>`` (already quoted); an empty answer is ``None``.

        ``json=None`` sends no body; to send JSON ``null`` use :meth:`send`.
        """
        content = msgspec.json.encode(json) if json is not None else None
        return await self.send(method, path, content, params=params, content_type=content_type)

    async def send(
        self,
        method: str,
        path: str,
        content: bytes | None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """:meth:`request` with the body already encoded."""
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            response = await self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {self.endpoint}{API_BASE}{path} failed: {exc}") from None
        if not response.is_success:
            raise ClientError.from_response(response)
        if not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise ClientError(f"{method} {path}: the answer is not JSON") from None

    async def list(self, prefix: str, **filters: str) -> Any:
        return await self.request("GET", quote_path(prefix), params=filters or None)

    async def get(self, prefix: str, key: str) -> Any:
        return await self.request("GET", quote_path(prefix, key))

    async def create(self, prefix: str, obj: Any) -> Any:
        return await self.request("POST", quote_path(prefix), json=obj)

    async def replace(self, prefix: str, key: str, obj: Any) -> Any:
        return await self.request("PUT", quote_path(prefix, key), json=obj)

    async def update(self, prefix: str, key: str, partial: Any) -> Any:
        """RFC 7396 merge patch."""
        return await self.request(
            "PATCH", quote_path(prefix, key), json=partial, content_type=_MERGE_PATCH
        )

    async def delete(self, prefix: str, key: str) -> Any:
        return await self.request("DELETE", quote_path(prefix, key))

    async def get_param(self, prefix: str, key: str, name: str) -> Any:
        return await self.request("GET", quote_path(prefix, key, "params", name))

    async def set_param(self, prefix: str, key: str, name: str, value: Any) -> Any:
        path = quote_path(prefix, key, "params", name)
        return await self.send("POST", path, msgspec.json.encode(value))
