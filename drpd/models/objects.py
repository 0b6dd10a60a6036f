"""The stored and wire shapes, with DRP's field names.

Input is read as DRP's Go server reads it (docs/api.md): unknown fields are
ignored and ``null`` for a list or map means empty, so the whole struct a Go
client or ``drpcli contents bundle`` writes (``Endpoint``, ``Bundle``,
``Partial``, job-runner fields, typos in hand-written packs) is accepted;
wrong types are still refused. Every DRP field of the kinds drpd serves is
modelled with DRP's name and zero value, so a Go client reads back what it
expects and can PUT it back unchanged.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from msgspec import Struct, field


def _nulls_to_defaults(obj: Struct) -> None:
    """Go writes ``null`` for a nil slice or map: read it as the empty default.

    Fields declared ``X | None`` with a non-None default take the default when
    the input says null, so stored and served objects never hold null lists.
    """
    for name, default in _defaults_of(type(obj)).items():
        if getattr(obj, name) is None:
            setattr(obj, name, default())


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _defaults_of(cls: type) -> dict[str, Any]:
    found = _DEFAULTS.get(cls)
    if found is None:
        found = {}
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            if f.default_factory is not msgspec.NODEFAULT:
                found[f.name] = f.default_factory
            elif f.default is not msgspec.NODEFAULT and f.default is not None:
                value = f.default
                found[f.name] = lambda value=value: value
        _DEFAULTS[cls] = found
    return found


class GoStruct(Struct, kw_only=True):
    """Read as Go's ``encoding/json`` reads: unknown fields ignored, null means zero."""

    def __post_init__(self) -> None:
        _nulls_to_defaults(self)


#: list and map types as Go sends them (``null`` for nil)
Strs = list[str] | None
AnyMap = dict[str, Any] | None
StrMap = dict[str, str] | None


class Base(GoStruct, kw_only=True):
    """Fields every stored object carries (docs/api.md "Objects").

    ``Endpoint`` and ``Bundle`` are DRP's ``Owned`` and ``Bundled``: Go
    clients and ``drpcli contents bundle`` write them on every object.
    """

    Meta: StrMap = field(default_factory=dict)
    Validated: bool = False
    Available: bool = False
    Errors: Strs = field(default_factory=list)
    ReadOnly: bool = False
    Endpoint: str = ""
    Bundle: str = ""


class MachineFingerprint(GoStruct, kw_only=True):
    #: Go ``[]byte`` fields: base64 strings, null when nil
    SSNHash: str | None = None
    CSNHash: str | None = None
    CloudInstanceID: str = ""
    SystemUUID: str = ""
    MemoryIds: list[str] | None = None


class TaskStack(GoStruct, kw_only=True):
    CurrentTask: int = 0
    TaskList: Strs = field(default_factory=list)


class Machine(Base, kw_only=True):
    Partial: bool = False
    Uuid: str = ""
    Name: str = ""
    Description: str = ""
    Address: str = ""
    Profiles: Strs = field(default_factory=list)
    Params: AnyMap = field(default_factory=dict)
    Workflow: str = ""
    Stage: str = ""
    BootEnv: str = ""
    Arch: str = ""
    Locked: bool = False
    # DRP's job-runner fields: stored and served as given, drpd runs no jobs
    CurrentJob: str = ""
    Tasks: Strs = field(default_factory=list)
    CurrentTask: int = 0
    RetryTaskAttempt: int = 0
    TaskErrorStacks: list[TaskStack] | None = field(default_factory=list)
    Runnable: bool = False
    Secret: str = ""
    OS: str = ""
    HardwareAddrs: Strs = field(default_factory=list)
    Context: str = ""
    Fingerprint: MachineFingerprint | None = field(default_factory=MachineFingerprint)
    Pool: str = ""
    PoolAllocated: bool = False
    PoolStatus: str = ""
    WorkflowComplete: bool = False


class Param(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Secure: bool = False
    Schema: Any = field(default_factory=dict)


class Profile(Base, kw_only=True):
    Partial: bool = False
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Params: AnyMap = field(default_factory=dict)
    Profiles: Strs = field(default_factory=list)


class User(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    #: input only: hashed into PasswordHash on write, never stored or shown
    Password: str = ""
    PasswordHash: str = ""
    #: token secret (DRP's field): mixed into every token of this user and
    #: renewed with each password change, which so ends them all; never shown
    Secret: str = ""
    #: the roles whose claims the user holds (DRP's field). None only on a
    #: user stored before drpd had roles: it holds ``superuser``, as it could
    #: do everything then (drpd.access); every write stores a list
    Roles: Strs = None


class Claim(GoStruct, kw_only=True):
    """DRP's ``Claim`` (lower-case JSON names, as in DRP); drpd.claims checks them."""

    scope: str = ""
    action: str = ""
    specific: str = ""

    def __str__(self) -> str:
        return f"{self.scope} {self.action} {self.specific}"


class PluginRuntime(Struct, kw_only=True):
    """Runtime state of a plugin instance: never stored, filled in on read."""

    State: str = "stopped"
    Pid: int = 0
    StartedAt: str = ""
    Restarts: int = 0
    #: actions running on the instance now
    InFlight: int = 0
    #: the drpd node that runs the instance (its name; several share PostgreSQL)
    Node: str = ""


class Plugin(Base, kw_only=True):
    Partial: bool = False
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Provider: str = ""
    Params: AnyMap = field(default_factory=dict)
    PluginErrors: Strs = field(default_factory=list)
    Runtime: PluginRuntime | None = None
    #: random, made with the instance and kept for its life, never shown: its
    #: provider's token is bound to it, so a later instance of the same name
    #: does not accept an earlier one's token
    Secret: str = field(default_factory=lambda: secrets.token_hex(16))
    #: drpd's own: claims the operator grants this instance's provider token
    #: beyond the least-privilege set (docs/security.md); only ever given by
    #: someone who holds them
    ExtraClaims: list[Claim] | None = field(default_factory=list)


class AvailableAction(GoStruct, kw_only=True):
    Command: str = ""
    Model: str = ""
    Provider: str = ""
    RequiredParams: list[str] | None = None
    OptionalParams: list[str] | None = None


class PluginProvider(Struct, kw_only=True):
    """A provider's ``define`` output plus what drpd records on install.

    Lenient: unknown fields are ignored and null lists mean none (Go zero
    values), as docs/protocol.md §1 requires.
    """

    Name: str = ""
    Version: str = ""
    PluginVersion: int = 4
    AutoStart: bool = False
    HasPublish: bool = False
    IgnoreEvents: bool = False
    AvailableActions: list[AvailableAction] | None = None
    RequiredParams: list[str] | None = None
    OptionalParams: list[str] | None = None
    StoreObjects: dict[str, Any] | None = None
    #: drpd's own: claims the provider needs beyond its least-privilege token,
    #: shown to the operator, who grants them on an instance (Plugin.ExtraClaims)
    ExtraClaims: list[Claim] | None = None
    Documentation: str = ""
    Content: str = ""
    Size: int = 0
    Sha256: str = ""
    Meta: dict[str, str] | None = None
    Validated: bool = False
    Available: bool = False
    Errors: list[str] | None = None
    ReadOnly: bool = False
    Endpoint: str = ""
    Bundle: str = ""
    #: drpd's own: the verb (``serve`` or ``listen``) this binary (this
    #: Sha256) last answered READY! to, tried first at the next start, also
    #: after a drpd restart; empty until one start succeeded
    Verb: str = ""


class ContentMeta(GoStruct, kw_only=True):
    """DRP's ``ContentMetaData``."""

    Name: str = ""
    Version: str = ""
    Description: str = ""
    Source: str = ""
    Documentation: str = ""
    RequiredFeatures: str = ""
    Prerequisites: str = ""
    Color: str = ""
    Icon: str = ""
    Author: str = ""
    DisplayName: str = ""
    License: str = ""
    Copyright: str = ""
    CodeSource: str = ""
    Order: str = ""
    Tags: str = ""
    DocUrl: str = ""
    Type: str = ""
    Writable: bool = False
    Overwritable: bool = False


class Content(GoStruct, kw_only=True):
    """A content bundle in DRP's shape (lower-case top-level keys)."""

    meta: ContentMeta | None = field(default_factory=ContentMeta)
    sections: dict[str, dict[str, Any] | None] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        _nulls_to_defaults(self)
        assert self.sections is not None
        for prefix, entries in list(self.sections.items()):
            if entries is None:
                self.sections[prefix] = {}

    # Go's null reads as the zero value (``__post_init__``); these are the
    # fields' types once decoded, for readers that trust them.
    @property
    def info(self) -> ContentMeta:
        assert self.meta is not None
        return self.meta

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        assert self.sections is not None
        return self.sections  # type: ignore[return-value]  # no None value after __post_init__


class TemplateInfo(GoStruct, kw_only=True):
    """A template a task, stage or bootenv renders: inline ``Contents`` or by ``ID``."""

    Name: str = ""
    Path: str = ""
    Link: str = ""
    ID: str = ""
    Contents: str = ""
    Meta: StrMap = field(default_factory=dict)


TemplateInfos = list[TemplateInfo] | None


class Role(Base, kw_only=True):
    """DRP's Role: a named list of claims users hold (drpd.claims, drpd.access)."""

    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Claims: list[Claim] | None = field(default_factory=list)


class Task(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Templates: TemplateInfos = field(default_factory=list)
    RequiredParams: Strs = field(default_factory=list)
    OptionalParams: Strs = field(default_factory=list)
    Prerequisites: Strs = field(default_factory=list)
    ExtraRoles: Strs = field(default_factory=list)
    ExtraClaims: list[Claim] | None = field(default_factory=list)


class Stage(Base, kw_only=True):
    Partial: bool = False
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    BootEnv: str = ""
    Tasks: Strs = field(default_factory=list)
    Templates: TemplateInfos = field(default_factory=list)
    Params: AnyMap = field(default_factory=dict)
    Profiles: Strs = field(default_factory=list)
    RequiredParams: Strs = field(default_factory=list)
    OptionalParams: Strs = field(default_factory=list)
    RunnerWait: bool = False
    Reboot: bool = False


class ArchInfo(GoStruct, kw_only=True):
    IsoFile: str = ""
    Sha256: str = ""
    IsoUrl: str = ""
    Kernel: str = ""
    Initrds: Strs = field(default_factory=list)
    BootParams: str = ""
    Loader: str = ""


class OsInfo(GoStruct, kw_only=True):
    Name: str = ""
    Family: str = ""
    Codename: str = ""
    Version: str = ""
    IsoFile: str = ""
    IsoSha256: str = ""
    IsoUrl: str = ""
    SupportedArchitectures: dict[str, ArchInfo] | None = field(default_factory=dict)


class BootEnv(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    OS: OsInfo | None = field(default_factory=OsInfo)
    Templates: TemplateInfos = field(default_factory=list)
    Kernel: str = ""
    Initrds: Strs = field(default_factory=list)
    BootParams: str = ""
    RequiredParams: Strs = field(default_factory=list)
    OptionalParams: Strs = field(default_factory=list)
    OnlyUnknown: bool = False
    Loaders: StrMap = field(default_factory=dict)


class Template(Base, kw_only=True):
    """Keyed by ``ID``, as in DRP."""

    ID: str = ""
    Description: str = ""
    Contents: str = ""


class Workflow(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Stages: Strs = field(default_factory=list)


class Event(Struct, kw_only=True, omit_defaults=False):
    """A change or happening on drpd's event bus; ``Seq`` is drpd's addition."""

    Time: str = ""
    Type: str = ""
    Action: str = ""
    Key: str = ""
    Principal: str = ""
    Object: Any = None
    Original: Any = None
    Seq: int = 0


class Action(Struct, kw_only=True):
    """What drpd POSTs to a provider's ``/api-plugin/v4/action``."""

    Model: Any = None
    Plugin: str = ""
    Command: str = ""
    CommandSet: str = ""
    Params: dict[str, Any] = field(default_factory=dict)


class Stat(Struct, kw_only=True):
    name: str = ""
    count: int = 0


class Info(Struct, kw_only=True):
    """``GET /info`` in DRP's lower_snake names (DRP's ``models.Info``).

    Go-SDK providers read ``address`` and ``file_port`` to build
    ``ProvisionerURL``, and ``features`` to decide what they may do (ipmi
    requires ``secure-param-upgrade``). DRP's DHCP/TFTP/BINL/HA fields are
    there with their zero values: drpd serves none of that. ``uptime`` and
    ``catalog_url`` are drpd's own.
    """

    arch: str
    os: str
    version: str
    id: str = "drpd"
    local_id: str = "drpd"
    ha_id: str = "drpd"
    api_port: int = 0
    file_port: int = 0
    secure_file_port: int = 0
    dhcp_port: int = 0
    binl_port: int = 0
    tftp_port: int = 0
    tftp_enabled: bool = False
    dhcp_enabled: bool = False
    binl_enabled: bool = False
    prov_enabled: bool = True
    secure_prov_enabled: bool = False
    address: str = ""
    server_hostname: str = ""
    manager: bool = False
    stats: list[Stat] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    ha_enabled: bool = False
    ha_virtual_address: str = ""
    ha_is_active: bool = True
    ha_status: str = "Up"
    ha_active_id: str = ""
    ha_passive_state: list[Any] = field(default_factory=list)
    uptime: int = 0
    catalog_url: str = ""


class TokenResponse(Struct, kw_only=True):
    Token: str
    Info: Info


encoder = msgspec.json.Encoder()
