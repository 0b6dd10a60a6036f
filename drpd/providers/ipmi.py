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
AutoStart: installing the provider creates the ``ipmi`` instance (no
params needed; put shared credentials in its Params if the BMCs have them).

Upstream's names work too: actions ``poweron``, ``poweroff``,
``powercycle``, ``powerstatus``, ``status``, ``nextbootpxe``,
``nextbootdisk``, ``nextbootcd`` (``options=efiboot`` when
``detected-bios-mode`` is ``uefi``), ``forcebootpxe``, ``forcebootdisk``
(next boot, then power on or cycle), ``identify``
(``ipmi/identify-duration`` seconds, default 15) and ``getInfo`` (``mc
info`` as a map); ``ipmi/mode: redfish`` drives power (``ComputerSystem.Reset``)
and next boot (``Boot.BootSourceOverrideTarget``) over the BMC's Redfish API
instead, with the bios provider's params ``ipmi/port-redfish``,
``ipmi/redfish-scheme`` and ``ipmi/redfish-verify-tls``; param
``ipmi/port-ipmitool`` wins over ``ipmi/port`` when set.
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
DEFAULT_IDENTIFY = 15
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
    ipmi/port-ipmitool:
      Name: ipmi/port-ipmitool
      Description: Upstream's name for ipmi/port (UDP port of the BMC's IPMI-over-LAN service); wins when set.
      Schema: {{type: integer, minimum: 1, maximum: 65535}}
    ipmi/identify-duration:
      Name: ipmi/identify-duration
      Description: Seconds the chassis identify light stays on (identify action).
      Schema: {{type: integer, minimum: 0, maximum: 255, default: {DEFAULT_IDENTIFY}}}
    ipmi/mode:
      Name: ipmi/mode
      Description: How the BMC is driven, ipmitool (IPMI v2 over LAN) or redfish (power and next boot).
      Schema: {{type: string, enum: [ipmitool, redfish], default: ipmitool}}
    ipmi/timeout:
      Name: ipmi/timeout
      Description: Seconds one ipmitool run may take; keep it below drpd's action timeout.
      Schema: {{type: integer, minimum: 1, maximum: 300, default: {DEFAULT_TIMEOUT}}}
"""

CONNECTION = ["ipmi/address", "ipmi/username", "ipmi/password"]
OPTIONAL = ["ipmi/port", "ipmi/port-ipmitool", "ipmi/timeout", "ipmi/mode",
            "detected-bios-mode", "ipmi/port-redfish", "ipmi/redfish-scheme",
            "ipmi/redfish-verify-tls"]

provider = Provider(
    "ipmi",
    "1.0.0",
    # an instance may carry defaults shared by its machines (e.g. credentials)
    optional=[*CONNECTION, *OPTIONAL, "ipmi/boot-device", "ipmi/identify-duration"],
    # installing the provider creates the ``ipmi`` instance (the seed's "auto-created");
    # it needs no params: machines carry their BMCs' addresses
    auto_start=True,
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
        # upstream's ipmi/port-ipmitool (no default) wins when set; drpd's ipmi/port
        # has the schema default 623, so it is always resolved
        port_name = "ipmi/port-ipmitool" if params.get("ipmi/port-ipmitool") is not None \
            else "ipmi/port"
        self.port = _integer(params, port_name, DEFAULT_PORT, 1, 65535)
        mode = params.get("ipmi/mode") or "ipmitool"
        if mode not in ("ipmitool", "redfish"):
            raise ActionError(422, f"ipmi/mode must be ipmitool or redfish, not {mode!r}")
        self.redfish = mode == "redfish"
        self.uefi = str(params.get("detected-bios-mode") or "").lower() == "uefi"
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


# ---------------------------------------------------------------- redfish

#: Redfish ResetType and the power state it leads to, per ipmitool word
RESET = {"on": ("On", "on"), "off": ("ForceOff", "off"), "cycle": ("ForceRestart", "on")}
#: Boot.BootSourceOverrideTarget per ipmitool boot device
BOOT_TARGET = {"pxe": "Pxe", "disk": "Hdd", "cdrom": "Cd", "bios": "BiosSetup", "none": "None"}


async def _redfish_system(params: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    """The bios provider's Redfish client, this machine's system path and resource."""
    from drpd.providers.bios import Bmc  # the shared Redfish client (httpx)

    bmc = Bmc(params)
    systems = await bmc.call("GET", "/redfish/v1/Systems")
    members = systems.get("Members") if isinstance(systems, dict) else None
    if not members or not isinstance(members[0], dict):
        raise ActionError(502, f"BMC {bmc} lists no ComputerSystem")
    path = str(members[0].get("@odata.id"))
    system = await bmc.call("GET", path)
    return bmc, path, system if isinstance(system, dict) else {}


async def _redfish_power(params: dict[str, Any], word: str) -> dict[str, Any]:
    reset, state = RESET[word]
    bmc, path, _ = await _redfish_system(params)
    await bmc.call("POST", f"{path}/Actions/ComputerSystem.Reset", {"ResetType": reset})
    return {"Power": state, "Result": f"ComputerSystem.Reset {reset}"}


async def _redfish_status(params: dict[str, Any]) -> dict[str, Any]:
    bmc, _, system = await _redfish_system(params)
    state = str(system.get("PowerState", "")).lower()
    if state not in ("on", "off"):
        raise ActionError(502, f"unexpected PowerState from BMC {bmc}: {state!r}")
    return {"Power": state}


async def _redfish_boot(params: dict[str, Any], device: str, uefi: bool) -> dict[str, Any]:
    target = BOOT_TARGET.get(device)
    if target is None:
        raise ActionError(422, f"boot device {device!r} has no Redfish BootSourceOverrideTarget")
    bmc, path, _ = await _redfish_system(params)
    boot: dict[str, Any] = {"BootSourceOverrideTarget": target,
                            "BootSourceOverrideEnabled": "Once"}
    if uefi:
        boot["BootSourceOverrideMode"] = "UEFI"
    await bmc.call("PATCH", path, {"Boot": boot})
    return {"BootDevice": device, "Uefi": uefi, "Result": f"BootSourceOverrideTarget {target}"}


# ---------------------------------------------------------------- actions


async def _power(action: Action, word: str, state: str, expect: str) -> Any:
    target = Target(action.Params)
    if target.redfish:
        return await _redfish_power(action.Params, word)
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
    if target.redfish:
        return await _redfish_status(action.Params)
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


# ------------------------------------------------- upstream's action names
# DRP's own ipmi plugin (and kvm-test, ovirt, virtualbox-ipmi) share these
# names; tasks and users call them, so they sit beside the seed's.


@provider.action("poweron", model="machines", required=CONNECTION, optional=OPTIONAL)
async def poweron(ctx: Context, action: Action) -> Any:
    return await _power(action, "on", "on", "Up/On")


@provider.action("poweroff", model="machines", required=CONNECTION, optional=OPTIONAL)
async def poweroff(ctx: Context, action: Action) -> Any:
    return await _power(action, "off", "off", "Down/Off")


@provider.action("powercycle", model="machines", required=CONNECTION, optional=OPTIONAL)
async def powercycle(ctx: Context, action: Action) -> Any:
    return await _power(action, "cycle", "on", "Cycle")


@provider.action("powerstatus", model="machines", required=CONNECTION, optional=OPTIONAL)
async def powerstatus(ctx: Context, action: Action) -> Any:
    return await power_status(ctx, action)


@provider.action("status", model="machines", required=CONNECTION, optional=OPTIONAL)
async def status(ctx: Context, action: Action) -> Any:
    return await power_status(ctx, action)


async def _next_boot(action: Action, device: str) -> dict[str, Any]:
    """``chassis bootdev <device>`` (with ``options=efiboot`` on UEFI machines)."""
    target = Target(action.Params)
    if target.redfish:
        return await _redfish_boot(action.Params, device, target.uefi)
    command = ["chassis", "bootdev", device]
    if target.uefi:
        command.append("options=efiboot")
    out = await ipmitool(target, command)
    if f"Set Boot Device to {device}" not in out:
        raise ActionError(502, f"unexpected answer from BMC {target} to {' '.join(command)}: "
                               f"{out!r}")
    return {"BootDevice": device, "Uefi": target.uefi, "Result": out}


@provider.action("nextbootpxe", model="machines", required=CONNECTION, optional=OPTIONAL)
async def nextbootpxe(ctx: Context, action: Action) -> Any:
    return await _next_boot(action, "pxe")


@provider.action("nextbootdisk", model="machines", required=CONNECTION, optional=OPTIONAL)
async def nextbootdisk(ctx: Context, action: Action) -> Any:
    return await _next_boot(action, "disk")


@provider.action("nextbootcd", model="machines", required=CONNECTION, optional=OPTIONAL)
async def nextbootcd(ctx: Context, action: Action) -> Any:
    return await _next_boot(action, "cdrom")


async def _force_boot(action: Action, device: str) -> dict[str, Any]:
    """Set the next boot device, then start the machine from it now (on if off, else cycle)."""
    answer = await _next_boot(action, device)
    target = Target(action.Params)
    state = await ipmitool(target, ["chassis", "power", "status"])
    word, expect = ("on", "Up/On") if state == "Chassis Power is off" else ("cycle", "Cycle")
    out = await ipmitool(target, ["chassis", "power", word])
    if f"Chassis Power Control: {expect}" not in out:
        raise ActionError(502, f"unexpected answer from BMC {target} to chassis power "
                               f"{word}: {out!r}")
    return {**answer, "Power": "on", "PowerResult": out}


@provider.action("forcebootpxe", model="machines", required=CONNECTION, optional=OPTIONAL)
async def forcebootpxe(ctx: Context, action: Action) -> Any:
    return await _force_boot(action, "pxe")


@provider.action("forcebootdisk", model="machines", required=CONNECTION, optional=OPTIONAL)
async def forcebootdisk(ctx: Context, action: Action) -> Any:
    return await _force_boot(action, "disk")


@provider.action("identify", model="machines", required=CONNECTION,
                 optional=[*OPTIONAL, "ipmi/identify-duration"])
async def identify(ctx: Context, action: Action) -> Any:
    target = Target(action.Params)
    seconds = _integer(action.Params, "ipmi/identify-duration", DEFAULT_IDENTIFY, 0, 255)
    out = await ipmitool(target, ["chassis", "identify", str(seconds)])
    return {"Identify": seconds, "Result": out}


@provider.action("getInfo", model="machines", required=CONNECTION, optional=OPTIONAL)
async def get_info(ctx: Context, action: Action) -> Any:
    """The BMC's ``mc info`` as a map (Device ID, Firmware Revision, Manufacturer ...)."""
    target = Target(action.Params)
    out = await ipmitool(target, ["mc", "info"])
    info: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not line.startswith(" "):
            info[key.strip()] = value.strip()
    return info


if __name__ == "__main__":
    provider.main()
