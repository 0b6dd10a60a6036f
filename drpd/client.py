"""A small synchronous REST client for drpd's API (``/api/v3``).

drpcli is its first user; scripts and tests may use it too. It talks HTTP
only and knows nothing of the server's insides, so it imports nothing of
drpd but the shapes in :mod:`drpd.models` (and only lazily).

Where the endpoint and credentials come from (first that is set wins, see
:func:`resolve_settings`): explicit arguments (drpcli's flags), then the
environment DRP's own drpcli reads (``RS_ENDPOINT``, ``RS_KEY`` as
``user:password``, ``RS_TOKEN``, ``RS_CA_CERT``), then drpd's defaults.

TLS: drpd generates a self-signed certificate on first start, so a client on
the same host cannot verify it without being told where it is. The rule
(:func:`tls_verify`) is: verify against the CA file when one is given;
otherwise trust whatever certificate a *loopback* endpoint presents (nobody
else can answer there); otherwise verify against the system's trust store,
and when that fails say so in one line that names ``--ca-cert`` and
``--insecure``.

Error handling: every failure surfaces as :class:`ClientError` -- a non-2xx
answer carries the server's DRP ``Error`` (``Code``, ``Messages``), and a
failure to get any answer at all (refused, TLS, timeout) has ``code`` 0.
Callers never need to catch httpx's exceptions.
"""

from __future__ import annotations

import builtins
import ipaddress
import json as _json
import os
import ssl
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx

__all__ = [
    "API_BASE",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "Client",
    "ClientError",
    "Settings",
    "is_loopback",
    "resolve_settings",
    "tls_verify",
]

DEFAULT_ENDPOINT = "https://127.0.0.1:8092"
DEFAULT_USERNAME = "rocketskates"
DEFAULT_PASSWORD = "r0cketsk8ts"
API_BASE = "/api/v3"

#: Connecting should be quick (drpd is usually on the same host or LAN);
#: answers may legitimately take a while, since plugin writes settle before
#: they answer and actions wait for their provider, but the server bounds
#: both, so the read limit only guards against a wedged connection.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)

#: query parameters: a map, or pairs when a name repeats (``Name=a Name=b``)
Query = Mapping[str, str] | Sequence[tuple[str, str]]

_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


class ClientError(Exception):
    """A request that did not succeed, as one line a human can act on.

    ``code`` is the HTTP status of a non-2xx answer (the DRP ``Error``'s
    ``Code``), or 0 when no answer came at all. ``messages`` are the Error's
    ``Messages``; ``error`` is the whole decoded Error body when the server
    sent one.
    """

    def __init__(
        self,
        messages: list[str] | str,
        *,
        code: int = 0,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.code = code
        self.error = dict(error) if error is not None else None
        super().__init__(self.line())

    def line(self) -> str:
        """The error as exactly one line (newlines in messages would break
        scripts that read stderr line by line)."""
        text = "; ".join(m for m in self.messages if m) or "request failed"
        text = " ".join(text.split())
        return f"{self.code} {text}" if self.code else text

    @classmethod
    def from_response(cls, response: httpx.Response) -> ClientError:
        """Build from a non-2xx answer, whether or not it is a DRP Error."""
        error: dict[str, Any] | None = None
        code = 0
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if isinstance(body, dict) and ("Messages" in body or "Code" in body):
            error = body
            messages = [str(m) for m in (body.get("Messages") or [])]
            raw_code = body.get("Code")
            code = raw_code if isinstance(raw_code, int) else 0
            if not messages:
                messages = [str(body.get("Type") or response.reason_phrase)]
        else:
            messages = [response.reason_phrase or "error"]
            text = response.text.strip() if response.content else ""
            if text:
                messages.append(text[:200])
        return cls(messages, code=code or response.status_code, error=error)


@dataclass(frozen=True)
class Settings:
    """Where to connect and how to authenticate, after precedence is applied."""

    endpoint: str
    username: str
    password: str
    token: str
    ca_cert: str
    insecure: bool

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).hostname or ""


def resolve_settings(
    endpoint: str | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_cert: str | None = None,
    insecure: bool = False,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Apply the precedence explicit > environment > default, field by field.

    Explicit credentials beat environment ones of either kind: ``-U``/``-P``
    on the command line win over an ``RS_TOKEN`` left in the environment,
    and ``-T`` wins over everything. ``RS_KEY`` without a colon is taken as
    a username with an empty password, as DRP does.
    """
    env = os.environ if env is None else env
    rs_key = env.get("RS_KEY", "")
    key_user, _, key_password = rs_key.partition(":")
    explicit_basic = bool(username) or bool(password)
    if token:
        chosen_token = token
    elif explicit_basic:
        chosen_token = ""
    else:
        chosen_token = env.get("RS_TOKEN", "")
    return Settings(
        endpoint=normalise_endpoint(endpoint or env.get("RS_ENDPOINT") or DEFAULT_ENDPOINT),
        username=username or key_user or DEFAULT_USERNAME,
        password=password or (key_password if rs_key else DEFAULT_PASSWORD),
        token=chosen_token,
        ca_cert=ca_cert or env.get("RS_CA_CERT", ""),
        insecure=insecure,
    )


def normalise_endpoint(endpoint: str) -> str:
    """``host:port`` gets ``https://``; a trailing ``/`` or ``/api/v3`` goes,
    so ``RS_ENDPOINT`` values copied from DRP docs or drpd logs all work."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"invalid endpoint {endpoint!r}: expected https://host:port")
    try:
        parts.port  # noqa: B018 -- raises on a non-numeric port
    except ValueError:
        raise ClientError(f"invalid endpoint {endpoint!r}: bad port") from None
    path = parts.path.rstrip("/")
    if path.endswith(API_BASE):
        path = path[: -len(API_BASE)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def tls_verify(settings: Settings) -> ssl.SSLContext | bool:
    """What to pass to httpx as ``verify`` (see the module docstring).

    Raises :class:`ClientError` when the given CA file cannot be loaded, so
    a typo in ``--ca-cert`` is reported as such and not as an untrusted
    server.
    """
    if not settings.endpoint.startswith("https://"):
        return True
    if settings.insecure:
        return False
    if settings.ca_cert:
        try:
            return ssl.create_default_context(cafile=settings.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ClientError(f"cannot load CA certificate {settings.ca_cert}: {reason}") from None
    if is_loopback(settings.host):
        return False
    return ssl.create_default_context()


def quote_path(*segments: str) -> str:
    """Join path segments, escaping what would change the URL's meaning.

    Each segment is one path element: a ``/`` inside it is sent as ``%2F``
    (drpd decodes param names and keys after splitting the path, so
    ``callback/url`` still names that param), and a ``.`` or ``..`` segment
    is sent encoded so no URL normalisation drops it. ``:`` stays so
    ``Name:m1`` reads as it is typed.
    """
    out = []
    for segment in segments:
        if segment == "":
            continue
        quoted = urllib.parse.quote(segment, safe=":@")
        if segment in (".", ".."):
            quoted = segment.replace(".", "%2E")
        out.append(quoted)
    return "/" + "/".join(out)


def files_path(path: str) -> str:
    """``/files/<path>`` with each segment escaped.

    ``.`` and ``..`` segments are sent escaped (``%2E%2E``) so that they
    reach drpd, which refuses them, instead of being folded away by URL
    normalisation into some other path; a leading ``/`` is kept, and
    refused by drpd as absolute.
    """
    if not path:
        return "/files"
    segments = [
        "%2E" * len(s) if s in (".", "..") else urllib.parse.quote(s, safe=":@")
        for s in path.split("/")
    ]
    return "/files/" + "/".join(segments)


class Client:
    """A keep-alive connection to one drpd; use as a context manager or
    :meth:`close` it.

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``);
    ``env`` replaces ``os.environ`` for the precedence rules.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        ca_cert: str | None = None,
        insecure: bool = False,
        *,
        env: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        debug: IO[str] | None = None,
    ) -> None:
        self.settings = resolve_settings(
            endpoint, username, password, token, ca_cert, insecure, env=env
        )
        #: the environment the settings came from (drpcli reads RS_CATALOG here)
        self.env: Mapping[str, str] = os.environ if env is None else env
        s = self.settings
        auth = None if s.token else httpx.BasicAuth(s.username, s.password)
        headers = {"Accept": "application/json", "User-Agent": "drpcli (drpd)"}
        if s.token:
            headers["Authorization"] = f"Bearer {s.token}"
        self._http = httpx.Client(
            base_url=s.endpoint + API_BASE,
            auth=auth,
            headers=headers,
            verify=tls_verify(s),
            timeout=timeout,
            # A proxy between us and a loopback drpd can only hurt.
            trust_env=not is_loopback(s.host),
            transport=transport,
            event_hooks={"response": [self._debug_line]} if debug is not None else None,
        )
        self._debug = debug

    def _debug_line(self, response: httpx.Response) -> None:
        """``-d``: one line per request on stderr (never credentials)."""
        if self._debug is not None:
            request = response.request
            self._debug.write(f"drpcli: {request.method} {request.url} -> "
                              f"{response.status_code}\n")
            self._debug.flush()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the one primitive -------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | IO[bytes] | None = None,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """Send one request to ``/api/v3<path>``; a non-2xx answer raises.

        ``path`` must already be quoted (see :func:`quote_path`). ``json``
        is encoded here (``None`` means no body; send JSON ``null`` as
        ``content=b"null"``) so ``content_type`` can name a patch flavour.
        """
        hdrs = dict(headers or {})
        if json is not None:
            content = _json.dumps(json).encode()
            hdrs.setdefault("Content-Type", content_type or "application/json")
        elif content_type:
            hdrs.setdefault("Content-Type", content_type)
        try:
            response = self._http.request(
                method, path, content=content, headers=hdrs,
                params=(None if params is None else list(params.items())
                        if isinstance(params, Mapping) else list(params)),
            )
        except httpx.InvalidURL as exc:
            raise ClientError(f"invalid request path {path!r}: {exc}") from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if not response.is_success:
            raise ClientError.from_response(response)
        return response

    def _transport_error(self, exc: httpx.HTTPError) -> ClientError:
        """Turn httpx's exception into the one line a user can act on."""
        where = self.settings.endpoint
        if _is_cert_failure(exc):
            if self.settings.ca_cert:
                return ClientError(
                    f"the TLS certificate of {where} does not verify against "
                    f"{self.settings.ca_cert} ({_root_reason(exc)}); "
                    "check --ca-cert / RS_CA_CERT, or pass --insecure to skip verification"
                )
            return ClientError(
                f"cannot verify the TLS certificate of {where} ({_root_reason(exc)}); "
                "pass --ca-cert <file> (or set RS_CA_CERT) to trust it, "
                "or --insecure to skip verification"
            )
        if isinstance(exc, httpx.TimeoutException):
            kind = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
            return ClientError(f"timed out {kind} {where}")
        if isinstance(exc, httpx.ConnectError):
            return ClientError(f"cannot connect to {where}: {_root_reason(exc)}")
        if where.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) \
                and speaks_tls(where):
            https = "https://" + where[len("http://"):]
            return ClientError(f"{where} does not answer plain HTTP: drpd serves HTTPS there; "
                               f"use -E {https} (or RS_ENDPOINT={https})")
        return ClientError(f"request to {where} failed: {_root_reason(exc)}")

    # -- JSON helpers ------------------------------------------------------

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` and decode the answer; an empty body is ``None``."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"{method} {path}: the server answered {response.status_code} "
                "with a body that is not JSON"
            ) from None

    # -- objects -----------------------------------------------------------

    def list(self, prefix: str, filters: Query | None = None) -> Any:
        return self.json("GET", quote_path(prefix), params=filters)

    def count(self, prefix: str, filters: Query | None = None) -> int:
        """How many objects the filters select (``HEAD``, DRP's count header)."""
        response = self.request("HEAD", quote_path(prefix), params=filters)
        raw = response.headers.get("X-DRP-LIST-FILTER-COUNT",
                                   response.headers.get("X-DRP-LIST-TOTAL-COUNT", ""))
        try:
            return int(raw)
        except ValueError:
            raise ClientError(f"HEAD /{prefix}: the server sent no list count") from None

    def indexes(self, prefix: str | None = None) -> Any:
        return self.json("GET", quote_path("indexes", *([prefix] if prefix else [])))

    def get(self, prefix: str, key: str, params: Query | None = None) -> Any:
        return self.json("GET", quote_path(prefix, key), params=params)

    def etag(self, prefix: str, key: str) -> str:
        response = self.request("HEAD", quote_path(prefix, key))
        return response.headers.get("ETag", "")

    def exists(self, prefix: str, key: str) -> bool:
        """True when the object is there; False on 404; other errors raise."""
        try:
            self.request("HEAD", quote_path(prefix, key))
        except ClientError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def create(self, prefix: str, obj: Any, params: Query | None = None) -> Any:
        return self.json("POST", quote_path(prefix), json=obj, params=params)

    def replace(self, prefix: str, key: str, obj: Any) -> Any:
        return self.json("PUT", quote_path(prefix, key), json=obj)

    def merge_patch(self, prefix: str, key: str, partial: Any,
                    params: Query | None = None) -> Any:
        """RFC 7396: what ``drpcli update`` sends."""
        return self.json("PATCH", quote_path(prefix, key), json=partial,
                         content_type=_MERGE_PATCH, params=params)

    def json_patch(self, prefix: str, key: str, ops: builtins.list[Any],
                   params: Query | None = None) -> Any:
        """RFC 6902: what ``drpcli patch`` sends."""
        return self.json("PATCH", quote_path(prefix, key), json=ops,
                         content_type=_JSON_PATCH, params=params)

    def delete(self, prefix: str, key: str) -> Any:
        return self.json("DELETE", quote_path(prefix, key))

    # -- params of machines, profiles, plugins ----------------------------

    def params(self, prefix: str, key: str, query: Query | None = None) -> Any:
        return self.json("GET", quote_path(prefix, key, "params"), params=query)

    def get_param(self, prefix: str, key: str, name: str, query: Query | None = None) -> Any:
        return self.json("GET", quote_path(prefix, key, "params", name), params=query)

    def set_param(self, prefix: str, key: str, name: str, value: Any) -> Any:
        return self.json(
            "POST",
            quote_path(prefix, key, "params", name),
            content=_json.dumps(value).encode(),
            content_type="application/json",
        )

    def set_params(self, prefix: str, key: str, values: Mapping[str, Any]) -> Any:
        """Replace all params of the object."""
        return self.json("POST", quote_path(prefix, key, "params"), json=dict(values))

    def delete_param(self, prefix: str, key: str, name: str) -> Any:
        return self.json("DELETE", quote_path(prefix, key, "params", name))

    def is_secure_param(self, name: str) -> bool:
        """Whether param ``name`` is defined with ``Secure: true`` (an
        undefined param is not)."""
        try:
            definition = self.get("params", name)
        except ClientError as exc:
            if exc.code == 404:
                return False
            raise
        return isinstance(definition, dict) and definition.get("Secure") is True

    def seal_for(self, prefix: str, key: str, value: Any) -> dict[str, str]:
        """``value`` sealed to the object's ``pubkey`` as DRP's ``SecureData``
        (a NaCl box from a fresh key pair), so it never crosses the wire in
        clear; the server opens it."""
        import base64

        from nacl.public import Box, PrivateKey, PublicKey
        from nacl.utils import random

        raw = self.json("GET", quote_path(prefix, key, "pubkey"))
        try:
            peer = PublicKey(base64.b64decode(raw, validate=True))
        except Exception:
            raise ClientError(f"{prefix} {key}: the server's pubkey is not a "
                              "base64 Curve25519 key") from None
        mine = PrivateKey.generate()
        nonce = random(Box.NONCE_SIZE)
        sealed = Box(mine, peer).encrypt(_json.dumps(value).encode(), nonce).ciphertext
        return {"Key": base64.b64encode(bytes(mine.public_key)).decode(),
                "Nonce": base64.b64encode(nonce).decode(),
                "Payload": base64.b64encode(sealed).decode()}

    # -- the rest ----------------------------------------------------------

    def info(self) -> Any:
        return self.json("GET", "/info")

    def token(self, user: str, ttl: int | str | None = None, **narrow: str) -> Any:
        """A token for ``user``; ``scope``/``action``/``specific``/``roles`` narrow it."""
        params = {k: v for k, v in narrow.items() if v}
        if ttl is not None:
            params["ttl"] = str(ttl)
        return self.json("GET", quote_path("users", user, "token"), params=params or None)

    def set_password(self, user: str, password: str) -> Any:
        return self.json("PUT", quote_path("users", user, "password"), json={"Password": password})

    def post_event(self, event: Any) -> Any:
        return self.json("POST", "/events", json=event)

    def restart_plugin(self, name: str) -> Any:
        return self.json("POST", quote_path("plugins", name, "restart"))

    def plugin_log(self, name: str, lines: int | None = None) -> Any:
        params = {"lines": str(lines)} if lines is not None else None
        return self.json("GET", quote_path("plugins", name, "log"), params=params)

    # -- actions -----------------------------------------------------------

    @staticmethod
    def _actions_path(prefix: str, key: str | None, *rest: str) -> str:
        """``/<prefix>/<key>/actions[/...]``; ``key`` None is the system
        level (``/system/actions``), whatever ``prefix`` says."""
        # `.` and `..` would be resolved away by the URL, not sent
        for word in (key, *rest):
            if word is not None and (not word or {".", ".."} & set(word.split("/"))):
                raise ClientError(f"{word!r} is not a valid {prefix} key or action name")
        if key is None:
            return quote_path("system", "actions", *rest)
        return quote_path(prefix, key, "actions", *rest)

    def actions(self, prefix: str, key: str | None, plugin: str | None = None) -> Any:
        """The actions available on one object (``key`` None: the system);
        ``plugin`` narrows them to one instance's."""
        query = {"plugin": plugin} if plugin else None
        return self.json("GET", self._actions_path(prefix, key), params=query)

    def action(self, prefix: str, key: str | None, command: str,
               plugin: str | None = None) -> Any:
        query = {"plugin": plugin} if plugin else None
        return self.json("GET", self._actions_path(prefix, key, command), params=query)

    def run_action(
        self,
        prefix: str,
        key: str | None,
        command: str,
        params: Mapping[str, Any] | None = None,
        plugin: str | None = None,
    ) -> Any:
        """Run ``command`` (``<provider>:<command>`` narrows the choice);
        answers the provider's result as it sent it. ``plugin`` picks the
        instance when several offer the command (else the server's 409)."""
        query = {"plugin": plugin} if plugin else None
        return self.json(
            "POST",
            self._actions_path(prefix, key, command),
            json=dict(params or {}),
            params=query,
        )

    # -- plugin provider executables ---------------------------------------

    def upload_provider(self, name: str, body: IO[bytes]) -> tuple[int, Any]:
        """Install or replace provider ``name`` from an open binary file.

        The file is streamed (httpx reads it in 64 KiB chunks and sends its
        size as Content-Length), never held in memory. Returns the status
        (201 new, 200 replaced) and the stored provider.
        """
        response = self.request(
            "POST",
            quote_path("plugin_providers", name),
            content=body,
            content_type="application/octet-stream",
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            raise ClientError(
                f"POST /plugin_providers/{name}: the server answered "
                f"{response.status_code} with a body that is not JSON"
            ) from None

    def download_provider(self, name: str, out: IO[bytes],
                          progress: Callable[[int | None], Any] | None = None) -> int:
        """Write provider ``name``'s executable to ``out``; returns its size."""
        return self.download(quote_path("plugin_providers", name, "binary"), out, progress)

    def download(self, path: str, out: IO[bytes],
                 progress: Callable[[int | None], Any] | None = None) -> int:
        """GET ``path`` and stream the body into ``out`` chunk by chunk;
        returns the number of bytes written. A non-2xx answer raises as
        :meth:`request` does, and nothing is written. ``progress(size)``
        may return a progress bar (``start``, ``advance``, ``finish``) for
        the body's announced size."""
        written = 0
        try:
            with self._http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    raise ClientError.from_response(response)
                length = response.headers.get("Content-Length", "")
                total = int(length) if length.isdigit() else None
                bar = progress(total) if progress else None
                if bar is not None:
                    bar.start(total)
                for chunk in response.iter_bytes(65_536):
                    out.write(chunk)
                    written += len(chunk)
                    if bar is not None:
                        bar.advance(len(chunk))
                if bar is not None:
                    bar.finish()
        except httpx.InvalidURL as exc:
            raise ClientError(f"invalid request path {path!r}: {exc}") from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        return written

    # -- the file space (/files) ---------------------------------------------

    def list_files(self, path: str = "") -> Any:
        """The names in a directory of the file space (``""``: its root),
        sorted; directories end in ``/``."""
        path = path.rstrip("/")
        return self.json("GET", files_path(path + "/" if path else ""))

    def upload_file(self, path: str, body: IO[bytes], explode: bool = False) -> tuple[int, Any]:
        """Store an open binary file as ``path`` in the file space, streamed.

        Answers the status (201 new, 200 replaced) and ``{Path, Size,
        Sha256}``; for ``plugin_providers/<name>`` drpd installs the file as
        that provider and answers the provider instead.
        """
        response = self.request(
            "POST", files_path(path), content=body, content_type="application/octet-stream",
            params={"explode": "true"} if explode else None,
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            raise ClientError(
                f"POST /files/{path}: the server answered {response.status_code} "
                "with a body that is not JSON"
            ) from None

    def download_file(self, path: str, out: IO[bytes],
                      progress: Callable[[int | None], Any] | None = None) -> int:
        """Write the file space's ``path`` to ``out``; returns its size."""
        return self.download(files_path(path), out, progress)

    def delete_file(self, path: str) -> Any:
        """Remove a file (or an empty directory: ``path`` ending in ``/``)."""
        return self.json("DELETE", files_path(path))

    # -- content bundles ---------------------------------------------------

    def content_names(self) -> builtins.list[str]:
        return [c.get("meta", {}).get("Name", "") for c in self.json("GET", "/contents") or []]

    def create_content(self, bundle: bytes) -> Any:
        """``POST /contents`` with a bundle as JSON or YAML text."""
        return self.json("POST", "/contents", content=bundle, content_type="application/json")

    def replace_content(self, name: str, bundle: bytes) -> Any:
        return self.json(
            "PUT", quote_path("contents", name), content=bundle, content_type="application/json"
        )


def speaks_tls(endpoint: str) -> bool:
    """Whether ``endpoint``'s port completes a TLS handshake (certificate not
    checked: this only explains why plain HTTP got no answer)."""
    import socket

    parts = urllib.parse.urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or 80
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_cert_failure(exc: BaseException) -> bool:
    return any(
        isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e)
        for e in _chain(exc)
    )


def _root_reason(exc: BaseException) -> str:
    """The most specific message in the cause chain, on one line."""
    for e in reversed(_chain(exc)):
        if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
            return e.verify_message
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        text = str(e).strip()
        if text:
            return " ".join(text.split())
    return type(exc).__name__
