#!/usr/bin/env python3
"""A provider that selects its events (DRP's SelectEvents) instead of HasPublish.

``machines.*.*`` events go to its publish handler and ``watch.*.*`` events to
an ``@provider.events`` handler; both log each event through ``ctx.log`` as
``<handler> <Seq> <Type> <Action> <Key>``, so a test reads what arrived, in
order, from ``GET /plugins/<name>/log``. The events come over drpd's
websocket (``RS_ENDPOINT``), so a test can cut that connection with a proxy.
"""

from drpd.sdk import Context, Event, Provider

provider = Provider(
    "sdk_watcher",
    "0.1.0",
    events=["machines.*.*"],
    documentation="Logs the events it selected; a test fixture.",
)


@provider.publish
async def on_machine(ctx: Context, event: Event) -> None:
    await ctx.log("info", f"publish {event.Seq} {event.Type} {event.Action} {event.Key}")


@provider.events("watch.*.*")
async def on_watch(ctx: Context, event: Event) -> None:
    await ctx.log("info", f"watch {event.Seq} {event.Type} {event.Action} {event.Key}")


if __name__ == "__main__":
    provider.main()
