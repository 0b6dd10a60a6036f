"""Settings from flags, ``DRPD_*`` environment variables, a TOML file, defaults.

Precedence is flag > environment > file > default. Keys are the snake_case of
the flags (``--api-port`` is ``api_port`` in the file and ``DRPD_API_PORT`` in
the environment). Every value is validated by decoding into ``Settings``; a
bad one is a ``ConfigError`` naming the key and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

#: URL schemes of the PostgreSQL store (several drpd nodes may share one)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    state_dir: str = "/var/lib/drpd"
    api_port: int = 8092
    static_port: int = 8091
    bind: str = "127.0.0.1"
    plugin_dir: str = ""  # empty: <state_dir>/plugins
    no_tls: bool = False
    log_level: LogLevel = "info"
    catalog_url: str = ""
    #: largest JSON request body, bytes
    max_body_size: int = 16 * 1024 * 1024
    #: deepest nesting of a JSON (or YAML) body or stored object: arrays and
    #: maps within each other; deeper is a 400 (422 when a patch builds it)
    max_json_depth: int = 64
    #: largest provider upload, bytes
    max_upload_size: int = 512 * 1024 * 1024
    #: largest file stored in the file space through POST /files/<path>, bytes
    max_file_size: int = 512 * 1024 * 1024
    #: seconds a client may take to send a request body
    body_timeout: float = 60.0
    #: lifetime of tokens from /users/<name>/token when no ttl is asked for
    token_ttl: int = 3600
    #: longest lifetime a client may ask of a token (``?ttl=``), seconds; 422 above
    max_token_ttl: int = 365 * 24 * 3600
    #: seconds a verified Basic credential is trusted without a new hash
    basic_auth_cache: float = 60.0
    #: failed logins allowed per user (four times as many per client address)
    #: before each further one doubles a wait, up to login_backoff_max seconds
    login_failures_allowed: int = 5
    login_backoff_max: float = 60.0
    define_timeout: float = 10.0
    ready_timeout: float = 30.0
    config_timeout: float = 30.0
    action_timeout: float = 60.0
    #: actions in a row that time out (504) before drpd restarts the instance
    #: (a hung provider, e.g. SIGSTOPped, answers nothing); 0 never restarts
    action_timeouts_before_restart: int = 3
    #: one cgroup (v2) per provider start where drpd may make them (root, or a
    #: unit with Delegate=yes): nothing a provider starts escapes a stop
    provider_cgroups: bool = True
    #: run providers (define, unpack, serve) as this user (name or uid), so
    #: they cannot read drpd's keys and store; needs drpd to run as root.
    #: Empty: drpd-provider when drpd runs as root and that user exists
    #: (systemd/drpd.sysusers.conf makes it), else drpd's own user
    provider_user: str = ""
    #: where objects are stored: empty for the embedded SQLite file in the
    #: state directory, or ``postgresql://user:password@host:port/db`` for a
    #: PostgreSQL database (several drpd nodes may share it)
    store_url: str = ""
    #: this node's name in GET /api/v3/nodes (default: the host name)
    node_name: str = ""
    #: PostgreSQL: how long a node's hold on a plugin instance lasts without
    #: renewal (drpd.leases); another node takes the instance over after it
    lease_seconds: float = 30.0
    #: PostgreSQL: this node's share of the instances (2 takes twice as many as 1)
    node_weight: float = 1.0
    #: PostgreSQL: the API URL other nodes forward to (default: the bind
    #: address, or this host's name when drpd binds every address)
    node_endpoint: str = ""
    stop_grace: float = 10.0
    #: a provider run longer than this counts as healthy (docs/protocol.md §5)
    healthy_after: float = 60.0
    #: crash back-off: first delay after quick successive crashes, and its cap
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: seconds between scans of the plugin directory for added/replaced/removed files
    plugin_dir_poll: float = 1.0
    shutdown_timeout: float = 20.0
    action_concurrency: int = 128
    event_queue: int = 1_000
    #: bytes (of event JSON) queued per consumer before it misses events
    event_queue_bytes: int = 16 * 1024 * 1024
    event_retain: int = 10_000
    #: bytes (of event JSON) the replay ring keeps at most
    event_retain_bytes: int = 64 * 1024 * 1024
    #: largest event from POST /events or a provider's publish, bytes (413 above)
    max_event_size: int = 1024 * 1024
    #: patterns one websocket connection may have registered at once
    max_ws_patterns: int = 1_000
    #: provider output lines logged per instance per second (more are counted
    #: and dropped), and the burst allowed above that rate
    provider_log_rate: float = 100.0
    provider_log_burst: int = 1_000
    #: largest ``define`` answer a provider may print, bytes (422 above)
    max_define_output: int = 16 * 1024 * 1024
    #: largest tree a provider's ``unpack`` may write, bytes (not installed above)
    max_unpack_size: int = 512 * 1024 * 1024
    #: port of an unauthenticated listener serving only GET /metrics on
    #: ``bind``; -1 (the default) is off, 0 picks a free port
    metrics_port: int = -1

    def __post_init__(self) -> None:
        # providers run in scratch directories: every path they are given
        # must not depend on drpd's working directory (`--state-dir .state`)
        self.state_dir = os.path.abspath(self.state_dir)
        if self.plugin_dir:
            self.plugin_dir = os.path.abspath(self.plugin_dir)
        for name in ("api_port", "static_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be 0..65535, not {port}")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be -1 (off) or 0..65535, not {self.metrics_port}")
        for name in ("max_body_size", "max_upload_size", "max_file_size", "action_concurrency",
                     "event_queue", "event_retain", "token_ttl", "event_queue_bytes",
                     "event_retain_bytes", "max_event_size", "max_ws_patterns",
                     "max_define_output", "max_unpack_size", "provider_log_burst",
                     "max_json_depth", "max_token_ttl", "login_failures_allowed"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("body_timeout", "define_timeout", "ready_timeout", "config_timeout",
                     "action_timeout", "stop_grace", "shutdown_timeout", "backoff_initial",
                     "backoff_max", "plugin_dir_poll", "provider_log_rate", "login_backoff_max",
                     "lease_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

        if self.store_url and not self.store_url.startswith(POSTGRES_SCHEMES):
            raise ValueError("store_url must be empty (the embedded SQLite store) or a "
                             "postgresql:// URL")
        if self.node_endpoint and not self.node_endpoint.startswith(("http://", "https://")):
            raise ValueError("node_endpoint must be an http:// or https:// URL")
        if self.node_weight <= 0:
            raise ValueError("node_weight must be positive")
        if self.store_url and self.lease_seconds <= 2 * (self.stop_grace + 1):
            # a node that loses the database stops its providers (stop_grace)
            # before its leases can end elsewhere; that takes this margin
            raise ValueError(f"lease_seconds ({self.lease_seconds:g}) must be more than "
                             f"2 * (stop_grace + 1) = {2 * (self.stop_grace + 1):g}")
        if self.action_timeouts_before_restart < 0:
            raise ValueError("action_timeouts_before_restart must be 0 (never) or positive")
        if self.token_ttl > self.max_token_ttl:
            raise ValueError(f"token_ttl ({self.token_ttl}) must not exceed max_token_ttl "
                             f"({self.max_token_ttl})")

    @property
    def plugin_path(self) -> Path:
        return Path(self.plugin_dir) if self.plugin_dir else Path(self.state_dir) / "plugins"

    @property
    def scheme(self) -> str:
        return "http" if self.no_tls else "https"


FIELDS = tuple(Settings.__struct_fields__)
#: settings a SIGHUP reload cannot apply to the running drpd: they name
#: sockets, directories or structures built at start. A reload that changes
#: one logs that it waits for a restart; every other setting applies at once
#: (timeouts and limits are read where they are used).
RESTART_ONLY = frozenset({
    "state_dir", "api_port", "static_port", "bind", "plugin_dir", "no_tls", "metrics_port",
    "provider_cgroups", "provider_user", "store_url", "node_weight", "node_endpoint",
    "event_retain", "basic_auth_cache", "login_failures_allowed", "login_backoff_max",
})


class ConfigError(Exception):
    pass


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        raw = env.get("DRPD_" + name.upper())
        if raw is not None:
            out[name] = raw
    return out


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge the four sources; ``flags`` holds only flags the user gave."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = config_file or env.get("DRPD_CONFIG")
    layers: list[tuple[str, dict[str, Any]]] = []
    if path:
        try:
            with open(path, "rb") as f:
                file_values = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        layers.append((f"config file {path}", file_values))
    layers.append(("environment", _from_env(env)))
    layers.append(("flags", flags))
    merged: dict[str, Any] = {}
    for source, values in layers:
        for key, value in values.items():
            if key not in FIELDS:
                raise ConfigError(f"{source}: unknown setting {key!r}")
            try:
                # strict=False lets environment strings become ints and bools
                msgspec.convert({key: value}, Settings, strict=source != "environment")
            except (msgspec.ValidationError, ValueError) as exc:
                raise ConfigError(f"{source}: bad value for {key}: {value!r} ({exc})") from None
            merged[key] = value
    try:
        return msgspec.convert(merged, Settings, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"bad config value: {exc}") from None
