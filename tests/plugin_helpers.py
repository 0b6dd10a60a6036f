"""Helpers for tests that run real provider executables under a real drpd."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

PROVIDERS = Path(__file__).parent / "providers"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] != b"Z"


def install(plugin_dir: Path, source: str, name: str | None = None,
            env: dict[str, str] | None = None) -> Path:
    """Put a test provider into ``plugin_dir`` as ``name`` (before drpd starts).

    With ``env``, install a small shell wrapper that sets those variables
    (e.g. ``DRPD_TEST_MODE``) and runs the provider.
    """
    plugin_dir.mkdir(parents=True, exist_ok=True)
    target = plugin_dir / (name or source)
    if env:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        target.write_text(f'#!/bin/sh\n{exports} exec python3 {PROVIDERS / source}.py "$@"\n')
    else:
        shutil.copyfile(PROVIDERS / f"{source}.py", target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


def wrapper_bytes(source: str, env: dict[str, str]) -> bytes:
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    return f'#!/bin/sh\n{exports} exec python3 {PROVIDERS / source}.py "$@"\n'.encode()


async def wait_for(check: Callable[[], Any], limit: float = 15.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, for ``limit`` s."""
    with trio.fail_after(limit):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.05)


async def plugin(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await api.get(f"/plugins/{name}")
    assert r.status_code == 200, r.text
    return r.json()


async def wait_plugin(api: httpx.AsyncClient, name: str, predicate: Callable[[dict[str, Any]], bool],
                      limit: float = 15.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        p = await plugin(api, name)
        return p if predicate(p) else None

    try:
        return await wait_for(check, limit)
    except trio.TooSlowError:
        raise AssertionError(f"plugin {name} never got there: {await plugin(api, name)}") from None


def running_pids_with(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd and alive(int(entry)):
                pids.append(int(entry))
    return pids


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def proc_cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
