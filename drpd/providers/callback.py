#!/usr/bin/env python3
"""callback: POST machines (and, optionally, events) to a web hook.

Instance params: ``callback/url`` (required), ``callback/auth`` (optional:
``{"Type": "bearer", "Token": ...}`` or ``{"Type": "basic", "Username": ...,
"Password": ...}``), ``callback/timeout`` (seconds per attempt, default
10), ``callback/retries`` (extra attempts after a failure, default 3, with
back-off from 0.5 s doubling). Action ``send`` on machines POSTs the machine
as JSON, or the optional ``callback/template`` filled in from it (every
string ``"{{.Path.To.Field}}"`` in the template is replaced by that field of
the machine), and returns the receiver's HTTP status and body. The optional
instance param ``callback/events`` (a list of ``type.action.key``
patterns) makes it POST each matching event to the URL too.

Upstream's (DRP provision-plugins) callback works as well, beside ``send``:
the instance param ``callback/callbacks`` names callbacks (``Url``,
``Method``, ``Auth``, ``Retry``, ``Timeout``, ``Delay``, ``Headers``,
``NoBody``, ``RawBody``, ``JsonResponse``, ``StringResponse``,
``Aggregate``, ``Decode``, ``ExcludeParams``), ``callback/auths`` names
credentials (``basic``, ``json-token``), and the machine action
``callbackDo`` runs the one ``callback/action`` names, sending the machine
or ``callback/data-override`` (a template; ``drpd/providers/callbacks.py``).
A callback named ``taskcomplete`` is run when a machine's tasks are all
done (``CurrentTask == len(Tasks)``, never for a machine without tasks).
An instance needs ``callback/url`` or ``callback/callbacks``.
"""

from __future__ import annotations

import re
from typing import Any

from drpd.patterns import Pattern, PatternError
from drpd.providers.callbacks import Caller, parse, task_complete
from drpd.sdk import Action, ActionError, Context, Event, Provider

CONTENT = """
meta:
  Name: callback
  Version: 1.0.0
  Description: Params of the callback provider
sections:
  params:
    callback/url:
      Name: callback/url
      Description: Where callbacks are POSTed (http or https).
      Schema: {type: string, pattern: "^https?://"}
    callback/auth:
      Name: callback/auth
      Description: Credentials for the receiver.
      Secure: true
      Schema:
        type: object
        properties:
          Type: {type: string, enum: [basic, bearer]}
          Token: {type: string}
          Username: {type: string}
          Password: {type: string}
        required: [Type]
    callback/timeout:
      Name: callback/timeout
      Description: Seconds per attempt.
      Schema: {type: number, exclusiveMinimum: 0, default: 10}
    callback/retries:
      Name: callback/retries
      Description: Extra attempts after a failed one.
      Schema: {type: integer, minimum: 0, maximum: 10, default: 3}
    callback/template:
      Name: callback/template
      Description: JSON to send instead of the machine; "{{.Field}}" strings are filled in.
      Schema: {}
    callback/events:
      Name: callback/events
      Description: Event patterns (type.action.key) to POST to the URL as well.
      Schema: {type: array, items: {type: string}, default: []}
    callback/callbacks:
      Name: callback/callbacks
      Description: Named callbacks callbackDo runs (upstream's shape).
      Schema:
        type: object
        additionalProperties:
          type: object
          properties:
            Auth: {type: string}
            Url: {type: string}
            Method: {type: string}
            Headers: {type: object, additionalProperties: {type: string}}
            Aggregate: {type: boolean}
            NoBody: {type: boolean}
            RawBody: {type: boolean}
            JsonResponse: {type: boolean}
            StringResponse: {type: boolean}
            Decode: {type: boolean}
            ExcludeParams: {type: array, items: {type: string}}
            Delay: {type: integer}
            Retry: {type: integer}
            Timeout: {type: integer}
        default: {}
    callback/auths:
      Name: callback/auths
      Description: Named credentials the callbacks use (basic, json-token).
      Secure: true
      Schema:
        type: object
        additionalProperties:
          type: object
          properties:
            AuthType: {type: string, enum: [basic, json-token]}
            Username: {type: string}
            Password: {type: string}
            Url: {type: string}
            Method: {type: string}
            Data: {type: string}
            Query: {type: string}
            TokenField: {type: string}
            DurationField: {type: string}
            Retry: {type: integer}
            Timeout: {type: integer}
            Delay: {type: integer}
        default: {}
    callback/action:
      Name: callback/action
      Description: Which of callback/callbacks callbackDo runs.
      Schema: {type: string}
    callback/data-override:
      Name: callback/data-override
      Description: What callbackDo sends instead of the machine (a string is a template).
      Schema: {}
"""

provider = Provider(
    "callback",
    "1.0.0",
    optional=["callback/url", "callback/auth", "callback/timeout", "callback/retries",
              "callback/events", "callback/callbacks", "callback/auths"],
    content=CONTENT,
    documentation="POSTs machines (and selected events) to a web hook, with retries.",
)

_FIELD = re.compile(r"^\{\{\s*\.([A-Za-z0-9_./-]+)\s*\}\}$")


def fill(template: Any, machine: dict[str, Any]) -> Any:
    """Replace ``"{{.A.B}}"`` strings in ``template`` by ``machine["A"]["B"]``."""
    if isinstance(template, dict):
        return {k: fill(v, machine) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, machine) for v in template]
    if isinstance(template, str):
        match = _FIELD.match(template)
        if match:
            value: Any = machine
            for part in match.group(1).split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
    return template


def _headers(auth: Any) -> dict[str, str]:
    if not auth:
        return {}
    if not isinstance(auth, dict) or auth.get("Type") not in ("basic", "bearer"):
        raise ActionError(422, "callback/auth must be {Type: basic|bearer, ...}")
    if auth["Type"] == "bearer":
        return {"Authorization": f"Bearer {auth.get('Token', '')}"}
    import base64

    pair = f"{auth.get('Username', '')}:{auth.get('Password', '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def post(ctx: Context, body: Any) -> dict[str, Any]:
    """POST ``body`` to the configured URL with retries; the last answer or an error."""
    import httpx
    import trio

    config = ctx.config
    url = config.get("callback/url")
    if not url:
        raise ActionError(422, "send needs callback/url (this instance has callbacks only: "
                          "use callbackDo)")
    timeout = float(config.get("callback/timeout", 10))
    retries = int(config.get("callback/retries", 3))
    headers = _headers(config.get("callback/auth"))
    delay = 0.5
    last = ""
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        for attempt in range(retries + 1):
            try:
                r = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 500:
                    try:
                        answer: Any = r.json()
                    except ValueError:
                        answer = r.text
                    return {"Status": r.status_code, "Body": answer, "Attempts": attempt + 1}
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            if attempt < retries:
                await trio.sleep(delay)
                delay *= 2
    raise ActionError(502, f"callback to {url} failed after {retries + 1} attempts: {last}")


_selected: list[Pattern] = []
_caller: list[Caller] = []


@provider.config
async def config(ctx: Context, params: dict[str, Any]) -> None:
    url = params.get("callback/url")
    if url is None and not params.get("callback/callbacks"):
        raise ActionError(422, "callback needs callback/url or callback/callbacks")
    if url is not None and (not isinstance(url, str)
                            or not url.startswith(("http://", "https://"))):
        raise ActionError(422, f"callback/url must be an http(s) URL, not {url!r}")
    _caller[:] = [Caller(parse(params))]
    _headers(params.get("callback/auth"))
    patterns = params.get("callback/events") or []
    if not isinstance(patterns, list):
        raise ActionError(422, "callback/events must be a list of type.action.key patterns")
    try:
        _selected[:] = [Pattern(str(p)) for p in patterns]
    except PatternError as exc:
        raise ActionError(422, f"callback/events: {exc}") from None


@provider.events("*.*.*")
async def forward(ctx: Context, event: Event) -> None:
    """POST the events that match ``callback/events`` (none by default); run
    the ``taskcomplete`` callback for a machine whose tasks are all done."""
    if (event.Type == "machines" and event.Action in ("update", "save") and _caller
            and "taskcomplete" in _caller[0].settings.callbacks
            and task_complete(event.Object)):
        try:
            await _caller[0].do(ctx.api, "taskcomplete", event.Object, None)
        except ActionError as exc:
            await ctx.log("error", f"taskcomplete callback for {event.Key}: {exc}")
    if not any(p.matches_event(event) for p in _selected):
        return
    import msgspec

    try:
        await post(ctx, msgspec.to_builtins(event))
    except ActionError as exc:
        await ctx.log("error", f"event {event.Type}.{event.Action}.{event.Key}: {exc}")


@provider.action("callbackDo", model="machines", required=["callback/action"],
                 optional=["callback/data-override"])
async def callback_do(ctx: Context, action: Action) -> Any:
    """Upstream's action: run the callback ``callback/action`` names."""
    name = action.Params.get("callback/action")
    if not isinstance(name, str):
        raise ActionError(422, "callback/action must be a callback's name")
    machine = action.Model if isinstance(action.Model, dict) else {}
    return await _caller[0].do(ctx.api, name, machine,
                               action.Params.get("callback/data-override"))


@provider.action("send", model="machines", optional=["callback/template"])
async def send(ctx: Context, action: Action) -> Any:
    machine = action.Model or {}
    template = action.Params.get("callback/template")
    body = fill(template, machine) if template is not None else machine
    return await post(ctx, body)


if __name__ == "__main__":
    provider.main()
