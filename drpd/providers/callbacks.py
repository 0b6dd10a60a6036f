"""Upstream's ``callbackDo``: named callbacks (``callback/callbacks``), named
credentials (``callback/auths``), chosen per call by ``callback/action``.

This follows DRP's ``provision-plugins`` callback provider (its param
schemas and behaviour; no code of it): a callback sends the machine (its
Params read from drpd, aggregated and decoded on request, minus
``ExcludeParams``) or ``callback/data-override`` to ``Url`` with ``Method``,
retrying ``Retry`` times ``Delay`` seconds apart within ``Timeout`` seconds
in all; an answer of 400 or more fails the action with that status. Auths
are ``basic`` or ``json-token`` (a token fetched from ``Url``, read from
``TokenField``, cached for three quarters of ``DurationField`` seconds).

A ``callback/data-override`` string is a template: ``{{.Machine.<Field>}}``,
``{{.Machine.UUID}}``, ``{{.Machine.ShortName}}``, ``{{.Param "name"}}``,
``{{.ParamAsJSON "name"}}``, ``{{.ProvisionerURL}}``, ``{{.ApiURL}}`` and
``{{.ProvisionerAddress}}`` are filled in (a subset of Go's text/template
as upstream's render data offers it; anything else is refused, 422).
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import msgspec

from drpd.sdk import ActionError


class Callback(msgspec.Struct, kw_only=True):
    Url: str = ""
    Method: str = "POST"
    Auth: str = ""
    Retry: int = 0
    #: seconds for all attempts together (upstream's default: two hours)
    Timeout: int = 7200
    Delay: int = 0
    Headers: dict[str, str] = {}
    Aggregate: bool = False
    Decode: bool = False
    ExcludeParams: list[str] = []
    NoBody: bool = False
    RawBody: bool = False
    JsonResponse: bool = False
    StringResponse: bool = False


class Auth(msgspec.Struct, kw_only=True):
    AuthType: str = ""
    Username: str = ""
    Password: str = ""
    Url: str = ""
    Method: str = "POST"
    Data: str = ""
    Query: str = ""
    TokenField: str = "token"
    DurationField: str = ""
    Retry: int = 0
    Timeout: int = 7200
    Delay: int = 0


class Settings(msgspec.Struct):
    callbacks: dict[str, Callback]
    auths: dict[str, Auth]


def parse(params: dict[str, Any]) -> Settings:
    """The instance's callbacks and auths, checked (422 naming what is wrong)."""
    try:
        callbacks = msgspec.convert(params.get("callback/callbacks") or {}, dict[str, Callback])
        auths = msgspec.convert(params.get("callback/auths") or {}, dict[str, Auth])
    except msgspec.ValidationError as exc:
        raise ActionError(422, f"callback/callbacks or callback/auths: {exc}") from None
    for name, cb in callbacks.items():
        if not cb.Url.startswith(("http://", "https://")):
            raise ActionError(422, f"callback {name!r}: Url must be an http(s) URL")
        if cb.Auth and cb.Auth not in auths:
            raise ActionError(422, f"callback {name!r}: no auth {cb.Auth!r} in callback/auths")
    for name, auth in auths.items():
        if auth.AuthType not in ("basic", "json-token"):
            raise ActionError(422, f"auth {name!r}: AuthType must be basic or json-token")
        if auth.AuthType == "json-token" and not auth.Url.startswith(("http://", "https://")):
            raise ActionError(422, f"auth {name!r}: a json-token auth needs an http(s) Url")
    return Settings(callbacks, auths)


_EXPR = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_PARAM = re.compile(r'^\.(Param|ParamAsJSON)\s+"([^"]*)"$')


def render(text: str, machine: dict[str, Any], params: dict[str, Any],
           info: dict[str, Any]) -> str:
    """Fill the template subset named in the module docstring."""
    address = str(info.get("address") or "127.0.0.1")

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        param = _PARAM.match(expr)
        if param:
            found = params.get(param.group(2))
            return json.dumps(found) if param.group(1) == "ParamAsJSON" else _text(found)
        if expr == ".ProvisionerURL":
            return f"http://{address}:{info.get('file_port', 0)}"
        if expr == ".ApiURL":
            return f"https://{address}:{info.get('api_port', 0)}"
        if expr == ".ProvisionerAddress":
            return address
        if expr == ".Machine.UUID":
            return _text(machine.get("Uuid"))
        if expr == ".Machine.ShortName":
            return _text(machine.get("Name")).split(".")[0]
        if expr.startswith(".Machine."):
            value: Any = machine
            for part in expr[len(".Machine."):].split("."):
                if not isinstance(value, dict) or part not in value:
                    raise ActionError(422, f"callback/data-override: {{{{{expr}}}}}: "
                                      "the machine has no such field")
                value = value[part]
            return _text(value)
        raise ActionError(422, f"callback/data-override: {{{{{expr}}}}} is not supported "
                          "(Machine fields, Param, ParamAsJSON, ProvisionerURL, ApiURL, "
                          "ProvisionerAddress)")

    return _EXPR.sub(one, text)


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"  # what Go's template prints for a missing value
    if isinstance(value, str):
        return value
    return json.dumps(value)


class Caller:
    """One instance's callbacks: HTTP client, token cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: auth name -> (token, monotonic time it stops being used)
        self._tokens: dict[str, tuple[str, float]] = {}

    async def do(self, api: Any, action: str, machine: dict[str, Any],
                 override: Any) -> Any:
        """Run callback ``action`` for ``machine``; its answer, as upstream shapes it."""
        import httpx
        import trio

        cb = self.settings.callbacks.get(action)
        if cb is None:
            return f"Callback attempted, but skipped because action unknown: {action}"
        body = await self._body(api, cb, machine, override)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Accept": "application/json"}
        for name in list(headers):
            if any(k.lower() == name.lower() for k in cb.Headers):
                del headers[name]
        headers.update(cb.Headers)
        last = ""
        # verify=False as upstream (InsecureSkipVerify): receivers are often self-signed
        async with httpx.AsyncClient(trust_env=False, verify=False) as client:  # noqa: S501
            with trio.move_on_after(max(cb.Timeout, 1)) as scope:
                for attempt in range(cb.Retry + 1):
                    if attempt and cb.Delay > 0:
                        await trio.sleep(cb.Delay)
                    try:
                        auth = await self._auth_header(client, cb.Auth)
                        r = await client.request(cb.Method or "POST", cb.Url,
                                                 content=body, headers={**headers, **auth},
                                                 timeout=max(cb.Timeout, 1))
                    except (httpx.HTTPError, ActionError) as exc:
                        last = f"{type(exc).__name__}: {exc}"
                        continue
                    if r.status_code < 400:
                        return _answer(cb, r.content)
                    last = f"Callback API returned {r.status_code}: {r.text[:300]}"
                    if attempt == cb.Retry:
                        raise ActionError(r.status_code, f"callback {action}: {last}")
            if scope.cancelled_caught:
                raise ActionError(400, f"callback {action}: Timeout of callback call "
                                  f"({cb.Timeout} s); last: {last or 'none'}")
        raise ActionError(400, f"callback {action}: Failed to callback API after "
                          f"{cb.Retry + 1} attempt(s): {last}")

    async def _body(self, api: Any, cb: Callback, machine: dict[str, Any],
                    override: Any) -> bytes | None:
        if cb.NoBody:
            return None
        if override is None:
            query = {k: "true" for k, on in (("aggregate", cb.Aggregate),
                                               ("decode", cb.Decode)) if on}
            uuid = str(machine.get("Uuid", ""))
            params = await api.request("GET", f"/machines/{uuid}/params", params=query) or {}
            params = {k: v for k, v in params.items() if k not in cb.ExcludeParams}
            return msgspec.json.encode({**machine, "Params": params})
        if isinstance(override, str):
            info = await api.request("GET", "/info") or {}
            params = machine.get("Params") or {}
            text = render(override, machine, params, info)
            if cb.RawBody:
                return text.encode()
            try:
                return msgspec.json.encode(json.loads(text))
            except ValueError:
                return msgspec.json.encode(text)
        return msgspec.json.encode(override)

    async def _auth_header(self, client: Any, name: str) -> dict[str, str]:
        auth = self.settings.auths.get(name) if name else None
        if auth is None:
            return {}
        if auth.AuthType == "basic":
            pair = f"{auth.Username}:{auth.Password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        token, until = self._tokens.get(name, ("", 0.0))
        if not token or time.monotonic() >= until:
            token, lifetime = await self._fetch_token(client, auth)
            self._tokens[name] = (token, time.monotonic() + lifetime * 3 / 4)
        return {"Authorization": f"Bearer {token}", "Authentication": f"Bearer {token}"}

    @staticmethod
    async def _fetch_token(client: Any, auth: Auth) -> tuple[str, float]:
        import httpx
        import trio

        last = ""
        for attempt in range(auth.Retry + 1):
            if attempt and auth.Delay > 0:
                await trio.sleep(auth.Delay)
            try:
                r = await client.request(auth.Method or "POST", auth.Url,
                                         content=auth.Data.encode() or None,
                                         params=auth.Query or None,
                                         timeout=max(auth.Timeout, 1))
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if r.status_code >= 400:
                last = f"Auth API returned {r.status_code}"
                continue
            try:
                data = r.json()
            except ValueError:
                last = "the auth answer is not JSON"
                continue
            token = data.get(auth.TokenField) if isinstance(data, dict) else None
            if not isinstance(token, str):
                last = f"the auth answer has no string {auth.TokenField!r}"
                continue
            lifetime = data.get(auth.DurationField, 3600) if auth.DurationField else 3600
            if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
                last = f"the auth answer's {auth.DurationField!r} is not a number"
                continue
            return token, float(lifetime)
        raise ActionError(400, f"Failed to get auth: {last}")


def _answer(cb: Callback, body: bytes) -> Any:
    """The receiver's answer as upstream returns it: parsed JSON with
    ``JsonResponse``, text with ``StringResponse``, else the bytes as Go's
    JSON encoder writes a ``[]byte`` (base64)."""
    if cb.JsonResponse:
        try:
            return json.loads(body) if body else None
        except ValueError:
            raise ActionError(502, "JsonResponse: the callback's answer is not JSON") from None
    if cb.StringResponse:
        return body.decode(errors="replace")
    return base64.b64encode(body).decode()


def task_complete(machine: Any) -> bool:
    """Upstream's ``taskcomplete`` test, guarded: a machine with no tasks has
    not completed any (upstream fires on ``CurrentTask == len(Tasks)``, which
    is 0 == 0 on every machine without tasks)."""
    if not isinstance(machine, dict):
        return False
    tasks = machine.get("Tasks") or []
    return bool(tasks) and machine.get("CurrentTask") == len(tasks)
