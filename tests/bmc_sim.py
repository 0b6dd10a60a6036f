#!/usr/bin/env python3
"""A simulated BMC for the ipmi provider's tests: IPMI over LAN (RMCP+) on UDP.

Built on ``pyghmi.ipmi.bmc.Bmc`` (the base VirtualBMC uses), so ``ipmitool
-I lanplus`` talks to it as to a server's BMC: it opens a real RMCP+ session
(RAKP with the user's password), then asks for the chassis status, power
control and boot options. The simulated machine's power state and next
boot device really change.

    python tests/bmc_sim.py --port 0 --user admin --password secret --state s.json

binds ``127.0.0.1`` (port 0 picks a free one), writes the state file, then
prints ``PORT <n>`` on stdout once it answers. Every change rewrites the
state file (atomically, before the BMC answers the request that made it):
``{"Power": "on"|"off", "BootDevice": <pyghmi name>, "Events": [...]}``.
So a test that got ipmitool's answer can read the file with no waiting.
SIGTERM or SIGINT ends it.

Behaviour worth knowing: power cycle and reset of a machine that is off
answer completion code 0xD5 (not supported in present state), as the IPMI
spec allows and many real BMCs do. pyghmi names boot devices ``network``
(ipmitool's ``pxe``), ``hd`` (``disk``), ``optical`` (``cdrom``),
``setup`` (``bios``), ``safe``, ``floppy`` and ``default`` (``none``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

try:
    import pyghmi.ipmi.bmc as bmc
except ImportError:  # pragma: no cover - reported to the test that started us
    sys.stderr.write("bmc_sim: pyghmi is not installed (pip install pyghmi)\n")
    sys.exit(3)

NOT_IN_PRESENT_STATE = 0xD5


class SimBmc(bmc.Bmc):
    """One simulated server's BMC, its state kept in ``state_file``."""

    def __init__(self, authdata: dict[str, str], port: int, state_file: Path,
                 power: str = "off", boot_device: str = "default") -> None:
        super().__init__(authdata, port=port, address="127.0.0.1")
        # pyghmi routes session packets by (client address, self.port): with
        # port 0 that must become the port the socket really got
        self.port = int(self.serversocket.getsockname()[1])
        self.state_file = state_file
        self.lock = threading.Lock()
        self.power = power
        self.boot_device = boot_device
        self.events: list[str] = []
        self._save()

    def _save(self) -> None:
        state: dict[str, Any] = {"Power": self.power, "BootDevice": self.boot_device,
                                 "Events": self.events}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def _change(self, event: str, **fields: str) -> None:
        with self.lock:
            for name, value in fields.items():
                setattr(self, name, value)
            self.events.append(event)
            self._save()

    # -- what pyghmi's Bmc asks of an implementation ---------------------------
    def get_power_state(self) -> str:
        return self.power

    def power_on(self) -> int:
        self._change("power_on", power="on")
        return 0

    def power_off(self) -> int:
        self._change("power_off", power="off")
        return 0

    def power_shutdown(self) -> int:
        self._change("power_shutdown", power="off")
        return 0

    def power_cycle(self) -> int:
        if self.power != "on":
            return NOT_IN_PRESENT_STATE
        self._change("power_cycle", power="on")
        return 0

    def power_reset(self) -> int:
        if self.power != "on":
            return NOT_IN_PRESENT_STATE
        self._change("power_reset", power="on")
        return 0

    def get_boot_device(self) -> str:
        return self.boot_device

    def set_boot_device(self, bootdevice: str) -> None:
        self._change(f"set_boot_device {bootdevice}", boot_device=bootdevice)

    def is_active(self) -> bool:
        return self.power == "on"

    def get_system_guid(self) -> Any:
        return self.uuid

    def cold_reset(self) -> int:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (0: any free)")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="password")
    parser.add_argument("--state", required=True, type=Path, help="state file to keep current")
    parser.add_argument("--power", choices=["on", "off"], default="off")
    parser.add_argument("--boot-device", default="default")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sim = SimBmc({args.user: args.password}, args.port, args.state, args.power, args.boot_device)
    print(f"PORT {sim.port}", flush=True)
    try:
        sim.listen(timeout=1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
