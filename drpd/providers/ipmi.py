#!/usr/bin/env python3
"""ipmi: power and boot-device control of machines through their BMCs.

Actions (all on ``machines``): ``power-on``, ``power-off``,
``power-cycle``, ``power-status`` and ``set-boot-order``. Each runs
Debian's ``ipmitool`` over IPMI v2 / RMCP+ (``-I lanplus``) against the
BMC named by the machine's params::

    ipmitool -I lanplus -H <ipmi/address> -p <ipmi/port> -U <ipmi/username> -E \\
        chassis power on|off|cycle|status
    ipmitool ... chassis bootdev <ipmi/boot-device>

The password goes to ipmitool in its environment (``-E`` reads
``IPMI_PASSWORD``), never on its command line where ``ps`` shows it.
ipmitool gets a small environment of its own (no drpd token) and no stdin.

Params (drpd resolves them from the call, the machine, its profiles, this
instance, then the schema default; the content bundle below ships them):
``ipmi/address``, ``ipmi/username``, ``ipmi/password`` (Secure) are
required; ``ipmi/port`` defaults to 623; ``ipmi/boot-device`` (one of
ipmitool's devices: none, pxe, disk, safe, diag, cdrom, bios, floppy) is
required by ``set-boot-order``; ``ipmi/timeout`` (seconds, default 20) bounds
each ipmitool run; keep it below drpd's action timeout (default 60 s).

Results: ``power-status`` answers ``{"Power": "on"|"off"}``; the power
controls answer ``{"Power": <the state asked for>, "Result": <ipmitool's
line>}`` once the BMC accepted the command; ``set-boot-order`` answers
``{"BootDevice": <device>, "Result": ...}``.

Errors (an ``Error`` whose Code is the HTTP status drpd passes on):
422 a param ipmitool cannot take; 502 no IPMI session (the BMC is
unreachable, or the username or password is wrong) or another ipmitool
failure; 409 the BMC refused the command (e.g. a power cycle of a machine
that is off: "not supported in present state"); 504 ipmitool did not
finish within ``ipmi/timeout``; 503 ipmitool is missing. Messages name the
BMC, the command, ipmitool's exit status and the tail of its stderr.

Config refuses to start the instance when ``ipmitool`` is not on PATH, so
drpd shows it ``Available: false`` with "install ipmitool" in ``Errors``.
Not AutoStart: create an instance (``drpcli plugins create '{"Name":
"ipmi", "Provider": "ipmi"}'``), with shared credentials in its Params if
the BMCs have them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from drpd.sdk import Action, ActionError, Context, Provider

BOOT_DEVICES = ("none", "pxe", "disk", "safe", "diag", "cdrom", "bios", "floppy")
DEFAULT_PORT = 623
DEFAULT_TIMEOUT = 20
#: IPMI v2.0 limits (ipmitool refuses longer ones)
MAX_USERNAME = 16
MAX_PASSWORD = 20
#: how much of ipmitool's stderr goes into an error message
STDERR_LINES = 4
STDERR_CHARS = 600

CONTENT = f"""
meta:
  Name: ipmi
  Version: 1.0.0
  Description: Params of the ipmi provider
sections:
  params:
    ipmi/address:
      Name: ipmi/address
      Description: Host name or IP address of the machine's BMC.
      Schema: {{type: string, minLength: 1}}
    ipmi/port:
      Name: ipmi/port
      Description: UDP port of the BMC's IPMI-over-LAN service.
      Schema: {{type: integer, minimum: 1, maximum: 65535, default: {DEFAULT_PORT}}}
    ipmi/username:
      Name: ipmi/username
      Description: BMC user for IPMI v2 (RMCP+) sessions.
      Schema: {{type: string, maxLength: {MAX_USERNAME}}}
    ipmi/password:
      Name: ipmi/password
      Description: Password of ipmi/username on the BMC.
      Secure: true
      Schema: {{type: string, maxLength: {MAX_PASSWORD}}}
    ipmi/boot-device:
      Name: ipmi/boot-device
      Description: Device the machine boots from next (set-boot-order).
      Schema: {{type: string, enum: [{", ".join(BOOT_DEVICES)}]}}
    ipmi/timeout:
      Name: ipmi/timeout
      Description: Seconds one ipmitool run may take; keep it below drpd's action timeout.
      Schema: {{type: integer, minimum: 1, maximum: 300, default: {DEFAULT_TIMEOUT}}}
"""

CONNECTION = ["ipmi/address", "ipmi/username", "ipmi/password"]
OPTIONAL = ["ipmi/port", "ipmi/timeout"]

provider = Provider(
    "ipmi",
    "1.0.0",
    # an instance may carry defaults shared by its machines (e.g. credentials)
    optional=[*CONNECTION, *OPTIONAL, "ipmi/boot-device"],
    content=CONTENT,
    documentation=__doc__ or "",
)

#: ipmitool's path, found by config
_ipmitool: str | None = None


@provider.config
async def config(ctx: Context, params: dict[str, Any]) -> None:
    global _ipmitool
    _ipmitool = shutil.which("ipmitool")
    if _ipmitool is None:
        raise ActionError(
            503,
            "ipmitool is not installed (not found on PATH "
            f"{os.environ.get('PATH', '')!r}): install ipmitool "
            "(Debian/Ubuntu: apt-get install ipmitool); drpd retries the start with back-off, "
            "`drpcli plugins restart <instance>` retries at once",
        )


# ---------------------------------------------------------------- params


def _text(params: dict[str, Any], name: str, *, secret: bool = False) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        shown = type(value).__name__ if secret else repr(value)
        raise ActionError(422, f"{name} must be a string, not {shown}")
    return value


def _integer(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ActionError(422, f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


class Target:
    """One BMC and how to reach it, checked from an action's params."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.address = _text(params, "ipmi/address").strip()
        if (not self.address or self.address.startswith("-")
                or any(c.isspace() or not c.isprintable() for c in self.address)):
            raise ActionError(422, f"ipmi/address {self.address!r} is not a host name or address")
        self.username = _text(params, "ipmi/username")
        if len(self.username.encode()) > MAX_USERNAME:
            raise ActionError(422, f"ipmi/username is longer than {MAX_USERNAME} bytes")
        self.password = _text(params, "ipmi/password", secret=True)
        if len(self.password.encode()) > MAX_PASSWORD:
            raise ActionError(422, f"ipmi/password is longer than {MAX_PASSWORD} bytes")
        self.port = _integer(params, "ipmi/port", DEFAULT_PORT, 1, 65535)
        self.timeout = _integer(params, "ipmi/timeout", DEFAULT_TIMEOUT, 1, 300)

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    def argv(self, ipmitool: str, command: list[str]) -> list[str]:
        # -E: the password comes from IPMI_PASSWORD; an empty one is no secret
        auth = ["-E"] if self.password else ["-P", ""]
        return [ipmitool, "-I", "lanplus", "-H", self.address, "-p", str(self.port),
                "-U", self.username, *auth, *command]


# ---------------------------------------------------------------- ipmitool


def _tail(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    tail = "; ".join([line for line in lines if line][-STDERR_LINES:])
    return tail[-STDERR_CHARS:] or "no error output"


async def ipmitool(target: Target, command: list[str]) -> str:
    """Run ``ipmitool ... <command>`` against ``target``; its stdout, or ActionError."""
    import trio  # serve has loaded it already; keeps `define` light

    what = " ".join(command)
    binary = _ipmitool or shutil.which("ipmitool")
    if binary is None:
        raise ActionError(503, "ipmitool is not installed: install ipmitool (apt-get install ipmitool)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "IPMI_PASSWORD": target.password}
    result: subprocess.CompletedProcess[bytes] | None = None
    with trio.move_on_after(target.timeout):
        try:
            result = await trio.run_process(
                target.argv(binary, command), stdin=subprocess.DEVNULL, capture_stdout=True,
                capture_stderr=True, check=False, env=env)
        except OSError as exc:
            raise ActionError(503, f"cannot run {binary}: {exc}; install ipmitool") from None
    if result is None:
        raise ActionError(
            504, f"BMC {target} did not answer {what} within {target.timeout} s "
            "(ipmitool stopped; is the BMC reachable on that address and UDP port?)")
    stdout = result.stdout.decode(errors="replace").strip()
    stderr = result.stderr.decode(errors="replace")
    status = f"ipmitool exit status {result.returncode}: {_tail(result.stderr)}"
    if "Unable to establish IPMI v2" in stderr or "Address lookup for" in stderr:
        raise ActionError(
            502, f"no IPMI session with BMC {target} for {what}: the BMC is unreachable "
            f"or ipmi/username or ipmi/password is wrong ({status})")
    if " failed: " in stderr:
        # the BMC answered with an error completion code, e.g. "Set Chassis
        # Power Control to Cycle failed: Command not supported in present state"
        # (ipmitool exits 0 for some of these, e.g. bootdev)
        raise ActionError(409, f"BMC {target} refused {what} ({status})")
    if result.returncode != 0:
        raise ActionError(502, f"{what} on BMC {target} failed ({status})")
    return stdout


# ---------------------------------------------------------------- actions


async def _power(action: Action, word: str, state: str, expect: str) -> Any:
    target = Target(action.Params)
    out = await ipmitool(target, ["chassis", "power", word])
    if f"Chassis Power Control: {expect}" not in out:
        raise ActionError(502, f"unexpected answer from BMC {target} to chassis power "
                               f"{word}: {out!r}")
    return {"Power": state, "Result": out}


@provider.action("power-on", model="machines", required=CONNECTION, optional=OPTIONAL)
async def power_on(ctx: Context, action: Action) -> Any:
    return await _power(action, "on", "on", "Up/On")


@provider.action("power-off", model="machines", required=CONNECTION, optional=OPTIONAL)
async def power_off(ctx: Context, action: Action) -> Any:
    return await _power(action, "off", "off", "Down/Off")


@provider.action("power-cycle", model="machines", required=CONNECTION, optional=OPTIONAL)
async def power_cycle(ctx: Context, action: Action) -> Any:
    return await _power(action, "cycle", "on", "Cycle")


@provider.action("power-status", model="machines", required=CONNECTION, optional=OPTIONAL)
async def power_status(ctx: Context, action: Action) -> Any:
    target = Target(action.Params)
    out = await ipmitool(target, ["chassis", "power", "status"])
    for state in ("on", "off"):
        if out == f"Chassis Power is {state}":
            return {"Power": state}
    raise ActionError(502, f"unexpected answer from BMC {target} to chassis power status: {out!r}")


@provider.action("set-boot-order", model="machines", required=[*CONNECTION, "ipmi/boot-device"],
                 optional=OPTIONAL)
async def set_boot_order(ctx: Context, action: Action) -> Any:
    target = Target(action.Params)
    device = action.Params.get("ipmi/boot-device")
    if device not in BOOT_DEVICES:
        raise ActionError(422, f"ipmi/boot-device must be one of {', '.join(BOOT_DEVICES)}, "
                               f"not {device!r}")
    out = await ipmitool(target, ["chassis", "bootdev", device])
    if f"Set Boot Device to {device}" not in out:
        raise ActionError(502, f"unexpected answer from BMC {target} to chassis bootdev "
                               f"{device}: {out!r}")
    return {"BootDevice": device, "Result": out}


if __name__ == "__main__":
    provider.main()
