"""Asking a provider executable what it is (``define``) and to ``unpack``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import NamedTuple

import msgspec
import trio

from ..models import KINDS, PluginProvider
from ..models.extended import extended_kind
from ..models.names import is_fixed_route, is_valid_name, is_valid_provider_name
from .identity import ProviderUser, spawn_options
from .processes import signal_group

_decode = msgspec.json.Decoder(PluginProvider)


class DefineError(Exception):
    """Why a provider executable was rejected, naming the binary."""


#: bytes of a verb's stderr kept (its tail) for messages
STDERR_TAIL = 64 * 1024
#: bytes of ``unpack``'s stdout kept: nobody reads it, it is only drained
UNPACK_STDOUT = 64 * 1024


class VerbResult(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: bytes
    #: stdout passed ``max_stdout`` (``keep_stdout``): the process was killed
    overflow: bool


async def _read_bounded(stream: trio.abc.ReceiveStream, buf: bytearray, limit: int,
                        *, tail: bool, on_overflow: Callable[[], None] | None) -> None:
    """Read ``stream`` to its end into ``buf``, never holding more than ``limit`` bytes.

    ``tail`` keeps the last ``limit`` bytes (the stream is drained); otherwise
    reaching past ``limit`` calls ``on_overflow`` and stops reading.
    """
    while chunk := await stream.receive_some(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            if tail:
                del buf[:len(buf) - limit]
            else:
                del buf[limit:]
                if on_overflow is not None:
                    on_overflow()
                return


async def run_verb(
    binary: Path, args: list[str], *, env: Mapping[str, str], limit: float,
    cwd: Path | None = None, max_stdout: int = UNPACK_STDOUT, keep_stdout: bool = False,
    user: ProviderUser | None = None,
) -> VerbResult:
    """Run ``binary args...`` to completion within ``limit`` seconds, else SIGKILL its group.

    Its output is read bounded, never whole into memory: with ``keep_stdout``
    (``define``: the answer is needed) stdout past ``max_stdout`` bytes kills
    the process and sets ``overflow``; otherwise only the last ``max_stdout``
    bytes are kept. Of stderr the last ``STDERR_TAIL`` bytes are kept.
    """
    out, err = bytearray(), bytearray()
    overflow = False
    with trio.fail_after(limit):
        process = await trio.lowlevel.open_process(
            [str(binary), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(env), cwd=str(cwd) if cwd else None,
            start_new_session=True, **spawn_options(user),
        )
        # owned from here: whatever happens below, its group is killed and reaped
        try:
            def too_much() -> None:
                nonlocal overflow
                overflow = True
                signal_group(process.pid, signal.SIGKILL)

            assert process.stdout is not None and process.stderr is not None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(_read_bounded, process.stdout, out, max_stdout,
                                           tail=not keep_stdout, on_overflow=too_much))
                nursery.start_soon(partial(_read_bounded, process.stderr, err, STDERR_TAIL,
                                           tail=True, on_overflow=None))
                await process.wait()
                # a grandchild may hold the pipes open: the process is what
                # counts, and what it wrote is read by now or within a moment
                nursery.cancel_scope.deadline = trio.current_time() + 1.0
        except BaseException:
            signal_group(process.pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await process.wait()
            raise
        finally:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
    returncode = process.returncode
    assert returncode is not None
    return VerbResult(returncode, bytes(out), bytes(err), overflow)


def _tail(data: bytes, limit: int = 600) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


async def define(binary: Path, *, env: Mapping[str, str], limit: float,
                 label: str | None = None, max_output: int = 16 << 20,
                 user: ProviderUser | None = None) -> PluginProvider:
    """Run ``define`` and validate its answer; raises ``DefineError``.

    ``label`` names the file in messages (an upload's temporary path means
    nothing to the person who uploaded it). An answer longer than
    ``max_output`` bytes is refused without being read whole.
    """
    shown = label or str(binary)
    if not os.access(binary, os.X_OK):
        raise DefineError(f"{shown}: not an executable file")
    try:
        result = await run_verb(binary, ["define"], env=env, limit=limit,
                                max_stdout=max_output, keep_stdout=True, user=user)
    except trio.TooSlowError:
        raise DefineError(f"{shown} define: no answer within {limit:g} s") from None
    except OSError as exc:
        raise DefineError(f"{shown} define: cannot run it: {exc.strerror or exc}") from None
    if result.overflow:
        raise DefineError(f"{shown} define: its answer is over max_define_output "
                          f"({max_output} bytes)")
    if result.returncode != 0:
        stderr = _tail(result.stderr)
        raise DefineError(
            f"{shown} define: exit status {result.returncode}"
            + (f": {stderr}" if stderr else "")
        )
    try:
        provider = _decode.decode(result.stdout)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
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
        # an empty Model means a system action; it is kept empty, as DRP shows it
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
        if is_fixed_route(prefix):
            raise DefineError(f"{binary} define: StoreObjects prefix {prefix!r} is the name of "
                              f"a fixed route (/api/v3/{prefix})")
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
