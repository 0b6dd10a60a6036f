"""Sweep the temporaries a crashed drpd left in its state directory.

Every write drpd makes to its state goes through a temporary that is renamed
into place when complete; a SIGKILL (or a power cut) between the two leaves
the temporary behind, and nothing else ever removes it. At start, under the
state directory's lock (so no other drpd is writing them), these go:

* ``<plugin-dir>/.upload-*``: provider uploads (plugins/providers.py);
* ``files/.unpack-*`` and ``files/plugin_providers/.old-*``: a provider's
  ``unpack`` staging and the tree it replaces;
* ``.upload-*`` anywhere in the file space: ``POST /files/<path>`` streams
  each upload beside its target (api/files.py);
* ``plugins-left.tmp``, ``tls/*.tmp``, ``.drpd.db.*.tmp*`` (a restore's copy)
  and ``.write-probe`` in the state directory.

Names starting with ``.`` are refused by the file API and ignored by the
plugin directory's scan, so nothing a user stored can match.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("drpd")

_STATE_PATTERNS = ("plugins-left.tmp", ".drpd.db.*.tmp*", ".write-probe")


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot remove the leftover temporary %s: %s", path, exc.strerror or exc)
        return False
    return True


def _matching(directory: Path, *patterns: str) -> list[Path]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [directory / n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _file_space_uploads(files: Path) -> list[Path]:
    """``.upload-*`` files at any depth of the file space (symlinks not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(files):
        found += [Path(dirpath, n) for n in filenames if n.startswith(".upload-")]
        # drpd's own dot-directories are swept whole below; skip walking them
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return found


def sweep_temporaries(state_root: Path, files: Path, plugin_dir: Path) -> list[Path]:
    """Remove what a crashed drpd left half-written; returns what went. Blocking."""
    candidates = _matching(plugin_dir, ".upload-*")
    candidates += _matching(files, ".unpack-*")
    candidates += _matching(files / "plugin_providers", ".old-*")
    candidates += _file_space_uploads(files)
    candidates += _matching(state_root, *_STATE_PATTERNS)
    candidates += _matching(state_root / "tls", "*.tmp")
    removed = [path for path in candidates if _remove(path)]
    if removed:
        log.info("removed %d temporar%s left by an earlier run: %s", len(removed),
                 "y" if len(removed) == 1 else "ies",
                 ", ".join(str(p) for p in removed[:10]) + (" ..." if len(removed) > 10 else ""))
    return removed
