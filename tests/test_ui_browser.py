"""The web page in a real browser (issue 18): Debian's chromium, headless,
driven by Playwright for Python (``executable_path``: nothing is downloaded).

One drpd (TLS, as deployed) runs the shipped incrementer provider; the tests
log in through the page, watch an instance crash and come back, run an
action from the form, follow the event tail, install from the catalog and
destroy an instance. Each main view is saved as a screenshot under
``tmp/artifacts/ui`` (or ``$DRPD_ARTIFACTS``), not committed.

The tests share one page and run in file order (each builds on the last).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drpd.testing import DrpdProcess

from .plugin_helpers import install

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parent.parent
INCREMENTER = ROOT / "drpd" / "providers" / "incrementer.py"
#: chromium's own background traffic is refused by this machine's closed network
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: every wait on the page is bounded by this (ms)
WAIT = 20_000

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and os.environ.get("CI") != "true",
    reason="Debian's chromium is missing: apt-get install chromium (make test installs it)")


def artifacts() -> Path:
    path = Path(os.environ.get("DRPD_ARTIFACTS") or ROOT / "tmp" / "artifacts") / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("ui-browser") / "state"
    (state / "plugins").mkdir(parents=True)
    # AutoStart: installing it creates (and starts) the instance `incrementer`
    shutil.copy(INCREMENTER, state / "plugins" / "incrementer")
    install(state / "plugins", "sdk_echo")  # logs every event it is sent (echo/log-events)
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2", "DRPD_ACTION_TIMEOUT": "10"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def api(drpd: DrpdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=drpd.endpoint + "/api/v3", auth=drpd.auth, verify=drpd.verify,
                      timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # launch() gives chromium a fresh, empty profile directory of its own
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, drpd: DrpdProcess) -> Iterator[Page]:
    # drpd's self-signed certificate: trusted for this context only
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  ignore_https_errors=True)
    context.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(drpd.endpoint + "/ui/")
    yield pg
    context.close()
    assert not errors, errors


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"))


def row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#instances tbody tr[data-name="{name}"]')


def test_login_is_required_and_the_token_lives_in_the_tab(page: Page) -> None:
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    page.get_by_label("User").fill("rocketskates")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user or password.")
    assert page.evaluate("sessionStorage.getItem('drpd-token')") is None
    page.get_by_label("Password").fill("r0cketsk8ts")
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("tab", name="Instances")).to_have_attribute("aria-selected", "true")
    assert page.evaluate("sessionStorage.getItem('drpd-token')")
    assert page.evaluate("localStorage.length") == 0


def test_instance_runs_crashes_backs_off_and_comes_back(page: Page, api: httpx.Client) -> None:
    r = row(page, "incrementer")
    expect(r).to_have_attribute("data-state", "running")
    expect(r.locator(".state")).to_have_text("● running")  # an icon and a word, not colour alone
    expect(page.locator("#live")).to_have_text("● live")
    before = api.get("/plugins/incrementer").json()["Runtime"]
    expect(r.locator(".restarts")).to_have_text(str(before["Restarts"]))
    shot(page, "instances")
    # record every state the row takes, however briefly
    page.evaluate("""() => {
        window.__states = [];
        const body = document.querySelector('#instances tbody');
        new MutationObserver(() => {
            const tr = body.querySelector('tr[data-name="incrementer"]');
            if (tr) window.__states.push(tr.dataset.state);
            if (tr && tr.dataset.state === 'backoff') document.body.dataset.sawBackoff = 'yes';
        }).observe(body, {childList: true, subtree: true, attributes: true});
    }""")
    os.kill(before["Pid"], signal.SIGKILL)
    # (an attribute, not wait_for_function: the page's CSP forbids eval)
    expect(page.locator("body")).to_have_attribute("data-saw-backoff", "yes")
    expect(r).to_have_attribute("data-state", "running")
    expect(r.locator(".restarts")).to_have_text(str(before["Restarts"] + 1))
    pid = api.get("/plugins/incrementer").json()["Runtime"]["Pid"]
    assert pid != before["Pid"]
    expect(r.locator("td").nth(2)).to_have_text(str(pid))


def test_detail_shows_history_log_params_and_restarts(page: Page, api: httpx.Client) -> None:
    r = row(page, "incrementer")
    r.focus()
    page.keyboard.press("Enter")  # keyboard selection
    detail = page.locator("#instance-detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text("incrementer")
    expect(page.locator("#detail-errors li").first).to_contain_text("crashed: killed by SIGKILL")
    restarts = int(r.locator(".restarts").inner_text())
    detail.get_by_role("button", name="Restart").click()
    expect(page.locator("#detail-status")).to_have_text("incrementer restarted")
    expect(r.locator(".restarts")).to_have_text(str(restarts + 1))
    expect(r).to_have_attribute("data-state", "running")
    shot(page, "instances-detail")


def test_machine_action_from_the_form(page: Page, api: httpx.Client) -> None:
    api.post("/machines", json={"Name": "web-1", "Address": "10.0.0.7",
                                "Params": {"incrementer/count": 4}}).raise_for_status()
    api.post("/machines", json={"Name": "db-1"}).raise_for_status()
    # the view tabs answer arrow keys
    page.get_by_role("tab", name="Instances").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Machines")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="Machines")).to_be_focused()
    page.get_by_label("Search").fill("10.0.0.7")
    machines = page.locator("#machines button")
    expect(machines).to_have_count(1)
    machines.first.click()
    expect(page.locator("#machine-title")).to_have_text("web-1")
    expect(page.locator("#machine-params")).to_contain_text("incrementer/count")
    page.get_by_label("Action", exact=True).select_option(label="incrementer:increment")
    step = page.get_by_label("incrementer/step (optional)")
    expect(step).to_be_visible()
    step.fill("5")
    page.get_by_role("button", name="Run increment").click()
    answer = page.locator("#action-answer")
    expect(answer).to_contain_text('"Value": 9')
    expect(answer).to_contain_text('"Parameter": "incrementer/count"')
    assert api.get("/machines/Name:web-1").json()["Params"]["incrementer/count"] == 9
    shot(page, "machines")


def test_event_tail_filters_and_pauses(page: Page, api: httpx.Client) -> None:
    page.get_by_role("tab", name="Events").click()
    page.get_by_label("Patterns").fill("a.b machines.create.*")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#events-status")).to_contain_text("drpd refused register a.b")
    expect(page.locator("#events-status")).to_contain_text("has 2 parts")
    # drpd acknowledges each registration; only then can nothing be missed
    page.get_by_label("Patterns").fill("machines.create.*")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#events-status")).to_have_text("watching machines.create.*")
    made = api.post("/machines", json={"Name": "tail-1"}).json()
    tail = page.locator("#events tbody tr")
    expect(tail.first).to_have_attribute("data-key", made["Uuid"])
    api.post("/profiles", json={"Name": "not-a-machine"}).raise_for_status()
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    held = api.post("/machines", json={"Name": "tail-2"}).json()
    expect(page.locator("#events-held")).to_have_text("1 held while paused")
    expect(tail.first).to_have_attribute("data-key", made["Uuid"])
    page.get_by_role("button", name="Resume").click()
    expect(tail.first).to_have_attribute("data-key", held["Uuid"])
    assert page.locator('#events tbody tr[data-type="profiles"]').count() == 0
    # the rate chart drew the burst (its text alternative names the peak)
    expect(page.locator("#events-chart")).to_have_attribute("aria-label", re.compile(r"peak [1-9]"))
    expect(page.locator("#events-rate")).to_have_text(re.compile(r"^\d+ events/s$"))
    shot(page, "events")


def test_providers_and_catalog_install(page: Page, api: httpx.Client) -> None:
    page.get_by_role("tab", name="Providers").click()
    installed = page.locator('#providers tbody tr[data-name="incrementer"]')
    expect(installed).to_contain_text("increment (machines)")
    expect(installed).to_contain_text("incrementers")
    expect(installed.locator(".origin")).to_have_text("catalog 1.0.0")
    page.get_by_role("button", name="Install ipmi").click()
    expect(page.locator("#catalog-status")).to_have_text("installed ipmi 1.0.0")
    expect(page.locator('#providers tbody tr[data-name="ipmi"]')).to_be_visible()
    assert api.get("/plugin_providers/ipmi").status_code == 200
    shot(page, "providers")


def test_log_follows_and_destroy_asks_first(page: Page, api: httpx.Client) -> None:
    api.post("/params", json={"Name": "ui/secret", "Secure": True,
                              "Schema": {"type": "string"}}).raise_for_status()
    api.post("/plugins", json={"Name": "spare", "Provider": "sdk_echo", "Params": {
        "echo/greeting": "hi", "echo/log-events": True, "ui/secret": "hunter2"}}).raise_for_status()
    page.get_by_role("tab", name="Instances").click()
    r = row(page, "spare")
    expect(r).to_have_attribute("data-state", "running")
    r.click()
    params = page.locator("#detail-params tbody")
    expect(params).to_contain_text("echo/greeting")
    expect(params.locator("tr", has_text="ui/secret")).to_contain_text("(secure)")
    assert "hunter2" not in page.content()
    # the log follows new lines while the detail is open
    api.post("/events", json={"Type": "ui", "Action": "ping", "Key": "follow-me"}).raise_for_status()
    expect(page.locator("#detail-log")).to_contain_text("ui ping follow-me")
    shot(page, "instances-detail-log")
    page.get_by_role("button", name="Destroy…").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert api.get("/plugins/spare").status_code == 200
    page.get_by_role("button", name="Destroy…").click()
    dialog.get_by_role("button", name="Destroy").click()
    expect(r).to_have_count(0)
    assert api.get("/plugins/spare").status_code == 404


def test_a_waiting_instance_says_why(page: Page, api: httpx.Client) -> None:
    api.post("/plugins", json={"Name": "hooks", "Provider": "callback"}).raise_for_status()
    r = row(page, "hooks")
    expect(r).to_have_attribute("data-state", "waiting")
    expect(r.locator(".state")).to_have_text("‖ waiting")
    expect(r.locator(".errs")).to_have_text("provider 'callback' is not installed")
    api.delete("/plugins/hooks").raise_for_status()
    expect(r).to_have_count(0)


def test_phone_width_and_logout(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    expect(row(page, "incrementer")).to_be_visible()
    # the page itself never scrolls sideways; wide tables scroll in their box
    for view in ("Providers", "Machines", "Events", "Instances"):
        page.get_by_role("tab", name=view).click()
        expect(page.get_by_role("tab", name=view)).to_have_attribute("aria-selected", "true")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, view
    shot(page, "instances-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('drpd-token')") is None
    page.reload()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    # a token drpd no longer takes (expired, revoked) leads back to the login
    page.get_by_label("User").fill("rocketskates")
    page.get_by_label("Password").fill("r0cketsk8ts")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#nav")).to_be_visible()
    # (set and used at once: any call the page makes next is refused)
    page.evaluate("""() => {
        sessionStorage.setItem('drpd-token', 'not-a-token');
        location.hash = '#/providers';
    }""")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('drpd-token')") is None
