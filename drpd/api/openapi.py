"""The OpenAPI description of ``/api/v3``, built from the same kind table as the routes.

Every object prefix (including providers' StoreObjects prefixes, which
appear while their provider is installed) gets the generic object paths;
object schemas come from the msgspec Structs, so the description cannot
drift from what the API decodes. ``tests/test_openapi.py`` checks that
every route of the app is described.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..models import KINDS, Error, Event, Info, Kind, TokenResponse
from ..models.extended import ExtendedKind
from ..models.objects import AvailableAction
from ..nodes import Node

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: dict[str, Any] | None, description: str = "OK") -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {JSON: {"schema": schema}}
    return answer


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _answer(_ref("Error"), "a DRP Error") for code in codes}


def _body(schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": schema}}}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None,
           required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required,
            "schema": schema or {"type": "string"}}


def _op(summary: str, ok: dict[str, Any], *errors: int, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, ok_code: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok_code: ok, **_errors(401, *errors)}}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _schema_name(kind: Kind) -> str:
    return kind.model.__name__ if not isinstance(kind, ExtendedKind) else f"Extended_{kind.prefix}"


def _kind_paths(kind: Kind, schemas: dict[str, Any]) -> dict[str, Any]:
    prefix = kind.prefix
    name = _schema_name(kind)
    if isinstance(kind, ExtendedKind):
        schemas[name] = {"type": "object", "properties": {"Id": {"type": "string"}},
                         "required": ["Id"]}
    obj = _ref(name)
    key = [_param("key")]
    filters = [_param("offset", "query", {"type": "integer", "minimum": 0}, False),
               _param("limit", "query", {"type": "integer", "minimum": 0}, False)]
    write_errors = (400, 403, 404, 405, 409, 412, 413, 422)
    paths: dict[str, Any] = {
        f"/{prefix}": {
            "get": _op(f"list {prefix}", _answer({"type": "array", "items": obj}), 400,
                       params=filters),
        },
        f"/{prefix}/{{key}}": {
            "get": _op(f"show one of {prefix}", _answer(obj), 404, params=key),
            "delete": _op(f"delete one of {prefix}", _answer(obj), 403, 404, 405, 412,
                          params=key),
        },
    }
    if kind.writable or prefix == "plugin_providers":
        paths[f"/{prefix}"]["post"] = _op(f"create one of {prefix}", _answer(obj, "created"),
                                          *write_errors, body=_body(obj), ok_code="201")
        paths[f"/{prefix}/{{key}}"]["put"] = _op(f"replace one of {prefix}", _answer(obj),
                                                 *write_errors, body=_body(obj), params=key)
        paths[f"/{prefix}/{{key}}"]["patch"] = _op(
            f"patch one of {prefix} (RFC 6902 JSON Patch or RFC 7396 merge patch)", _answer(obj),
            *write_errors, params=key,
            body={"required": True, "content": {
                "application/json-patch+json": {"schema": {"type": "array", "items": {
                    "type": "object"}}},
                "application/merge-patch+json": {"schema": {"type": "object"}}}})
    if kind.has_params:
        paths[f"/{prefix}/{{key}}/params"] = {
            "get": _op("all params", _answer({"type": "object"}), 404, params=key),
            "put": _op("replace all params", _answer({"type": "object"}), 400, 403, 404, 422,
                       body=_body({"type": "object"}), params=key),
        }
        one = [*key, _param("name")]
        paths[f"/{prefix}/{{key}}/params/{{name}}"] = {
            "get": _op("one param", _answer({}), 404, params=one),
            "post": _op("set one param", _answer({}), 400, 403, 404, 422, body=_body({}),
                        params=one),
            "delete": _op("remove one param", _answer({}), 403, 404, params=one),
        }
    actions = {"type": "array", "items": _ref("AvailableAction")}
    paths[f"/{prefix}/{{key}}/actions"] = {
        "get": _op("actions available on the object", _answer(actions), 404, params=key)}
    cmd = [*key, _param("cmd")]
    paths[f"/{prefix}/{{key}}/actions/{{cmd}}"] = {
        "get": _op("one available action", _answer(_ref("AvailableAction")), 404, params=cmd),
        "post": _op("run an action", _answer({}), 400, 404, 409, 422, 503, 504,
                    body=_body({"type": "object"}),
                    params=[*cmd, _param("plugin", "query", required=False)]),
    }
    return paths


def build(kinds: dict[str, Kind], version: str) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [*(k.model for k in KINDS.values()), Error, Event, Info, TokenResponse, AvailableAction,
         Node],
        ref_template="#/components/schemas/{name}")
    paths: dict[str, Any] = {}
    for kind in kinds.values():
        paths.update(_kind_paths(kind, components))
    del paths["/plugin_providers"]["post"]  # providers are installed by upload
    paths["/plugin_providers/{key}"].pop("put", None)
    paths["/plugin_providers/{key}"].pop("patch", None)
    paths["/plugin_providers/{key}"]["post"] = _op(
        "install or replace a provider (the executable as the body)",
        _answer(_ref("PluginProvider")), 413, 422, params=[_param("key")],
        body=_body({"type": "string", "format": "binary"}, "application/octet-stream"))
    paths["/plugin_providers/{key}/binary"] = {"get": {
        "summary": "download a provider's executable", "parameters": [_param("key")],
        "responses": {"200": {"description": "the file", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            **_errors(401, 404)}}}
    name = [_param("key")]
    paths["/plugins/{key}/restart"] = {"post": _op("restart an instance", _answer(
        _ref("Plugin")), 404, params=name)}
    paths["/plugins/{key}/log"] = {"get": _op("an instance's last provider log lines", _answer(
        {"type": "array", "items": {"type": "string"}}), 404, 422,
        params=[*name, _param("lines", "query", {"type": "integer", "minimum": 0}, False)])}
    paths["/catalog"] = {"get": _op("drpd's catalog (the web page reads it here)", _answer(
        {"type": "object", "properties": {"Location": {"type": "string"},
                                          "Items": {"type": "array", "items": {"type": "object"}}}}),
        502)}
    paths["/catalog/{name}/install"] = {"post": _op(
        "install a provider from drpd's catalog (digest checked)", _answer(_ref("PluginProvider")),
        413, 422, 502, params=[_param("name"), _param("version", "query", {"type": "string"},
                                                      False)])}
    paths["/users/{key}/token"] = {"get": _op("issue a token", _answer(_ref("TokenResponse")),
                                              400, 404, params=[*name, _param(
                                                  "ttl", "query", {"type": "integer",
                                                                   "minimum": 1}, False)])}
    paths["/users/{key}/password"] = {"put": _op(
        "set a password", _answer(_ref("User")), 400, 404, params=name,
        body=_body({"type": "object", "properties": {"Password": {"type": "string"}},
                    "required": ["Password"], "additionalProperties": False}))}
    paths["/system/actions"] = {"get": _op("system actions", _answer(
        {"type": "array", "items": _ref("AvailableAction")}))}
    paths["/system/actions/{cmd}"] = {
        "get": _op("one system action", _answer(_ref("AvailableAction")), 404,
                   params=[_param("cmd")]),
        "post": _op("run a system action", _answer({}), 400, 404, 409, 422, 503, 504,
                    params=[_param("cmd"), _param("plugin", "query", required=False)],
                    body=_body({"type": "object"}))}
    binary = {"type": "string", "format": "binary"}
    file_path = [_param("path")]
    paths["/files"] = {"get": _op("list the root of the file space", _answer(
        {"type": "array", "items": {"type": "string"}}), 403, 404,
        params=[_param("path", "query", required=False)])}
    paths["/files/{path}"] = {
        "get": {"summary": "download a file, or list a directory (path ending in /)",
                "parameters": file_path,
                "responses": {"200": {"description": "the file or a JSON list", "content": {
                    "application/octet-stream": {"schema": binary}}}, **_errors(401, 403, 404)}},
        "post": _op("upload a file (plugin_providers/<name> installs a provider)",
                    _answer({"type": "object"}), 403, 409, 413, 422, params=file_path,
                    body=_body(binary, "application/octet-stream")),
        "delete": _op("remove a file or an empty directory", _answer({"type": "object"}),
                      403, 404, 409, params=file_path),
    }
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}},
        **_errors(401)}}}
    paths["/info"] = {"get": _op("server information", _answer(_ref("Info")))}
    paths["/nodes"] = {"get": _op("the drpd nodes sharing this store, with their heartbeats",
                                  _answer({"type": "array", "items": _ref("Node")}))}
    paths["/indexes"] = {"get": _op("the indexes of every prefix (DRP's GET /indexes)",
                                    _answer({"type": "object"}))}
    paths["/events"] = {"post": _op("publish an event", _answer(_ref("Event")), 400,
                                    body=_body(_ref("Event")))}
    paths["/healthz"] = {"get": {"summary": "health for load balancers", "security": [],
                                 "responses": {"200": {"description": "healthy"}}}}
    paths["/openapi.json"] = {"get": _op("this description", _answer({"type": "object"}))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "drpd", "version": version,
                 "description": "DRP v4 compatible REST API of drpd. The event stream is a "
                                "websocket at /api/v3/ws (register <type>.<action>.<key> "
                                "text frames), which OpenAPI cannot describe."},
        "servers": [{"url": "/api/v3"}],
        "security": [{"basic": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
