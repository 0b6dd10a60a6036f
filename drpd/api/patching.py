"""RFC 6902 JSON Patch (via ``jsonpatch``) and RFC 7396 merge patch."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from ..models import BadRequest, Conflict, Unprocessable


def merge_patch(target: Any, patch: Any) -> Any:
    try:
        return _merge(target, patch)
    except RecursionError:
        raise Unprocessable(_TOO_DEEP) from None


#: an object stored before drpd capped nesting may be too deep to patch
_TOO_DEEP = "the object is nested too deeply to patch: replace it (PUT) with a shallower one"


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any, *, max_size: int) -> Any:
    """Apply RFC 6902 ``operations`` to a copy of ``target``.

    ``copy`` is the one operation that adds more than the patch itself
    carries: each one may double the object (copy ``/Params`` into
    ``/Params/a``, then again...), so eighty of them in a small body would
    ask for 2^80 values. Every copy is charged what it copies against a
    budget of ``max_size`` bytes (the body limit), and the patch is refused
    (422) before the copy that would pass it.
    """
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch is a list of operations")
    try:
        jsonpatch.JsonPatch(operations)  # every operation well-formed before any applies
        budget = max_size - (_size_within(target, max_size) or max_size)
        doc = copy.deepcopy(target)
        for index, operation in enumerate(operations):
            where = f"operation {index} ({operation.get('op')} {str(operation.get('path'))[:200]})"
            if operation.get("op") == "copy":
                copied = _size_within(jsonpointer.resolve_pointer(doc, operation["from"]),
                                      budget)
                if copied is None:
                    raise Unprocessable(f"the patch would grow the object past {max_size} "
                                        "bytes (its copy operations)")
                budget -= copied
            try:
                doc = jsonpatch.JsonPatch([operation]).apply(doc, in_place=True)
            except jsonpatch.JsonPatchTestFailed:
                # never quote the document: what it holds is not the client's to read here
                raise Conflict(f"patch test failed: {where}") from None
            except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException):
                raise Unprocessable(f"patch cannot be applied: {where}: no such path "
                                    "or a conflicting value") from None
        return doc
    except jsonpointer.JsonPointerException:
        raise Unprocessable("patch cannot be applied: a copy or move names no such path") from None
    except (jsonpatch.InvalidJsonPatch, TypeError, KeyError, AttributeError) as exc:
        raise BadRequest(f"invalid JSON Patch: {exc}") from None
    except RecursionError:
        raise Unprocessable(_TOO_DEEP) from None


def _size_within(value: Any, budget: int) -> int | None:
    """About how many bytes ``value`` takes as JSON; None once past ``budget``.

    Stops as soon as the budget is spent, so it costs at most ``budget`` steps.
    """
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            total += 2 + sum(len(k) + 4 for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            total += 2 + len(node)
            stack.extend(node)
        elif isinstance(node, str):
            total += len(node) + 2
        else:
            total += 8
        if total > budget:
            return None
    return total
