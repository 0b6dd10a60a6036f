"""The OpenAPI description stays in step with the app's routes."""

from __future__ import annotations

import re
from pathlib import Path

from drpd.api.app import create_app
from drpd.api.context import ApiContext
from drpd.api.openapi import build
from drpd.auth import Authenticator
from drpd.bus import EventBus
from drpd.config import Settings
from drpd.models import KINDS
from drpd.store import SQLiteStore

#: routes OpenAPI cannot or need not describe
UNDESCRIBED = {"/", "/<path:path>", "/api/v3/ws", "/ui", "/ui/", "/ui/<path:rel>"}
#: methods a route accepts only to answer 405 with a DRP Error
REFUSED = {("PUT", "/api/v3/files"), ("PATCH", "/api/v3/files"), ("POST", "/api/v3/files"),
           ("DELETE", "/api/v3/files"), ("PUT", "/api/v3/files/{}"),
           ("PATCH", "/api/v3/files/{}")}


def _shape(path: str) -> str:
    """A path with every parameter replaced by {}, for comparison."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_every_route_is_described(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db")
    auth = Authenticator(b"k" * 32, default_user=True)
    app = create_app(ApiContext(settings=Settings(), store=store, bus=EventBus(), auth=auth))
    doc = build(KINDS, "test")
    described = {_shape("/api/v3" + path): item for path, item in doc["paths"].items()}
    for prefix in KINDS:
        assert _shape(f"/api/v3/{prefix}/{{key}}") in described, prefix
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.rule in UNDESCRIBED or "<prefix>" in rule.rule or rule.websocket:
            continue
        item = described.get(_shape(rule.rule))
        if item is None:
            missing.append(rule.rule)
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method.lower() not in item and (method, _shape(rule.rule)) not in REFUSED:
                missing.append(f"{method} {rule.rule}")
    assert not missing, missing


def test_description_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(build(KINDS, "test"))
