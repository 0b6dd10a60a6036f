"""The stored and wire shapes, with DRP's field names.

Every object kind is a ``msgspec.Struct`` that refuses unknown fields, so a
typo in a client's JSON is a 400 naming the field instead of a silently
dropped value. Shapes that come *from* providers (``PluginProvider``,
``Event``) accept unknown fields, since DRP's Go SDK sends fields of newer
versions.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct, field


class Base(Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields every stored object carries (API.md "Objects")."""

    Meta: dict[str, str] = field(default_factory=dict)
    Validated: bool = False
    Available: bool = False
    Errors: list[str] = field(default_factory=list)
    ReadOnly: bool = False


class Machine(Base, kw_only=True):
    Uuid: str = ""
    Name: str = ""
    Description: str = ""
    Address: str = ""
    Profiles: list[str] = field(default_factory=list)
    Params: dict[str, Any] = field(default_factory=dict)
    Workflow: str = ""
    Stage: str = ""
    BootEnv: str = ""
    Arch: str = ""
    Locked: bool = False


class Param(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Secure: bool = False
    Schema: Any = field(default_factory=dict)


class Profile(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Params: dict[str, Any] = field(default_factory=dict)
    Profiles: list[str] = field(default_factory=list)


class User(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    #: input only: hashed into PasswordHash on write, never stored or shown
    Password: str = ""
    PasswordHash: str = ""


class PluginRuntime(Struct, kw_only=True):
    """Runtime state of a plugin instance: never stored, filled in on read."""

    State: str = "stopped"
    Pid: int = 0
    StartedAt: str = ""
    Restarts: int = 0
    #: actions running on the instance now
    InFlight: int = 0


class Plugin(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Provider: str = ""
    Params: dict[str, Any] = field(default_factory=dict)
    PluginErrors: list[str] = field(default_factory=list)
    Runtime: PluginRuntime | None = None


class AvailableAction(Struct, kw_only=True):
    Command: str = ""
    Model: str = ""
    Provider: str = ""
    RequiredParams: list[str] | None = None
    OptionalParams: list[str] | None = None


class PluginProvider(Struct, kw_only=True):
    """A provider's ``define`` output plus what drpd records on install.

    Lenient: unknown fields are ignored and null lists mean none (Go zero
    values), as PROTOCOL.md §1 requires.
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
    Documentation: str = ""
    Content: str = ""
    Size: int = 0
    Sha256: str = ""
    Meta: dict[str, str] | None = None
    Validated: bool = False
    Available: bool = False
    Errors: list[str] | None = None
    ReadOnly: bool = False


class ContentMeta(Struct, kw_only=True, forbid_unknown_fields=False, rename=None):
    Name: str = ""
    Version: str = ""
    Source: str = ""
    Type: str = ""
    Description: str = ""
    Documentation: str = ""
    Prerequisites: str = ""


class Content(Struct, kw_only=True, forbid_unknown_fields=True):
    """A content bundle in DRP's shape (lower-case top-level keys)."""

    meta: ContentMeta = field(default_factory=ContentMeta)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


class Task(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    Templates: list[Any] = field(default_factory=list)
    RequiredParams: list[str] = field(default_factory=list)
    OptionalParams: list[str] = field(default_factory=list)
    Prerequisites: list[str] = field(default_factory=list)


class Stage(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    BootEnv: str = ""
    Tasks: list[str] = field(default_factory=list)
    Templates: list[Any] = field(default_factory=list)
    Params: dict[str, Any] = field(default_factory=dict)
    Profiles: list[str] = field(default_factory=list)
    RequiredParams: list[str] = field(default_factory=list)
    OptionalParams: list[str] = field(default_factory=list)
    RunnerWait: bool = False
    Reboot: bool = False


class BootEnv(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Documentation: str = ""
    OS: dict[str, Any] = field(default_factory=dict)
    Templates: list[Any] = field(default_factory=list)
    Kernel: str = ""
    Initrds: list[str] = field(default_factory=list)
    BootParams: str = ""
    RequiredParams: list[str] = field(default_factory=list)
    OptionalParams: list[str] = field(default_factory=list)
    OnlyUnknown: bool = False


class Template(Base, kw_only=True):
    Name: str = ""
    Description: str = ""
    Contents: str = ""


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


class Info(Struct, kw_only=True):
    Version: str
    Arch: str
    Os: str
    Uptime: int
    Features: list[str]
    ApiPort: int
    FilePort: int
    CatalogUrl: str
    Id: str = "drpd"


class TokenResponse(Struct, kw_only=True):
    Token: str
    Info: Info


encoder = msgspec.json.Encoder()
