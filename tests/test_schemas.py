"""The safe JSON Schema compiler, the YAML expansion bound and the depth cap, in-process."""

from __future__ import annotations

import io
from typing import Any

import pytest
import trio

from drpd.cli.inputs import load_object
from drpd.cli.registry import CliError
from drpd.content import parse_bundle
from drpd.models import BadRequest, PayloadTooLarge
from drpd.models.depth import too_deep
from drpd.models.extended import extended_kind
from drpd.models.schemas import InvalidSchema, compile_schema, first_problem
from drpd.safe_yaml import YamlRefused, YamlTooLarge, load

from .reliability.test_hostile_schemas import EVIL_PATTERN, EVIL_VALUE, bomb


@pytest.mark.parametrize("schema", [
    {"$ref": "#/nope"},
    {"type": "nosuchtype"},
    {"$ref": "http://127.0.0.1:9/x.json"},
    {"$ref": "file:///etc/passwd"},
    {"$ref": "http://json-schema.org/draft-07/schema#"},
    {"properties": {"a": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
    {"$schema": "http://json-schema.org/draft-03/schema#"},
    {"$ref": "#/type", "type": "string"},
    {"pattern": "(?<=a)b"},
    {"patternProperties": {"(a)\\1": {}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "enum": [{"a": 1}, {"a": 1}]},
    {"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "https://x.example/b"}}},
    [],
])
def test_schemas_drpd_refuses(schema: Any) -> None:
    with pytest.raises(InvalidSchema):
        compile_schema(schema)


def test_refs_recursion_and_drafts_still_work() -> None:
    tree = compile_schema({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
        "properties": {"name": {"$ref": "#/definitions/name"},
                       "kids": {"items": {"$ref": "#"}}}})
    assert first_problem(tree, {"name": "a", "kids": [{"name": "b"}]}) is None
    assert "kids/0/name" in (first_problem(tree, {"kids": [{"name": "B"}]}) or "")
    rooted = compile_schema({"id": "http://x.example/root.json",
                             "definitions": {"n": {"type": "integer"}},
                             "properties": {"n": {"$ref": "#/definitions/n"}}})
    assert first_problem(rooted, {"n": "x"}) is not None


def test_without_schema_keyword_drafts_4_and_7_both_work() -> None:
    """DRP's validator is a hybrid of drafts 4-7 when ``$schema`` is absent."""
    draft7 = compile_schema({"type": "number", "exclusiveMinimum": 0})
    assert first_problem(draft7, 0) is not None and first_problem(draft7, 0.5) is None
    draft4 = compile_schema({"type": "number", "minimum": 0, "exclusiveMinimum": True})
    assert first_problem(draft4, 0) is not None and first_problem(draft4, 1) is None
    assert first_problem(compile_schema({"const": 1}), 2) is not None
    with pytest.raises(InvalidSchema):
        compile_schema({"$schema": "http://json-schema.org/draft-04/schema#",
                        "exclusiveMinimum": 0})


async def test_backtracking_patterns_are_linear() -> None:
    validator = compile_schema({
        "properties": {"v": {"pattern": EVIL_PATTERN}},
        "patternProperties": {EVIL_PATTERN: {"type": "integer"}},
        "additionalProperties": False})
    # checked in a worker thread under a deadline: Python's re would need 2^40
    # steps for each, and the test would fail instead of hanging
    problems = []
    with trio.fail_after(30):
        for value in ({"v": EVIL_VALUE}, {EVIL_VALUE: 1}, {"aaaa": 1}):
            problems.append(await trio.to_thread.run_sync(
                first_problem, validator, value, abandon_on_cancel=True))
    assert "does not match" in (problems[0] or "")
    assert "regexes" in (problems[1] or "")
    assert problems[2] is None


def ref_bomb(levels: int = 40) -> dict[str, Any]:
    """~3 KB of definitions, each ``allOf`` the previous one twice: 2^40 steps to check."""
    defs: dict[str, Any] = {"a0": {"type": "integer"}}
    for i in range(1, levels + 1):
        defs[f"a{i}"] = {"allOf": [{"$ref": f"#/definitions/a{i - 1}"}] * 2}
    return {"definitions": defs, "$ref": f"#/definitions/a{levels}"}


async def test_a_ref_bomb_is_cut_short() -> None:
    validator = compile_schema(ref_bomb())
    with trio.fail_after(60):
        problem = await trio.to_thread.run_sync(first_problem, validator, 1,
                                                abandon_on_cancel=True)
    assert "steps" in (problem or "")
    # a modest use of refs is unaffected
    assert first_problem(compile_schema(ref_bomb(8)), 1) is None
    assert first_problem(compile_schema(ref_bomb(8)), "x") is not None


def test_secret_problems_quote_nothing_of_the_value() -> None:
    validator = compile_schema({"type": "object", "additionalProperties": False,
                                "properties": {"pw": {"type": "string", "minLength": 30}}})
    for value in ({"pw": "hunter2"}, {"hunter2": "x"}):
        problem = first_problem(validator, value, secret=True) or ""
        assert problem and "hunter2" not in problem
        assert "hunter2" in (first_problem(validator, value) or "")


def test_a_failing_check_is_a_problem_not_an_exception() -> None:
    class Broken:
        def iter_errors(self, value: Any) -> Any:
            raise RuntimeError("boom")

    assert "cannot check" in (first_problem(Broken(), 1) or "")


def test_provider_store_object_schemas_are_checked_too() -> None:
    with pytest.raises(InvalidSchema):
        extended_kind("hostile", {"$ref": "http://127.0.0.1:9/x"}, provider="p")
    kind = extended_kind("things", {"name": {"pattern": EVIL_PATTERN}}, provider="p")
    with pytest.raises(Exception, match="does not match"):
        kind.prepare({"Id": "t1", "name": EVIL_VALUE})


def test_yaml_bombs() -> None:
    with pytest.raises(YamlTooLarge):
        load(bomb(), max_size=16 << 20, max_depth=64)
    with pytest.raises(YamlRefused):
        load("a: &a [*a]", max_size=1 << 20, max_depth=64)
    with pytest.raises(YamlRefused):
        load("[" * 3000 + "]" * 3000, max_size=1 << 20, max_depth=64)
    assert load("a: &x [1]\nb: *x\nc: {<<: {k: 1}}", max_size=100, max_depth=4) == {
        "a": [1], "b": [1], "c": {"k": 1}}
    # a provider's Content, and drpcli's object arguments, go through the same bound
    with pytest.raises(PayloadTooLarge):
        parse_bundle(bomb(), what="provider Content")
    with pytest.raises(BadRequest):
        parse_bundle("[" * 5000 + "]" * 5000, what="provider Content")
    with pytest.raises(CliError, match="expands"):
        load_object("-", io.StringIO(bomb()))


def test_depth() -> None:
    value: Any = 1
    for _ in range(64):
        value = [value]
    assert not too_deep(value, 64) and too_deep([value], 64)
    assert too_deep({"a": {"b": [{}]}}, 3) and not too_deep({"a": {"b": [1]}}, 3)
