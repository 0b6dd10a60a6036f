#!/usr/bin/env python3
"""bios: a machine's BIOS attributes out-of-band, over its BMC's Redfish API.

Upstream's bios provider runs vendor tools in-band through DRP's job runner,
which drpd does not have; this one reads and writes the Redfish ``Bios``
resource of the machine's ComputerSystem, keeping upstream's param names so
content and habits carry over.

Actions (on ``machines``):

- ``bios-current-config``: reads ``/redfish/v1/Systems/<id>/Bios`` and
  stores its ``Attributes`` in the machine param
  ``bios-current-configuration``; answers them.
- ``bios-test``: the attributes of ``bios-target-configuration`` whose
  value differs from the current one (``{}`` when nothing would change).
- ``bios-apply``: PATCHes that difference to the Bios Settings object,
  after recording it in ``bios-last-attempted-configuration``. The loop
  guard, as upstream: when the difference equals the last attempt, the
  same change was tried before and did not stick, so it refuses (409)
  instead of looping; delete that param to try again. Answers
  ``{"Applied": {...}, "RebootNeeded": bool}`` (true when the BMC holds the
  change as pending settings that take effect at the next reset).
- ``bios-reset-defaults``: POSTs ``#Bios.ResetBios``.

Params: ``bios-target-configuration`` (a map attribute -> value),
``bios-current-configuration``, ``bios-last-attempted-configuration``, and
the BMC params shared with ipmi: ``ipmi/address``, ``ipmi/username``,
``ipmi/password`` (Secure), ``ipmi/port-redfish`` (default 443),
``ipmi/redfish-scheme`` (``https`` or ``http``, default ``https``),
``ipmi/redfish-verify-tls`` (default true; false accepts a BMC's
self-signed certificate), ``ipmi/timeout`` (seconds per request, default 20).

Errors: a DRP Error naming the BMC and its own message: 502 the BMC is
unreachable or answered an error (its Redfish ``error.message`` quoted),
504 it did not answer in time, 422 a param of the wrong shape, 409 the loop
guard. AutoStart: installing the provider creates the ``bios`` instance.
"""

from __future__ import annotations

import json
from typing import Any

from drpd.sdk import Action, ActionError, Context, Provider

DEFAULT_PORT = 443
DEFAULT_TIMEOUT = 20
#: the most of a BMC answer read into memory
MAX_ANSWER = 4 << 20

CONTENT = f"""
meta:
  Name: bios
  Version: 1.0.0
  Description: Params of the bios provider (Redfish BIOS attributes)
sections:
  params:
    bios-target-configuration:
      Name: bios-target-configuration
      Description: BIOS attributes (name -> value) the machine should have; bios-apply sets them.
      Schema: {{type: object}}
    bios-current-configuration:
      Name: bios-current-configuration
      Description: BIOS attributes as bios-current-config last read them from the BMC.
      Schema: {{type: object}}
    bios-last-attempted-configuration:
      Name: bios-last-attempted-configuration
      Description: The change bios-apply last sent; the same change is not sent twice (loop guard).
      Schema: {{type: object}}
    ipmi/port-redfish:
      Name: ipmi/port-redfish
      Description: TCP port of the BMC's Redfish service.
      Schema: {{type: integer, minimum: 1, maximum: 65535, default: {DEFAULT_PORT}}}
    ipmi/redfish-scheme:
      Name: ipmi/redfish-scheme
      Description: http or https for the BMC's Redfish service.
      Schema: {{type: string, enum: [https, http], default: https}}
    ipmi/redfish-verify-tls:
      Name: ipmi/redfish-verify-tls
      Description: Verify the BMC's TLS certificate (false accepts a self-signed one).
      Schema: {{type: boolean, default: true}}
"""

CONNECTION = ["ipmi/address", "ipmi/username", "ipmi/password"]
OPTIONAL = ["ipmi/port-redfish", "ipmi/redfish-scheme", "ipmi/redfish-verify-tls", "ipmi/timeout"]

provider = Provider(
    "bios",
    "1.0.0",
    optional=[*CONNECTION, *OPTIONAL],
    auto_start=True,
    content=CONTENT,
    documentation=__doc__ or "",
)


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise ActionError(422, f"{name} must be a string")
    return value


def _attributes(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ActionError(422, f"{name} must be a map of BIOS attribute names to values")
    return value


class Bmc:
    """A Redfish service and one request at a time to it, with bounds."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.address = _text(params, "ipmi/address").strip()
        if not self.address or any(c in self.address for c in "/?#@ \t\r\n"):
            raise ActionError(422, f"ipmi/address {self.address!r} is not a host name or address")
        self.username = _text(params, "ipmi/username")
        self.password = _text(params, "ipmi/password")
        port = params.get("ipmi/port-redfish", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ActionError(422, f"ipmi/port-redfish must be a port number, not {port!r}")
        scheme = params.get("ipmi/redfish-scheme") or "https"
        if scheme not in ("https", "http"):
            raise ActionError(422, f"ipmi/redfish-scheme must be https or http, not {scheme!r}")
        verify = params.get("ipmi/redfish-verify-tls", True)
        if not isinstance(verify, bool):
            raise ActionError(422, "ipmi/redfish-verify-tls must be true or false")
        timeout = params.get("ipmi/timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 300:
            raise ActionError(422, f"ipmi/timeout must be 1..300 seconds, not {timeout!r}")
        host = f"[{self.address}]" if ":" in self.address else self.address
        self.base = f"{scheme}://{host}:{port}"
        self.verify = verify
        self.timeout = timeout

    def __str__(self) -> str:
        return self.base

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One Redfish request; the decoded JSON answer (None when empty) or ActionError."""
        import httpx
        import trio

        what = f"{method} {path}"
        answer = b""
        status = 0
        with trio.move_on_after(self.timeout) as scope:
            try:
                async with httpx.AsyncClient(
                        base_url=self.base, verify=self.verify, trust_env=False,
                        auth=(self.username, self.password), timeout=self.timeout) as client:
                    async with client.stream(method, path, json=body) as r:
                        status = r.status_code
                        async for chunk in r.aiter_bytes():
                            answer += chunk
                            if len(answer) > MAX_ANSWER:
                                raise ActionError(502, f"BMC {self} answered {what} with more "
                                                       f"than {MAX_ANSWER} bytes")
            except httpx.HTTPError as exc:
                raise ActionError(502, f"BMC {self} unreachable for {what}: "
                                       f"{type(exc).__name__}: {exc}") from None
        if scope.cancelled_caught:
            raise ActionError(504, f"BMC {self} did not answer {what} within {self.timeout} s")
        try:
            decoded = json.loads(answer) if answer.strip() else None
        except ValueError:
            decoded = answer[:300].decode(errors="replace")
        if status >= 400:
            message = decoded
            if isinstance(decoded, dict):
                err = decoded.get("error")
                if isinstance(err, dict):
                    infos = err.get("@Message.ExtendedInfo") or []
                    parts = [str(err.get("message", ""))] + [
                        str(i.get("Message", "")) for i in infos if isinstance(i, dict)]
                    message = "; ".join(p for p in parts if p)
            raise ActionError(502, f"BMC {self} refused {what}: HTTP {status}: {message}")
        return decoded

    async def bios_path(self) -> str:
        """The first ComputerSystem's Bios resource path."""
        systems = await self.call("GET", "/redfish/v1/Systems")
        members = systems.get("Members") if isinstance(systems, dict) else None
        if not members or not isinstance(members[0], dict):
            raise ActionError(502, f"BMC {self} lists no ComputerSystem")
        system = await self.call("GET", str(members[0].get("@odata.id")))
        bios = system.get("Bios") if isinstance(system, dict) else None
        if not isinstance(bios, dict) or "@odata.id" not in bios:
            raise ActionError(502, f"BMC {self} has no Bios resource for its system")
        return str(bios["@odata.id"])

    async def attributes(self, path: str) -> tuple[dict[str, Any], str]:
        """Current attributes and the Settings object's path."""
        bios = await self.call("GET", path)
        attrs = bios.get("Attributes") if isinstance(bios, dict) else None
        if not isinstance(attrs, dict):
            raise ActionError(502, f"BMC {self} answered {path} without Attributes")
        settings = path.rstrip("/") + "/Settings"
        redfish_settings = bios.get("@Redfish.Settings")
        if isinstance(redfish_settings, dict):
            obj = redfish_settings.get("SettingsObject")
            if isinstance(obj, dict) and obj.get("@odata.id"):
                settings = str(obj["@odata.id"])
        return attrs, settings


def difference(target: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The target's attributes whose values the current configuration lacks."""
    return {k: v for k, v in target.items() if k not in current or current[k] != v}


async def _current(ctx: Context, action: Action) -> tuple[Bmc, str, dict[str, Any], str]:
    bmc = Bmc(action.Params)
    path = await bmc.bios_path()
    attrs, settings = await bmc.attributes(path)
    return bmc, path, attrs, settings


def _uuid(action: Action) -> str:
    return str((action.Model or {}).get("Uuid"))


@provider.action("bios-current-config", model="machines", required=CONNECTION, optional=OPTIONAL)
async def current_config(ctx: Context, action: Action) -> Any:
    _, _, attrs, _ = await _current(ctx, action)
    await ctx.api.set_param("machines", _uuid(action), "bios-current-configuration", attrs)
    return attrs


@provider.action("bios-test", model="machines", required=CONNECTION,
                 optional=[*OPTIONAL, "bios-target-configuration"])
async def test(ctx: Context, action: Action) -> Any:
    target = _attributes(action.Params, "bios-target-configuration")
    _, _, attrs, _ = await _current(ctx, action)
    return difference(target, attrs)


@provider.action("bios-apply", model="machines", required=CONNECTION,
                 optional=[*OPTIONAL, "bios-target-configuration",
                           "bios-last-attempted-configuration"])
async def apply(ctx: Context, action: Action) -> Any:
    target = _attributes(action.Params, "bios-target-configuration")
    last = _attributes(action.Params, "bios-last-attempted-configuration")
    bmc, path, attrs, settings = await _current(ctx, action)
    change = difference(target, attrs)
    if not change:
        return {"Applied": {}, "RebootNeeded": False}
    if change == last:
        raise ActionError(
            409, f"BMC {bmc}: bios-apply already sent {json.dumps(change, sort_keys=True)} "
                 "and the BIOS still differs; not sending it again (loop guard). Remove "
                 "bios-last-attempted-configuration from the machine to try again")
    # record the attempt first: a crash after the PATCH must not lead to a loop
    await ctx.api.set_param("machines", _uuid(action), "bios-last-attempted-configuration", change)
    await bmc.call("PATCH", settings, {"Attributes": change})
    after, _ = await bmc.attributes(path)
    pending = difference(change, after)
    return {"Applied": change, "RebootNeeded": bool(pending)}


@provider.action("bios-reset-defaults", model="machines", required=CONNECTION, optional=OPTIONAL)
async def reset_defaults(ctx: Context, action: Action) -> Any:
    bmc = Bmc(action.Params)
    path = await bmc.bios_path()
    bios = await bmc.call("GET", path)
    target = path.rstrip("/") + "/Actions/Bios.ResetBios"
    actions = bios.get("Actions") if isinstance(bios, dict) else None
    if isinstance(actions, dict) and isinstance(actions.get("#Bios.ResetBios"), dict):
        target = str(actions["#Bios.ResetBios"].get("target") or target)
    await bmc.call("POST", target, {})
    return {"Reset": True, "RebootNeeded": True}


if __name__ == "__main__":
    provider.main()
