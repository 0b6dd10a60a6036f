"""Installed providers: the plugin directory, uploads, and its watcher.

A provider is installed when its executable sits at ``<plugin-dir>/<Name>``
and its ``define`` answer is stored as a ``plugin_providers`` record with the
file's ``Size`` and ``Sha256``. Every way in (found at start, dropped into
the directory while drpd runs, uploaded through the API) goes through
``install``: define, validate, then (for uploads) an atomic rename, then
the record. A bad file changes nothing that was installed.

Files whose name starts with ``.`` are drpd's own temporary uploads and are
never treated as providers.

Installing is one recoverable step. Before it changes anything (the rename
into the plugin directory, the record, the bundle, the unpacked files) it
writes a marker, ``<state>/installing/<Name>``, and removes it only once
``unpack`` succeeded. A crash (or an unpack that failed) leaves the marker:
at the next start (``recover``) the install is run again from the file in
the plugin directory, or forgotten when that file never arrived; a re-upload
of the same bytes runs it again too, where it would otherwise change nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec
import trio

from ..claims import register_scope
from ..config import Settings
from ..content import ContentService, parse_bundle
from ..models import (
    KINDS,
    BadRequest,
    Content,
    DrpError,
    Kind,
    NotFound,
    Plugin,
    PluginProvider,
    Unprocessable,
)
from ..models.extended import ExtendedKind, extended_kind
from ..models.names import is_fixed_route, is_valid_name, is_valid_provider_name
from ..storage import insufficient_storage, is_no_space
from ..store import Store
from .define import DefineError, VerbResult, define, file_digest, run_verb
from .identity import ProviderUser

log = logging.getLogger("drpd.providers")
Fingerprint = tuple[int, int, int]  # inode, size, mtime_ns
#: seconds between checks of the size an ``unpack`` has written so far
UNPACK_SIZE_POLL = 0.2


def _fingerprints(directory: Path) -> dict[str, Fingerprint]:
    found = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return {}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


class BlobTable(Protocol):
    """Where nodes sharing a store keep provider executables (PostgresStore)."""

    async def blob_put(self, sha256: str, path: Path) -> None: ...
    async def blob_get(self, sha256: str, dest: Path) -> bool: ...
    async def blob_prune(self, keep: list[str]) -> None: ...


class ProviderRegistry:
    """The installed providers: their files, records, bundles and object types.

    It writes ``plugin_providers`` records (and AutoStart instances); the
    plugin controller learns of them from the store's change feed.

    With ``blobs`` (several nodes share the store) the records are the truth:
    an executable installed on one node is kept in the database by its
    Sha256, and every other node writes it into its own plugin directory (and
    unpacks it) when it sees the record; a record removed elsewhere removes
    the local file. A file missing locally is fetched again, never a reason
    to drop the record every node shares.
    """

    def __init__(self, settings: Settings, store: Store, content: ContentService, *,
                 state_root: Path, files_dir: Path,
                 env: Callable[[str], Mapping[str, str]],
                 user: ProviderUser | None = None, blobs: BlobTable | None = None,
                 fetched: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.blobs = blobs
        #: called after providers came from another node (instances may start now)
        self.fetched = fetched
        #: the Sha256 of each local file, as installed or fetched here
        self._local_sha: dict[str, str] = {}
        self._scanned = False
        self.store = store
        self.content = content
        self.state_root = state_root
        self.files_dir = files_dir
        #: the environment of a provider's ``define`` and ``unpack`` runs
        self.env = env
        #: who runs them (``provider_user``), None: drpd's own user
        self.user = user
        self.directory = settings.plugin_path
        self.providers: dict[str, PluginProvider] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._seen: dict[str, Fingerprint] = {}

    def _lock(self, name: str) -> trio.Lock:
        return self._locks.setdefault(name, trio.Lock())

    # -- install markers -------------------------------------------------------
    @property
    def _markers(self) -> Path:
        return self.state_root / "installing"

    async def _mark(self, name: str) -> None:
        def write() -> None:
            self._markers.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self._markers / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dir_fd = os.open(self._markers, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

        await trio.to_thread.run_sync(write)

    async def _unmark(self, name: str) -> None:
        await trio.to_thread.run_sync(lambda: (self._markers / name).unlink(missing_ok=True))

    async def _marked(self, name: str) -> bool:
        return await trio.to_thread.run_sync((self._markers / name).exists)

    async def recover(self) -> None:
        """At start: finish each install a crash cut short, or forget it.

        Call before the first ``scan``. A marked provider whose file is in
        the plugin directory is installed again from it (define, record,
        bundle, unpack); one whose file never got there is forgotten.
        """
        def pending() -> list[str]:
            try:
                return sorted(os.listdir(self._markers))
            except FileNotFoundError:
                return []

        for name in await trio.to_thread.run_sync(pending):
            path = self.directory / name
            if not is_valid_provider_name(name) or not await trio.to_thread.run_sync(
                    path.is_file):
                log.warning("provider %s: its install was cut short before the file was in "
                            "place; rolled back", name)
                if is_valid_provider_name(name) and self.providers.get(name):
                    await self._forget(name)
                await self._unmark(name)
                continue
            log.warning("provider %s: its install was cut short; finishing it", name)
            try:
                await self.install(path, expected=name, in_place=True)
            except (DefineError, DrpError) as exc:
                log.error("provider %s: cannot finish its install: %s", name, exc)

    # -- start-up and watching ------------------------------------------------
    async def start(self) -> None:
        """Load the stored records, finish cut-short installs, make the records
        match the directory, serve the object types."""
        for record in self.store.list("plugin_providers"):
            self.providers[record.obj.Name] = record.obj
        await self.recover()
        await self.scan()
        self.sync_object_types()

    async def scan(self) -> None:
        """Make the records match the directory (at start, and on each poll)."""
        current = await trio.to_thread.run_sync(_fingerprints, self.directory)
        changed = [n for n, fp in current.items() if self._seen.get(n) != fp]
        gone = [n for n in self._seen if n not in current]
        self._seen = current
        if self.blobs is not None:
            # the shared records decide; missing files are fetched again. A
            # file already here at start may be an old version: the record's
            # replaces it (one no record names is installed). One changed while
            # drpd runs is an operator's install.
            for name in changed:
                record = self.store.get("plugin_providers", name)
                if record is None or (self._scanned
                                      and self._local_sha.get(name) != record.obj.Sha256):
                    try:
                        await self.install(self.directory / name, expected=name, in_place=True)
                    except (DefineError, DrpError) as exc:
                        log.error("provider file %s rejected: %s", name, exc)
            self._scanned = True
            await self.follow_store()
            return
        for name in gone:
            if self.providers.get(name) is not None:
                log.info("provider %s: its file is gone; removing it", name)
                await self._forget(name)
        for name in changed:
            try:
                await self.install(self.directory / name, expected=name, in_place=True)
            except (DefineError, DrpError) as exc:
                log.error("provider file %s rejected: %s", name, exc)
        # records whose file vanished while drpd was not running
        for name in list(self.providers):  # (one node: with blobs, follow_store)
            if name not in current:
                await self._forget(name)

    async def follow_store(self) -> None:
        """Several nodes: make this node's files match the shared records."""
        assert self.blobs is not None
        records = {r.obj.Name: r.obj for r in self.store.list("plugin_providers")}
        changed = False
        for name in [n for n in self.providers if n not in records]:
            # removed through another node: its file and unpacked files go here too
            async with self._lock(name):
                self.providers.pop(name, None)
                self._local_sha.pop(name, None)
                self._seen.pop(name, None)
                unpacked = self.files_dir / "plugin_providers" / name
                await trio.to_thread.run_sync(self._remove_local, self.directory / name, unpacked)
            log.info("provider %s was removed on another node; removed here", name)
            changed = True
        for name, provider in records.items():
            if self._local_sha.get(name) == provider.Sha256:
                self.providers[name] = provider
                continue
            async with self._lock(name):
                if await self._fetch(name, provider) and self.providers.get(name) != provider:
                    self.providers[name] = provider
                    changed = True
        if changed:
            self.sync_object_types()
            self.fetched()

    @staticmethod
    def _remove_local(path: Path, unpacked: Path) -> None:
        path.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)

    async def _fetch(self, name: str, provider: PluginProvider) -> bool:
        """This node's copy of a provider another node installed (True: the
        local file is that provider now, fetched or already here)."""
        assert self.blobs is not None
        path = self.directory / name
        if await trio.to_thread.run_sync(path.is_file):
            _, sha = await trio.to_thread.run_sync(file_digest, path)
            if sha == provider.Sha256:
                self._local_sha[name] = sha
                # installed before the nodes shared blobs: the others need a copy
                await self.blobs.blob_put(sha, path)
                return True
        tmp = self.directory / f".fetch-{name}"
        try:
            if not await self.blobs.blob_get(provider.Sha256, tmp):
                log.error("provider %s: the database holds no executable with sha256 %s: "
                          "upload it again", name, provider.Sha256[:12])
                self._local_sha[name] = provider.Sha256  # not asked again every poll
                return False
            await trio.to_thread.run_sync(os.chmod, tmp, 0o755)
            await trio.to_thread.run_sync(os.replace, tmp, path)
        except OSError as exc:
            log.error("provider %s: cannot write it here: %s", name, exc)
            return False
        finally:
            await trio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        self._local_sha[name] = provider.Sha256
        fingerprints = await trio.to_thread.run_sync(_fingerprints, self.directory)
        if name in fingerprints:
            self._seen[name] = fingerprints[name]
        await self._unpack(name)
        log.info("provider %s %s fetched from the database (sha256 %s)", name,
                 provider.Version, provider.Sha256[:12])
        return True

    async def watch(self) -> None:
        while True:
            await trio.sleep(self.settings.plugin_dir_poll)
            await self.scan()

    # -- installing --------------------------------------------------------------
    async def install(self, source: Path, *, expected: str | None,
                      in_place: bool = False, label: str | None = None) -> PluginProvider:
        """Define ``source`` and install it as ``<plugin-dir>/<Name>``.

        ``in_place`` files already sit at their final path (found in the
        directory). Raises ``DefineError`` when the file is not a provider.
        """
        if in_place:
            size, sha = await trio.to_thread.run_sync(file_digest, source)
            known = self.providers.get(source.name)
            if known is not None and known.Sha256 == sha and not await self._marked(source.name):
                return known  # the same bytes again change nothing
        await trio.to_thread.run_sync(os.chmod, source, 0o755)
        shown = label or source.name
        provider = await define(source, env=self.env(expected or source.name),
                                limit=self.settings.define_timeout, label=shown,
                                max_output=self.settings.max_define_output, user=self.user)
        if expected is not None and provider.Name != expected:
            raise DefineError(f"{shown} defines provider {provider.Name!r}, not {expected!r}")
        size, sha = await trio.to_thread.run_sync(file_digest, source)
        provider.Size, provider.Sha256 = size, sha
        bundle = self._bundle_of(provider)
        if bundle is not None:
            # a clash refuses the provider, changing nothing
            self.content.check(bundle, self._kinds_with(provider))
        async with self._lock(provider.Name):
            old = self.providers.get(provider.Name)
            unchanged = (old is not None and old.Sha256 == sha
                         and not await self._marked(provider.Name))
            if not unchanged:
                try:
                    await self._mark(provider.Name)
                except OSError as exc:
                    raise self._storage_error(exc, provider.Name) from None
            if not in_place:
                await trio.to_thread.run_sync(os.replace, source, self.directory / provider.Name)
                fingerprints = await trio.to_thread.run_sync(_fingerprints, self.directory)
                if provider.Name in fingerprints:
                    self._seen[provider.Name] = fingerprints[provider.Name]
            if unchanged:
                assert old is not None
                return old  # the same bytes again change nothing
            if self.blobs is not None:  # kept for the other nodes, before they see the record
                await self.blobs.blob_put(sha, self.directory / provider.Name)
            self._local_sha[provider.Name] = sha
            await self._store(provider)
            self.providers[provider.Name] = provider
            self.sync_object_types()  # its bundle may hold objects of its StoreObjects
            await self._install_bundle(provider.Name, bundle)
            if await self._unpack(provider.Name):
                await self._unmark(provider.Name)
            log.info("provider %s %s installed (%d bytes, sha256 %s)", provider.Name,
                     provider.Version, size, sha[:12])
            await self._changed(provider.Name)
            return provider

    def _bundle_of(self, provider: PluginProvider) -> Content | None:
        if not provider.Content:
            return None
        bundle = parse_bundle(provider.Content, what=f"provider {provider.Name} Content")
        bundle.info.Name = provider.Name
        bundle.info.Source = bundle.info.Source or f"plugin_provider:{provider.Name}"
        self.content.objects_of(bundle, self._kinds_with(provider))  # validates them
        return bundle

    def _kinds_with(self, provider: PluginProvider) -> dict[str, Kind]:
        """The store's object types plus the ones ``provider`` declares."""
        kinds = dict(self.store.kinds)
        for prefix, schema in (provider.StoreObjects or {}).items():
            current = kinds.get(prefix)
            if current is None or isinstance(current, ExtendedKind):
                kinds[prefix] = extended_kind(prefix, schema, provider=provider.Name)
        return kinds

    async def _install_bundle(self, name: str, bundle: Content | None) -> None:
        content = self.content
        if bundle is not None:
            await content.install(bundle, principal=f"plugin_provider:{name}")
        elif self.store.get("contents", name) is not None:
            await content.remove(name, principal=f"plugin_provider:{name}")

    async def _store(self, provider: PluginProvider) -> None:
        store = self.store
        if store.get("plugin_providers", provider.Name) is None:
            await store.create("plugin_providers", provider, principal="drpd")
        else:
            def keep_verb(old: Any) -> Any:
                # the verb that worked is the binary's: kept while the binary is
                if old is not None and old.Verb and old.Sha256 == provider.Sha256:
                    return msgspec.structs.replace(provider, Verb=old.Verb)
                return provider

            await store.modify("plugin_providers", provider.Name, keep_verb, principal="drpd")

    async def _unpack(self, name: str) -> bool:
        """Run ``unpack`` into a staging directory and swap it in; False when it failed."""
        target = self.files_dir / "plugin_providers" / name
        limit = self.settings.max_unpack_size
        user = self.user

        def make_staging() -> Path:
            path = Path(tempfile.mkdtemp(prefix=f".unpack-{name}-", dir=self.files_dir))
            if user is not None:  # unpack writes in there as the provider's user
                user.give(path)
            return path

        staging = await trio.to_thread.run_sync(make_staging)
        try:
            too_big = False
            result: VerbResult | None = None
            failure: Exception | None = None
            async with trio.open_nursery() as nursery:
                async def watch_size() -> None:
                    # bound the disk it takes while it runs, not only after
                    nonlocal too_big
                    while True:
                        await trio.sleep(UNPACK_SIZE_POLL)
                        if await trio.to_thread.run_sync(_tree_size, staging) > limit:
                            too_big = True
                            nursery.cancel_scope.cancel()
                            return

                nursery.start_soon(watch_size)
                try:
                    result = await run_verb(self.directory / name, ["unpack", str(staging)],
                                            env=self.env(name),
                                            limit=self.settings.define_timeout, user=user)
                except (trio.TooSlowError, OSError) as exc:
                    failure = exc  # raised here, not wrapped in the nursery's group
                nursery.cancel_scope.cancel()
            if failure is not None:
                log.warning("provider %s: unpack failed: %s", name,
                            "no answer in time" if isinstance(failure, trio.TooSlowError)
                            else failure)
                return False
            if too_big:
                log.warning("provider %s: unpack wrote over max_unpack_size (%d bytes); "
                            "stopped, not installed", name, limit)
                return False
            assert result is not None
            if result.returncode != 0:
                log.warning("provider %s: unpack exited %d: %s", name, result.returncode,
                            result.stderr.decode(errors="replace").strip()[-300:])
                return False
            unpacked = await trio.to_thread.run_sync(_tree_size, staging)
            if unpacked > limit:
                log.warning("provider %s: unpack wrote %d bytes, over max_unpack_size (%d); "
                            "not installed", name, unpacked, limit)
                return False

            def swap() -> None:
                target.parent.mkdir(parents=True, exist_ok=True)
                if any(staging.iterdir()):
                    old = target.with_name(f".old-{name}")
                    if target.exists():
                        os.replace(target, old)
                    os.replace(staging, target)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    shutil.rmtree(target, ignore_errors=True)

            await trio.to_thread.run_sync(swap)
            return True
        except (trio.TooSlowError, OSError) as exc:
            log.warning("provider %s: unpack failed: %s", name, exc)
            return False
        finally:
            await trio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))

    async def upload(self, name: str, chunks: AsyncIterator[bytes]) -> PluginProvider:
        """Stream an uploaded executable to a temporary file, then ``install`` it."""
        if not is_valid_provider_name(name):
            raise Unprocessable(f"invalid provider name {name!r}", model="plugin_providers")
        try:
            fd, tmp = await trio.to_thread.run_sync(
                lambda: tempfile.mkstemp(prefix=".upload-", dir=self.directory))
        except OSError as exc:
            raise self._storage_error(exc, name) from None
        path = Path(tmp)
        try:
            async with trio.wrap_file(os.fdopen(fd, "wb")) as f:
                async for chunk in chunks:
                    await f.write(chunk)
                await f.flush()
                await trio.to_thread.run_sync(os.fsync, fd)
            try:
                return await self.install(path, expected=name, label=f"the upload for {name}")
            except DefineError as exc:
                raise Unprocessable(str(exc), model="plugin_providers", key=name) from None
            except BadRequest as exc:  # its Content is not a valid bundle
                raise Unprocessable(str(exc), model="plugin_providers", key=name) from None
        except OSError as exc:
            raise self._storage_error(exc, name) from None
        finally:
            await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    def _storage_error(self, exc: OSError, name: str) -> Exception:
        if is_no_space(exc):
            return insufficient_storage(self.directory, f"provider {name}",
                                        model="plugin_providers", key=name)
        return exc

    async def remove(self, name: str) -> PluginProvider:
        if self.providers.get(name) is None:
            raise NotFound(f"plugin_providers {name} not found", model="plugin_providers", key=name)
        async with self._lock(name):
            await trio.to_thread.run_sync(
                lambda: (self.directory / name).unlink(missing_ok=True))
            self._seen.pop(name, None)
            return await self._forget(name)

    async def _forget(self, name: str) -> PluginProvider:
        provider = self.providers.pop(name, None)
        record = self.store.get("plugin_providers", name)
        if record is not None:
            await self.store.delete("plugin_providers", name, principal="drpd")
            provider = provider or record.obj
        bundle = self.store.get("contents", name)
        if bundle is not None and bundle.obj.meta.Source == f"plugin_provider:{name}":
            await self.content.remove(name, principal=f"plugin_provider:{name}")
        unpacked = self.files_dir / "plugin_providers" / name
        await trio.to_thread.run_sync(lambda: shutil.rmtree(unpacked, ignore_errors=True))
        await self._unmark(name)
        self._local_sha.pop(name, None)
        if self.blobs is not None:
            await self.blobs.blob_prune(
                [r.obj.Sha256 for r in self.store.list("plugin_providers")])
        await self._changed(name)
        assert provider is not None
        return provider


    async def _changed(self, name: str) -> None:
        """A provider was installed, replaced or removed: its object types, its
        AutoStart instance. Its instances follow from the change feed."""
        self.sync_object_types()
        provider = self.providers.get(name)
        if provider is not None and provider.AutoStart and self.store.get("plugins", name) is None:
            log.info("provider %s is AutoStart: creating instance %s", name, name)
            await self.store.create(
                "plugins", Plugin(Name=name, Provider=name, Validated=True), principal="drpd")

    def sync_object_types(self) -> None:
        """Serve each installed provider's StoreObjects prefixes; keep the
        objects of prefixes nobody declares any more, read-only."""
        store = self.store
        declared: dict[str, tuple[str, Any]] = {}
        for provider in sorted(self.providers.values(), key=lambda p: p.Name):
            for prefix, schema in (provider.StoreObjects or {}).items():
                if prefix in KINDS or is_fixed_route(prefix) or not is_valid_name(prefix):
                    # a record stored by an older drpd: never served
                    log.error("provider %s: StoreObjects %r is not allowed; ignored",
                              provider.Name, prefix)
                    continue
                if prefix in declared:
                    log.error("provider %s: StoreObjects %s is already declared by %s",
                              provider.Name, prefix, declared[prefix][0])
                    continue
                declared[prefix] = (provider.Name, schema)
        for prefix, (owner, schema) in declared.items():
            current = store.kinds.get(prefix)
            if (isinstance(current, ExtendedKind) and current.writable
                    and current.provider == owner and current.schema == schema):
                continue
            try:
                store.add_kind(extended_kind(prefix, schema, provider=owner))
            except Exception as exc:  # a schema stored by an older drpd
                # readable, not writable (drpd.models.schemas refuses it now)
                log.error("provider %s: StoreObjects %s has a schema drpd cannot use (%s): "
                          "its objects are read-only", owner, prefix, exc)
                store.add_kind(extended_kind(prefix, {}, provider=owner, writable=False))
        for prefix, kind in list(store.kinds.items()):
            if isinstance(kind, ExtendedKind) and prefix not in declared and kind.writable:
                store.add_kind(extended_kind(prefix, kind.schema, provider=kind.provider,
                                             writable=False))
        for prefix in store.stored_prefixes():
            if prefix not in store.kinds:
                store.add_kind(extended_kind(prefix, {}, provider="", writable=False))
        for prefix in store.kinds:
            register_scope(prefix)  # a claim may name it (drpd.claims)

def _tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (symlinks not followed)."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def provider_json(provider: PluginProvider) -> bytes:
    return msgspec.json.encode(provider)
