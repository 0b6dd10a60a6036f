#!/usr/bin/env python3
"""incrementer: DRP's classic example provider, on drpd.sdk.

Actions: ``increment`` (machines) adds ``incrementer/step`` (default 1) to
the machine param named by ``incrementer/parameter`` (default
``incrementer/count``) through drpd's API and counts the call in an
``incrementers`` object; ``reset_count`` (machines) sets it back to 0;
``incrstatus`` (system) reports the counters. It declares the
``incrementers`` object type (StoreObjects, DRP's field-map form) and ships a
small content bundle with its params' schemas. AutoStart: installing it
creates an instance named ``incrementer``.
"""

from __future__ import annotations

from typing import Any

from drpd.sdk import Action, ActionError, Context, Provider

CONTENT = """
meta:
  Name: incrementer
  Version: 1.0.0
  Description: Params of the incrementer provider
sections:
  params:
    incrementer/step:
      Name: incrementer/step
      Description: How much increment adds.
      Schema: {type: integer, default: 1}
    incrementer/parameter:
      Name: incrementer/parameter
      Description: The machine param that increment changes.
      Schema: {type: string, default: incrementer/count}
    incrementer/count:
      Name: incrementer/count
      Description: The counter increment changes by default.
      Schema: {type: integer}
  profiles:
    incrementer-by-ten:
      Name: incrementer-by-ten
      Description: Machines with this profile increment by ten.
      Params: {incrementer/step: 10}
"""

provider = Provider(
    "incrementer",
    "1.0.0",
    auto_start=True,
    store_objects={
        "incrementers": {
            "Id": {"type": "string", "isrequired": True},
            "Calls": {"type": "integer", "minimum": 0},
            "Parameter": {"type": "string"},
        }
    },
    content=CONTENT,
    documentation="Increments a machine param; DRP's example provider.",
)


async def _count_call(ctx: Context, parameter: str) -> None:
    """Keep a per-parameter call counter in the incrementers object type."""
    api = ctx.api
    key = parameter.replace("/", "-")
    try:
        obj = await api.get("incrementers", key)
        await api.update("incrementers", key, {"Calls": obj.get("Calls", 0) + 1})
    except Exception as exc:  # drpd.client.ClientError; imported lazily by ctx.api
        if getattr(exc, "code", None) != 404:
            raise
        await api.create("incrementers", {"Id": key, "Calls": 1, "Parameter": parameter})


@provider.action("increment", model="machines",
                 optional=["incrementer/step", "incrementer/parameter"])
async def increment(ctx: Context, action: Action) -> Any:
    step = action.Params.get("incrementer/step", 1)
    parameter = action.Params.get("incrementer/parameter", "incrementer/count")
    if not isinstance(step, int):
        raise ActionError(422, f"incrementer/step must be an integer, not {step!r}")
    uuid = action.Model["Uuid"]
    current = (action.Model.get("Params") or {}).get(parameter, 0)
    if not isinstance(current, int):
        raise ActionError(409, f"{parameter} holds {current!r}, not a number")
    value = current + step
    await ctx.api.set_param("machines", uuid, parameter, value)
    await _count_call(ctx, parameter)
    return {"Parameter": parameter, "Value": value}


@provider.action("reset_count", model="machines", optional=["incrementer/parameter"])
async def reset_count(ctx: Context, action: Action) -> Any:
    parameter = action.Params.get("incrementer/parameter", "incrementer/count")
    await ctx.api.set_param("machines", action.Model["Uuid"], parameter, 0)
    return {"Parameter": parameter, "Value": 0}


@provider.action("incrstatus", model="system")
async def incrstatus(ctx: Context, action: Action) -> Any:
    counters = await ctx.objects("incrementers")
    return {"Instance": ctx.name, "Counters": {c["Id"]: c.get("Calls", 0) for c in counters}}


if __name__ == "__main__":
    provider.main()
