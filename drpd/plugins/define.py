"""Asking a provider executable what it is (``define``) and to ``unpack``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import msgspec
import trio

from ..models import KINDS, PluginProvider
from ..models.extended import extended_kind
from ..models.names import is_valid_name, is_valid_provider_name
from .processes import signal_group

_decode = msgspec.json.Decoder(PluginProvider)


class DefineError(Exception):
    """Why a provider executable was rejected, naming the binary."""


async def _kill_group(process: trio.Process) -> None:
    signal_group(process.pid, signal.SIGKILL)


async def run_verb(
    binary: Path, args: list[str], *, env: Mapping[str, str], limit: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``binary args...`` to completion within ``limit`` seconds, else SIGKILL its group."""
    with trio.fail_after(limit):
        return await trio.run_process(
            [str(binary), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            deliver_cancel=_kill_group,
        )


def _tail(data: bytes, limit: int = 600) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


async def define(binary: Path, *, env: Mapping[str, str], limit: float,
                 label: str | None = None) -> PluginProvider:
    """Run ``define`` and validate its answer; raises ``DefineError``.

    ``label`` names the file in messages (an upload's temporary path means
    nothing to the person who uploaded it).
    """
    shown = label or str(binary)
    if not os.access(binary, os.X_OK):
        raise DefineError(f"{shown}: not an executable file")
    try:
        result = await run_verb(binary, ["define"], env=env, limit=limit)
    except trio.TooSlowError:
        raise DefineError(f"{shown} define: no answer within {limit:g} s") from None
    except OSError as exc:
        raise DefineError(f"{shown} define: cannot run it: {exc.strerror or exc}") from None
    if result.returncode != 0:
        stderr = _tail(result.stderr)
        raise DefineError(
            f"{shown} define: exit status {result.returncode}"
            + (f": {stderr}" if stderr else "")
        )
    try:
        provider = _decode.decode(result.stdout)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DefineError(f"{shown} define: output is not a PluginProvider JSON object: {exc}") from None
    return validate(provider, shown)


def validate(provider: PluginProvider, binary: Path | str) -> PluginProvider:
    if not is_valid_provider_name(provider.Name):
        raise DefineError(f"{binary} define: invalid provider Name {provider.Name!r}")
    if provider.PluginVersion not in (0, 4):
        raise DefineError(
            f"{binary} define: PluginVersion {provider.PluginVersion} is not supported (only 4)"
        )
    provider.PluginVersion = 4
    for action in provider.AvailableActions or []:
        if not action.Command:
            raise DefineError(f"{binary} define: an AvailableAction has no Command")
        action.Model = action.Model or "system"
        action.Provider = provider.Name
        action.RequiredParams = action.RequiredParams or []
        action.OptionalParams = action.OptionalParams or []
    provider.AvailableActions = provider.AvailableActions or []
    provider.RequiredParams = provider.RequiredParams or []
    provider.OptionalParams = provider.OptionalParams or []
    provider.StoreObjects = provider.StoreObjects or {}
    for prefix, schema in provider.StoreObjects.items():
        if not is_valid_name(prefix) or prefix in KINDS:
            raise DefineError(f"{binary} define: StoreObjects prefix {prefix!r} is not allowed")
        try:
            extended_kind(prefix, schema, provider=provider.Name)
        except Exception as exc:  # jsonschema.SchemaError and friends
            raise DefineError(
                f"{binary} define: StoreObjects {prefix!r} has a bad schema: {exc}") from None
    provider.Meta = provider.Meta or {}
    provider.Errors = []
    provider.Validated = True
    provider.Available = True
    return provider


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file; blocking, call from a worker thread."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
