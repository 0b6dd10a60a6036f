"""Names a provider may not take (issue 11, items 13 and 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drpd.api.app import create_app
from drpd.api.context import ApiContext
from drpd.auth import Authenticator
from drpd.bus import EventBus
from drpd.config import Settings
from drpd.models import KINDS, PluginProvider
from drpd.models.names import FIXED_ROUTES, is_valid_provider_name
from drpd.plugins.define import DefineError, validate
from drpd.store import SQLiteStore


def test_every_fixed_route_is_reserved(tmp_path: Path) -> None:
    """A route added later is covered too: its first segment is a kind or reserved."""
    store = SQLiteStore(tmp_path / "db")
    auth = Authenticator(b"k" * 32, default_user=True)
    app = create_app(ApiContext(settings=Settings(), store=store, bus=EventBus(), auth=auth))
    first_segments = set()
    for rule in app.url_map.iter_rules():
        parts = rule.rule.strip("/").split("/")
        if parts[:2] == ["api", "v3"] and len(parts) > 2 and not parts[2].startswith("<"):
            first_segments.add(parts[2])
    assert first_segments, "no fixed routes found"
    missing = first_segments - FIXED_ROUTES - set(KINDS)
    assert not missing, f"fixed routes not reserved in drpd.models.names.FIXED_ROUTES: {missing}"


@pytest.mark.parametrize("prefix", sorted(FIXED_ROUTES | {"Healthz"}))
def test_store_objects_may_not_take_a_fixed_route(prefix: str) -> None:
    provider = PluginProvider(Name="p", PluginVersion=4, StoreObjects={prefix: {}})
    with pytest.raises(DefineError, match="not allowed|fixed route"):
        validate(provider, "p")


@pytest.mark.parametrize("name", [".hidden", "..", ".", "-x", "a/b", "", "x" * 256])
def test_provider_names_follow_the_object_name_rules(name: str) -> None:
    assert not is_valid_provider_name(name)
    with pytest.raises(DefineError):
        validate(PluginProvider(Name=name, PluginVersion=4), "p")


@pytest.mark.parametrize("name", ["ipmi", "drp-ipmi", "a.b", "_x", "x" * 255])
def test_ordinary_provider_names_stay_valid(name: str) -> None:
    assert is_valid_provider_name(name)
