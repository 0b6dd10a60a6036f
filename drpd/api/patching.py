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


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch is a list of operations")
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(target)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Conflict(f"patch test failed: {exc}") from None
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
        raise Unprocessable(f"patch cannot be applied: {exc}") from None
    except (jsonpatch.InvalidJsonPatch, TypeError, KeyError) as exc:
        raise BadRequest(f"invalid JSON Patch: {exc}") from None
    except RecursionError:
        raise Unprocessable(_TOO_DEEP) from None
