"""msgspec shapes of every stored and wire object; imports nothing else of drpd."""

from .errors import (
    BadGateway,
    BadRequest,
    Conflict,
    DrpError,
    Error,
    Forbidden,
    GatewayTimeout,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RequestTimeout,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from .kinds import KINDS, Kind, decode_as
from .objects import (
    Action,
    AvailableAction,
    BootEnv,
    Content,
    ContentMeta,
    Event,
    Info,
    Machine,
    Param,
    Plugin,
    PluginProvider,
    PluginRuntime,
    Profile,
    Stage,
    Stat,
    Task,
    Template,
    TokenResponse,
    User,
    Workflow,
)

__all__ = [
    "KINDS", "Action", "AvailableAction", "BadGateway", "BadRequest", "BootEnv", "Conflict", "Content",
    "ContentMeta", "DrpError", "Error", "Event", "Forbidden", "GatewayTimeout", "Info",
    "InsufficientStorage", "Kind",
    "Machine", "MethodNotAllowed", "NotFound", "Param", "PayloadTooLarge", "Plugin",
    "PluginProvider", "PluginRuntime", "PreconditionFailed", "Profile", "RequestTimeout", "Stage", "Stat", "Task",
    "Template", "TokenResponse", "TooManyRequests", "Unauthorized", "Unavailable", "Unprocessable", "User", "Workflow",
    "decode_as",
]
