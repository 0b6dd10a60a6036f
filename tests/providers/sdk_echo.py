#!/usr/bin/env python3
"""A provider written with drpd.sdk that tests can steer.

Actions: ``echo`` (machines) returns what it received; ``sleep`` waits
``echo/delay`` seconds; ``fail`` answers 418; ``crash`` exits with status 3
at once; ``whoami`` (plugins) and ``status`` (system).

Knobs, as config params (so a test provokes them per instance):
``echo/crash-on-config`` exits 3 inside config; ``echo/fail-config`` (a
code) refuses config with it; ``echo/publish-on-config`` publishes a
``echo.configured`` event and logs a line; ``echo/leave-on-config`` calls
``leaving``. Events delivered to ``publish`` are kept and returned by the
``status`` action (``HasPublish`` is set); with ``echo/log-events`` each is
also logged through ``ctx.log`` as ``event <Seq> <Type> <Action> <Key>`` (so
a test reads them from ``GET /plugins/<name>/log``), and
``echo/publish-delay`` (seconds) makes the publish handler slow.
"""

import os
import sys
from typing import Any

from drpd.sdk import Action, ActionError, Context, Event, Provider

provider = Provider(
    "sdk_echo",
    "1.2.3",
    required=["echo/greeting"],
    optional=[
        "echo/delay",
        "echo/crash-on-config",
        "echo/fail-config",
        "echo/publish-on-config",
        "echo/leave-on-config",
        "echo/log-events",
        "echo/publish-delay",
    ],
    documentation="Echoes what drpd sends; a test fixture.",
)
provider.add_file("echo-helper.sh", "#!/bin/sh\necho helper\n", mode=0o755)
provider.add_file("data/readme.txt", b"sdk_echo assets\n")

events: list[dict[str, Any]] = []


@provider.config
async def config(ctx: Context, params: dict[str, Any]) -> None:
    if params.get("echo/crash-on-config"):
        os._exit(3)
    if params.get("echo/fail-config"):
        raise ActionError(int(params["echo/fail-config"]), "config refused on request")
    if params.get("echo/publish-on-config"):
        await ctx.log("info", f"configured {ctx.name}")
        await ctx.publish("echo", "configured", ctx.name, {"Greeting": params["echo/greeting"]})
    if params.get("echo/leave-on-config"):
        await ctx.leaving()


@provider.action("echo", model="machines", required=["echo/greeting"], optional=["echo/delay"])
async def echo(ctx: Context, action: Action) -> Any:
    return {
        "Params": action.Params,
        "Model": action.Model,
        "Config": ctx.config,
        "Pid": os.getpid(),
    }


@provider.action("sleep", model="machines", optional=["echo/delay"])
async def sleep(ctx: Context, action: Action) -> Any:
    import trio  # here, not at the top: define stays free of trio's import cost

    delay = float(action.Params.get("echo/delay", ctx.config.get("echo/delay", 0.1)))
    await trio.sleep(delay)
    return {"Slept": delay}


@provider.action("target", model="machines", required=["echo/target"])
async def target(ctx: Context, action: Action) -> Any:
    return {"Params": action.Params}


@provider.action("fail", model="machines")
async def fail(ctx: Context, action: Action) -> Any:
    raise ActionError(418, "I'm a teapot")


@provider.action("crash", model="machines")
async def crash(ctx: Context, action: Action) -> Any:
    sys.stderr.write("sdk_echo: crashing on request\n")
    sys.stderr.flush()
    os._exit(3)


@provider.action("whoami", model="plugins")
async def whoami(ctx: Context, action: Action) -> Any:
    return {"Name": ctx.name, "Plugin": action.Plugin, "CommandSet": action.CommandSet}


@provider.action("status", model="system")
async def status(ctx: Context, action: Action) -> Any:
    return {"Events": events, "Objects": await ctx.objects("machines")}


@provider.publish
async def on_event(ctx: Context, event: Event) -> None:
    events.append({"Type": event.Type, "Action": event.Action, "Key": event.Key,
                   "Seq": event.Seq})
    delay = float(ctx.config.get("echo/publish-delay") or 0)
    if delay:
        import trio

        await trio.sleep(delay)
    if ctx.config.get("echo/log-events"):
        await ctx.log("info", f"event {event.Seq} {event.Type} {event.Action} {event.Key}")


if __name__ == "__main__":
    provider.main()
