"""DRP's claim semantics: stars, lists, update pointers, action names, containment."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from drpd.claims import SUPERUSER, Claim, ClaimSet, problems, register_scope


def cs(*triples: tuple[str, str, str]) -> ClaimSet:
    return ClaimSet(Claim(scope=s, action=a, specific=p) for s, a, p in triples)


@pytest.mark.parametrize(
    ("claims", "request_", "allowed"),
    [
        ([("*", "*", "*")], ("users", "token", "rocketskates"), True),
        ([("machines", "get,list", "*")], ("machines", "get", "m1"), True),
        ([("machines", "get,list", "*")], ("machines", "update", "m1"), False),
        ([("machines", "get", "m1,m2")], ("machines", "get", "m2"), True),
        ([("machines", "get", "m1,m2")], ("machines", "get", "m3"), False),
        ([("machines, profiles", "get", "*")], ("profiles", "get", "p"), True),
        ([("machines", "update", "*")], ("machines", "update:/Params/foo", "m1"), True),
        ([("machines", "update:/Params", "*")], ("machines", "update:/Params/a~1b", "m1"), True),
        ([("machines", "update:/Params", "*")], ("machines", "update:/Name", "m1"), False),
        ([("machines", "update:/Params/foo", "*")], ("machines", "update:/Params", "m1"), False),
        ([("machines", "action", "*")], ("machines", "action:poweron", "m1"), True),
        ([("machines", "action:poweron", "*")], ("machines", "action:poweron", "m1"), True),
        ([("machines", "action:poweron", "*")], ("machines", "action:poweroff", "m1"), False),
        ([("machines", "get", "*")], ("machines", "getSecure", "m1"), False),
        ([("users", "*", "bob")], ("users", "password", "bob"), True),
        ([("users", "*", "bob")], ("users", "password", "alice"), False),
        ([("events", "post", "*")], ("events", "post", ""), True),
        ([("nosuch", "*", "*")], ("machines", "get", "m1"), False),
        ([], ("info", "get", ""), False),
    ],
)
def test_allows(claims: list[tuple[str, str, str]], request_: tuple[str, str, str],
                allowed: bool) -> None:
    assert cs(*claims).allows(*request_) is allowed


def test_containment_prevents_widening() -> None:
    operator = cs(("machines,profiles", "*", "*"), ("plugins", "get,list,action", "*"))
    assert operator.contains(cs(("machines", "get", "m1")))
    assert operator.contains(cs(("machines", "update:/Params", "*")))
    assert not operator.contains(cs(("users", "create", "*")))
    assert not operator.contains(ClaimSet([SUPERUSER]))
    assert ClaimSet([SUPERUSER]).contains(operator)
    narrowed = operator.narrowed_to([Claim(scope="machines", action="get", specific="*"),
                                     Claim(scope="users", action="*", specific="*")])
    assert [str(c) for c in narrowed.claims] == ["machines get *"]


def test_provider_scopes_and_validation() -> None:
    assert problems(Claim(scope="machines", action="fly", specific="*")) == [
        "No such action 'fly' in scope 'machines'"]
    assert problems(Claim(scope="typed-cows", action="get", specific="*")) == [
        "No such scope 'typed-cows'"]
    register_scope("typed-cows")
    assert problems(Claim(scope="typed-cows", action="get", specific="*")) == []
    assert cs(("typed-cows", "get", "*")).allows("typed-cows", "get", "daisy")


def test_json_names_are_drps() -> None:
    claim = msgspec.json.decode(b'{"scope":"*","action":"*","specific":"*","Extra":1}',
                                type=Claim)
    assert msgspec.json.encode(claim) == b'{"scope":"*","action":"*","specific":"*"}'


async def test_provider_define_tokens_only_read(tmp_path: Path) -> None:
    """The token a provider's define/unpack gets may read, never write."""
    from drpd.access import Authorizer
    from drpd.auth import PROVIDER_PRINCIPAL, Principal
    from drpd.store import SQLiteStore

    store = SQLiteStore(tmp_path / "db")
    await store.open()
    try:
        held = Authorizer(store).rights(Principal(PROVIDER_PRINCIPAL + "p"))
        assert held.allows("machines", "get", "m1") and held.allows("machines", "list", "")
        for action in ("create", "update", "delete", "getSecure", "action:poweron"):
            assert not held.allows("machines", action, "m1"), action
        assert not held.allows("users", "token", "rocketskates")
        assert not held.allows("plugin_providers", "create", "x")
    finally:
        await store.aclose()


def test_denials_are_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    """A scan of a thousand forbidden routes writes a few lines, then says
    how many it held back (the count is in metrics either way)."""
    from drpd.api.guard import _DenialLog

    denials = _DenialLog(rate=5)
    with caplog.at_level("WARNING", logger="drpd.access"):
        for n in range(1000):
            denials.write("mallory", f"GET /machines/{n}", "machines get *")
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 10
    assert lines[0] == "denied mallory: GET /machines/0 needs claim machines get *"
    denials.stamp -= 1.0  # a second later
    with caplog.at_level("WARNING", logger="drpd.access"):
        denials.write("mallory", "GET /users", "users list *")
    assert caplog.records[-1].getMessage().endswith(f"({1000 - len(lines)} denials not logged)")
