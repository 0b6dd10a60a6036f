#!/usr/bin/env python3
"""A provider that tries, with its own token, what a provider may and may not do.

``probe`` (machines) tries each write in ``TRIES`` during the action on its
target and answers ``{name: HTTP status}``; ``probe-outside`` (system) tries
to change the machine named by ``probe/machine`` with no action on it in
flight. It declares one ExtraClaims entry (reading users), which only an
instance's ``ExtraClaims`` grant makes real.
"""

from typing import Any

from drpd.client import ClientError
from drpd.sdk import Action, Context, Provider

provider = Provider(
    "sdk_prober", "1.0.0",
    optional=["probe/machine"],
    store_objects={"probe-notes": {"type": "object", "properties": {"Id": {"type": "string"}}}},
    extra_claims=[{"scope": "users", "action": "list", "specific": "*"}],
)


async def _status(ctx: Context, method: str, path: str, body: Any = None) -> int:
    try:
        await ctx.api.request(method, path, json=body)
    except ClientError as exc:
        return exc.code
    return 200


@provider.action("probe", model="machines", optional=["probe/machine"])
async def probe(ctx: Context, action: Action) -> Any:
    me = action.Model["Uuid"]
    other = action.Params.get("probe/machine", "")
    return {
        "patch-target": await _status(ctx, "PATCH", f"/machines/{me}", {"Description": "probed"}),
        "param-target": await _status(ctx, "PUT", f"/machines/{me}/params/probe/machine", "x"),
        "decode-target": await _status(ctx, "GET", f"/machines/{me}?decode=true"),
        "patch-other": await _status(ctx, "PATCH", f"/machines/{other}", {"Description": "no"}),
        "delete-target": await _status(ctx, "DELETE", f"/machines/{me}"),
        "read-other": await _status(ctx, "GET", f"/machines/{other}"),
        "own-objects": await _status(ctx, "POST", "/probe-notes", {"Id": f"n-{me[:8]}"}),
        "create-user": await _status(ctx, "POST", "/users", {"Name": "evil", "Password": "x"}),
        "list-users": await _status(ctx, "GET", "/users"),
        "token-admin": await _status(ctx, "GET", "/users/rocketskates/token"),
        "upload-provider": await _status(ctx, "POST", "/plugin_providers/evil"),
        "write-file": await _status(ctx, "POST", "/files/evil.txt", "x"),
        "create-role": await _status(ctx, "POST", "/roles", {"Name": "evil"}),
        "other-plugin": await _status(ctx, "DELETE", "/plugins/victim"),
        "post-event": await _status(ctx, "POST", "/events",
                                    {"Type": "probe", "Action": "ran", "Key": me}),
    }


@provider.action("probe-outside", model="system", optional=["probe/machine"])
async def probe_outside(ctx: Context, action: Action) -> Any:
    target = action.Params.get("probe/machine", "")
    return {"patch-machine": await _status(ctx, "PATCH", f"/machines/{target}",
                                           {"Description": "outside"})}


if __name__ == "__main__":
    provider.main()
