"""The user provider processes run as (``provider_user``).

A provider runs code drpd did not write. As drpd's own user it could read
drpd's keys (``token.key``, ``secure.key``) and its store (``drpd.db``),
and so mint any token and read every Secure param. With ``provider_user``
set, drpd (which must then run as root) starts ``define``, ``unpack`` and
``serve`` as that user, with its primary group and no supplementary groups;
it hands that user the directories a provider needs (its socket directory,
its scratch directory, an unpack's staging directory) and lets it traverse,
not list, the state directory on the way to its binary. drpd's keys, store
and backups stay 0600, drpd's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ProviderUserError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ProviderUser:
    name: str
    uid: int
    gid: int

    def spawn_options(self) -> dict[str, Any]:
        """``subprocess.Popen`` keywords that start a process as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def drop_argv(self) -> list[str] | None:
        """An argv prefix that becomes this user then execs the rest (util-linux
        ``setpriv``), for a start that must first join its cgroup as root;
        None where ``setpriv`` is missing."""
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]

    def give(self, path: Path) -> None:
        """Make ``path`` (a directory drpd just made for the provider) its own."""
        os.chown(path, self.uid, self.gid)


#: the user systemd-sysusers makes for providers (systemd/drpd.sysusers.conf)
DEFAULT_USER = "drpd-provider"


def resolve(setting: str, *, default: str = DEFAULT_USER) -> ProviderUser | None:
    """The user named (or numbered) by ``provider_user``.

    Unset, drpd running as root uses ``default`` (``drpd-provider``) when
    that user exists: an operator who installed it wants providers kept
    from drpd's keys, and a root drpd should never hand providers root.
    Otherwise (not root, or no such user) None: providers run as drpd's
    user, and a root drpd warns about it.
    """
    if not setting:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(default)
        except KeyError:
            return None
        setting = default
    try:
        entry = pwd.getpwuid(int(setting)) if setting.isdigit() else pwd.getpwnam(setting)
    except (KeyError, ValueError):
        raise ProviderUserError(f"provider_user {setting!r}: no such user") from None
    if entry.pw_uid == 0:
        raise ProviderUserError("provider_user must not be root: that is what it is for")
    if os.geteuid() != 0:
        raise ProviderUserError(
            f"provider_user {setting!r} needs drpd to run as root (to start providers as "
            "another user); unset it to run providers as drpd's own user")
    return ProviderUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def spawn_options(user: ProviderUser | None) -> dict[str, Any]:
    return user.spawn_options() if user is not None else {}
