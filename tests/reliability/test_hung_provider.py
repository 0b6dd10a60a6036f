"""A hung provider (SIGSTOPped: alive, silent) is noticed and restarted.

Before: it stayed ``Available: true`` with empty ``PluginErrors`` and every
action waited the whole ``action_timeout`` (issue 11, item 25). Now each 504
is recorded in ``PluginErrors`` and after ``action_timeouts_before_restart``
in a row drpd restarts the instance.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import alive, install, wait_plugin


async def test_a_stopped_provider_is_recorded_then_restarted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider")
    env = {"DRPD_ACTION_TIMEOUT": "1", "DRPD_ACTION_TIMEOUTS_BEFORE_RESTART": "2",
           "DRPD_STOP_GRACE": "1", "DRPD_BACKOFF_INITIAL": "1"}
    with DrpdProcess(state, env=env) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "hung", "Provider": "plain_provider"})
            assert r.status_code == 201 and r.json()["Available"], r.text
            pid = r.json()["Runtime"]["Pid"]
            assert (await api.post("/system/actions/ping?plugin=hung")).status_code == 200

            os.kill(pid, signal.SIGSTOP)
            try:
                r = await api.post("/system/actions/ping?plugin=hung")
                assert r.status_code == 504, r.text
                p = (await api.get("/plugins/hung")).json()
                # one timeout: recorded, not yet restarted
                assert any("did not answer action 'ping' within 1 s" in e
                           for e in p["PluginErrors"]), p
                assert p["Runtime"]["Pid"] == pid

                r = await api.post("/system/actions/ping?plugin=hung")
                assert r.status_code == 504, r.text
                # the second in a row restarts it: the stopped process is killed
                p = await wait_plugin(api, "hung", lambda p: p["Available"]
                                      and p["Runtime"]["Pid"] not in (0, pid))
                assert any("restarting the provider" in e for e in p["PluginErrors"]), p
                assert not alive(pid)
            finally:
                if alive(pid):
                    os.kill(pid, signal.SIGCONT)
            r = await api.post("/system/actions/ping?plugin=hung")
            assert r.status_code == 200, r.text


async def test_an_answer_between_timeouts_resets_the_count(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider")
    env = {"DRPD_ACTION_TIMEOUT": "1", "DRPD_ACTION_TIMEOUTS_BEFORE_RESTART": "2",
           "DRPD_STOP_GRACE": "1"}
    with DrpdProcess(state, env=env) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "slow", "Provider": "plain_provider"})
            pid = r.json()["Runtime"]["Pid"]
            for _ in range(2):
                os.kill(pid, signal.SIGSTOP)
                try:
                    r = await api.post("/system/actions/ping?plugin=slow")
                    assert r.status_code == 504, r.text
                finally:
                    os.kill(pid, signal.SIGCONT)
                # it answers again: the count starts over
                r = await api.post("/system/actions/ping?plugin=slow")
                assert r.status_code == 200, r.text
            p = (await api.get("/plugins/slow")).json()
            assert p["Runtime"]["Pid"] == pid and p["Runtime"]["Restarts"] == 0
            assert sum("did not answer" in e for e in p["PluginErrors"]) == 2
