"""Turning command-line words into values and objects, as DRP's drpcli does.

Two rules, both from docs/api.md:

* a *value* (after ``to``, in ``name value`` pairs, in ``wait``) is JSON when
  it parses as JSON, else the word itself: ``9`` is a number, ``n`` is the
  string "n", ``'"9"'`` is the string "9";
* an *object* argument may be JSON, YAML, the name of a file holding either,
  or ``-`` for stdin.

YAML is read without timestamp conversion, so ``Version: 2024-01-01`` stays
the string it is in JSON instead of becoming a date nothing can serialise,
and through drpd.safe_yaml, so an alias bomb is refused before it expands.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from typing import IO, Any

from .registry import CliError

_OBJECT_FILE_SUFFIXES = (".json", ".yaml", ".yml")
#: what YAML may expand to (aliases counted at each use) and nest: drpd's
#: default body limit and depth cap, so an alias bomb stops here
MAX_YAML_SIZE = 16 * 1024 * 1024
MAX_YAML_DEPTH = 64


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def parse_value(word: str) -> Any:
    """JSON if the word is valid JSON, else the word as a string.

    ``NaN`` and ``Infinity`` are not JSON (Python's parser would take them),
    so they stay strings.
    """
    try:
        value = json.loads(word, parse_constant=_no_constants)
    except ValueError:
        return word
    except RecursionError:
        raise CliError("a value nested too deeply to read") from None
    if isinstance(value, float) and not math.isfinite(value):
        return word
    return value


#: YAML 1.1 booleans Go's yaml.v2 knows and PyYAML does not (upstream
#: drpcli decodes runaction values with it)
_GO_YAML_BOOLS = {"y": True, "Y": True, "n": False, "N": False}


def parse_yaml_value(word: str) -> Any:
    """A value decoded as YAML, as DRP's drpcli decodes ``runaction`` pairs:
    ``yes``/``on``/``y`` are true, ``[a, b]`` a list, ``k: v`` a map, ``9`` a
    number, ``"9"`` and ``'9'`` strings, an empty word null. A word YAML
    cannot read (``a: b: c``) is refused, as upstream does."""
    if word in _GO_YAML_BOOLS:
        return _GO_YAML_BOOLS[word]
    import yaml

    try:
        value = yaml.load(word, Loader=_loader())
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise CliError(f"Invalid parameters: {word} {problem}") from None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return word
    return value


def parse_text(text: str, what: str) -> Any:
    """JSON, else YAML; ``what`` names the source in the error."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        pass
    except RecursionError:
        raise CliError(f"{what} is nested too deeply") from None
    import yaml  # only paid for when the input is not JSON

    from ..safe_yaml import YamlRefused, load

    try:
        return load(text, max_size=MAX_YAML_SIZE, max_depth=MAX_YAML_DEPTH, loader=_loader())
    except YamlRefused as exc:
        raise CliError(f"{what}: {exc}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CliError(f"{what} is neither JSON nor YAML: {problem}{where}") from None


def load_object(arg: str, stdin: IO[str]) -> Any:
    """Read an object argument: ``-`` (stdin), a file name, or inline text.

    Inline text that starts like JSON is never looked up as a file; a word
    ending in ``.json``/``.yaml``/``.yml`` that names no file is an error
    rather than a string, so a typo in a file name does not create an
    object named after it.
    """
    if arg == "-":
        text, what = stdin.read(), "stdin"
    elif arg.lstrip()[:1] in ("{", "[", '"'):
        text, what = arg, "the argument"
    elif os.path.isfile(arg):
        try:
            with open(arg, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {arg}: {getattr(exc, 'strerror', None) or exc}") from None
        what = arg
    elif arg.endswith(_OBJECT_FILE_SUFFIXES):
        raise CliError(f"cannot read {arg}: no such file")
    else:
        text, what = arg, "the argument"
    if not text.strip():
        raise CliError(f"{what} is empty")
    obj = parse_text(text, what)
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as exc:
        # YAML can say things JSON cannot (!!binary, !!set, .nan).
        raise CliError(f"{what} holds a value JSON cannot carry: {exc}") from None
    return obj


def parse_filters(words: list[str]) -> list[tuple[str, str]]:
    """``Field=value`` words to query pairs (repeats kept, order kept)."""
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise CliError(f"bad filter {word!r}: expected Field=value")
        pairs.append((name, value))
    return pairs


_ONE_VALUE_OPS = ("Eq", "Lt", "Lte", "Gt", "Gte", "Ne", "In", "Nin", "Re")
_TWO_VALUE_OPS = ("Between", "Except")


def parse_filter_words(words: list[str]) -> list[tuple[str, str]]:
    """DRP's free-form list filters (its Go client's ``Filter``) to query pairs::

        Name Eq m1   Address Re '10\\..*'   Rank Between 1 5   Arch In amd64,arm64
        sort Name   reverse   limit 10   offset 20   slim Params,Meta   params a,b   decode

    Operators are matched without regard to case (``eq``, ``EQ``), as upstream.
    """
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("reverse", "decode"):
            pairs.append((word, "true"))
            i += 1
            continue
        if word in ("sort", "limit", "offset", "slim", "params"):
            if i + 1 >= len(words):
                raise CliError(f"bad filter: {word} needs a value")
            pairs.append((word, words[i + 1]))
            i += 2
            continue
        if i + 1 >= len(words):
            raise CliError(f"bad filter: {word} needs an operator and a value "
                           f"(e.g. {word} Eq <value>)")
        op = words[i + 1].title()
        i += 2
        if op in _ONE_VALUE_OPS:
            if i >= len(words):
                raise CliError(f"bad filter: {word} {op} needs a value")
            pairs.append((word, f"{op}({words[i]})"))
            i += 1
        elif op in _TWO_VALUE_OPS:
            if i < len(words) and "," in words[i]:
                pairs.append((word, f"{op}({words[i]})"))
                i += 1
            elif i + 1 < len(words):
                pairs.append((word, f"{op}({words[i]},{words[i + 1]})"))
                i += 2
            else:
                raise CliError(f"bad filter: {word} {op} needs two values")
        else:
            raise CliError(f"bad filter: unknown operator {words[i - 1]!r} "
                           f"(operators: {', '.join(_ONE_VALUE_OPS + _TWO_VALUE_OPS)})")
    return pairs


def parse_duration(word: str) -> float:
    """Seconds as a number, or Go-style ``500ms``, ``30s``, ``5m``, ``1h``."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    number, scale = word, 1.0
    for suffix, factor in units:
        if word.endswith(suffix):
            number, scale = word[: -len(suffix)], factor
            break
    try:
        seconds = float(number) * scale
    except ValueError:
        raise CliError(f"bad timeout {word!r}: expected seconds, or e.g. 30s, 5m") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise CliError(f"bad timeout {word!r}")
    return seconds


_LOADER: type | None = None


def _loader() -> type:
    """SafeLoader minus the timestamp resolver (see the module docstring)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        Loader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _LOADER = Loader
    return _LOADER


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def open_for_upload(path: str) -> IO[bytes]:
    """Open a local file to stream it up; a clear CliError when it cannot be.

    A regular file only: its size is the Content-Length httpx sends (a pipe
    would claim 0), and opening a FIFO would block.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CliError(f"cannot upload {path}: not a regular file")
        return open(path, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise CliError(f"cannot read {path}: {_os_reason(exc)}") from None


#: transfers at least this big get a progress bar (on a terminal only)
PROGRESS_MIN = 4 * 1024 * 1024


def progress_for(label: str, size: int | None, stream: IO[str] | None = None) -> Any:
    """A :class:`drpd.catalog.Progress` on stderr for a transfer of ``size``
    bytes, or None: small or unknown transfers, or stderr not a terminal."""
    if size is None or size < PROGRESS_MIN:
        return None
    from ..catalog import Progress

    progress = Progress(label, stream)
    return progress if progress.enabled else None


class ProgressReader:
    """A binary file that advances a progress bar as httpx reads it for an
    upload; ``fileno`` stays, so httpx still sends a Content-Length."""

    def __init__(self, fh: IO[bytes], progress: Any) -> None:
        self.fh = fh
        self.progress = progress
        self.progress.start(os.fstat(fh.fileno()).st_size)

    def read(self, size: int = -1) -> bytes:
        chunk = self.fh.read(size)
        if chunk:
            self.progress.advance(len(chunk))
        else:
            self.progress.finish()
        return chunk

    def fileno(self) -> int:
        return self.fh.fileno()

    def __iter__(self) -> Any:
        while chunk := self.read(65_536):
            yield chunk


def with_progress(fh: IO[bytes], label: str) -> Any:
    """``fh``, wrapped in a :class:`ProgressReader` when it is big and stderr
    is a terminal."""
    progress = progress_for(label, os.fstat(fh.fileno()).st_size)
    return fh if progress is None else ProgressReader(fh, progress)


def atomic_write(target: str, write: Any, mode: int | None = None) -> None:
    """Call ``write(binary_file)`` on a temporary file next to ``target``, then
    rename it over ``target``; on any failure ``target`` is untouched and the
    temporary file is gone. ``mode`` None: 0666 less the umask, as a new
    file gets."""
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory
        )
    except OSError as exc:
        raise CliError(f"cannot write {target}: {_os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CliError(f"cannot write {target}: {_os_reason(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
