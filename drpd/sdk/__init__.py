"""Write drpd (and DRP v4) plugin providers in Python.

A provider is one executable file; drpd runs it as ``define``, ``unpack
<dir>`` and ``serve <plugin-socket> <server-socket>`` (docs/protocol.md). This
package does all of that; the author declares the provider and writes
async handlers. A complete provider with one action::

    #!/usr/bin/env python3
    from typing import Any

    from drpd.sdk import Action, ActionError, Context, Provider

    provider = Provider(
        "hello",
        "1.0.0",
        required=["hello/greeting"],
        documentation="Greets machines.",
    )


    @provider.config
    async def config(ctx: Context, params: dict[str, Any]) -> None:
        if not params["hello/greeting"]:
            raise ActionError(422, "hello/greeting is empty")


    @provider.action("greet", model="machines", optional=["hello/name"])
    async def greet(ctx: Context, action: Action) -> Any:
        name = action.Params.get("hello/name") or action.Model["Name"]
        await ctx.publish("machines", "greeted", action.Model["Uuid"], {"Name": name})
        return f"{ctx.config['hello/greeting']}, {name}!"


    if __name__ == "__main__":
        provider.main()

Handlers and what they get:

- ``@provider.config``: ``(ctx, params)``, the instance's params plus
  ``"Name"``; also stored as ``ctx.config`` / ``ctx.name``.
- ``@provider.action(cmd, model=..., required=[...], optional=[...])``:
  ``(ctx, action)`` with ``Model``, ``Plugin``, ``Command``, ``CommandSet``,
  ``Params``; returns any JSON-able value. Actions run concurrently.
- ``@provider.publish``: ``(ctx, event)`` for every event, in order (this
  sets ``HasPublish``).
- Selected events instead of every event (DRP's ``SelectEvents``):
  ``Provider(..., events=["machines.*.*"])`` sends only those to the publish
  handler, and ``@provider.events("machines.create.*", "plugins.*.*")``
  registers ``(ctx, event)`` for its own patterns (``<type>.<action>.<key>``,
  ``*`` or comma lists). They arrive over drpd's websocket, in order, and a
  dropped connection resumes without losing any (``HasPublish`` stays off).
- ``@provider.stop``: ``(ctx)`` before the process exits.

Any handler may raise :class:`ActionError` ``(code, message)`` to answer
with a DRP ``Error`` of that ``Code``; another exception answers 500 and
its traceback goes to stderr (drpd's log). ``ctx`` talks to drpd:
``publish``, ``log``, ``leaving``, ``objects`` and ``api`` (the REST API,
loaded on first use). Files for ``unpack``: :meth:`Provider.add_file`.

Cost: importing this package loads msgspec and drpd's models only; trio
and h11 load for ``serve``, httpx on first use of ``ctx.api``, and
trio-websocket (with httpx) only when ``serve`` runs with selected events.
"""

from drpd.models.errors import Error
from drpd.models.objects import Action, Event

from ._context import Context, ServerError
from ._provider import ActionError, Provider

__all__ = ["Action", "ActionError", "Context", "Error", "Event", "Provider", "ServerError"]
