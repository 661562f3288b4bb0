"""The workspace index in the server: kept in step with the client's folders and files.

The server's handlers call in here and return at once; everything that touches the disk runs on
the index's own thread (`RepoIndex.executor`), never on the event loop (which must read the next
keystroke) nor on the model's thread. The first index of the folders reports `$/progress` where
the client supports it; changes arrive as `workspace/didChangeWatchedFiles` (registered
dynamically where the client allows it, else sent by clients that watch anyway) and
`workspace/didChangeWorkspaceFolders`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from lsprotocol import types

from fimlsp import heap
from fimlsp.config import Settings
from fimlsp.repo import files as repo_files
from fimlsp.repo.choose import uri_path
from fimlsp.repo.index import Progress, RepoIndex

log = logging.getLogger("fimlsp")

BATCH = 32  # files indexed per executor job: progress and cancellation points
_WATCHED = "**/*.{" + ",".join(sorted(repo_files.SOURCE_EXTENSIONS)) + "}"


class WorkspaceIndexer:
    """Owns the RepoIndex of one server and the tasks that build and update it."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.index: RepoIndex | None = None
        self._settings: Settings | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._registered = False
        self.remote_skipped: list[str] = []  # folders not indexed: not local

    # -- folders --------------------------------------------------------------------------

    def folder_uris(self) -> list[str]:
        """The workspace folders the client gave (or its root URI)."""
        workspace = self.server.workspace
        uris = list(getattr(workspace, "folders", {}) or {})
        if not uris and getattr(workspace, "root_uri", None):
            uris = [workspace.root_uri]
        return uris

    def start(self, settings: Settings) -> None:
        """Indexes the workspace folders in the background (no-op when off or none)."""
        self._settings = settings
        if not settings.repo_context:
            self.stop()
            return
        if self.index is None:
            self.index = RepoIndex(settings.repo_max_files, settings.repo_max_bytes,
                                   settings.repo_index_timeout_s)
        self.add_folders(self.folder_uris())
        self._spawn(self._register_watchers())

    def stop(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None

    def update_settings(self, settings: Settings) -> None:
        old, self._settings = self._settings, settings
        if old is None:
            return
        caps = ("repo_max_files", "repo_max_bytes", "repo_index_timeout_s")
        if settings.repo_context != old.repo_context or \
                any(getattr(settings, c) != getattr(old, c) for c in caps):
            self.stop()
            self.start(settings)

    def add_folders(self, uris: list[str]) -> None:
        index = self.index
        if index is None:
            return
        roots = []
        for uri in uris:
            path = repo_files.folder_path(uri)
            if path is None:
                self.remote_skipped.append(uri)
                log.info("workspace folder %s not indexed: not a local directory", uri)
                continue
            if path not in index.roots and not any(path.is_relative_to(r) for r in index.roots):
                index.roots[path] = path.name
                roots.append(path)
        if roots:
            self._spawn(self._build(index, roots))

    def remove_folders(self, uris: list[str]) -> None:
        index = self.index
        if index is None:
            return
        for uri in uris:
            path = repo_files.folder_path(uri)
            if path is not None and path in index.roots:
                asyncio.get_running_loop().run_in_executor(index.executor, index.remove_root,
                                                           path)

    # -- files ----------------------------------------------------------------------------

    def files_changed(self, changes: list[types.FileEvent]) -> None:
        """Re-indexes created and changed files, drops deleted ones; paths outside the folders,
        ignored or secret ones are not read."""
        index = self.index
        if index is None or not changes:
            return
        events = [(uri_path(c.uri), c.type) for c in changes]

        def apply() -> None:
            roots = list(index.roots)
            batch: list[tuple[Path, repo_files.Candidate]] = []
            for path, kind in events:
                if path is None or index.root_of(path) is None:
                    continue
                if kind == types.FileChangeType.Deleted:
                    index.remove_file(path)
                    continue
                admitted = repo_files.admissible(path, roots)
                root = index.root_of(admitted) if admitted is not None else None
                try:
                    stat = admitted.stat() if admitted is not None else None
                except OSError:
                    stat = None
                if root is None or stat is None or stat.st_size > repo_files.MAX_FILE_BYTES:
                    index.remove_file(path)
                    continue
                if admitted in index.files or len(index.files) + len(batch) < index.max_files:
                    batch.append((root, repo_files.Candidate(admitted, stat.st_size,
                                                             stat.st_mtime_ns)))
            # Many at once (a branch switched): parsed in the worker process, as at the start.
            for start in range(0, len(batch), BATCH):
                _index_batch(index, batch[start:start + BATCH])
            index.release_worker()

        self._spawn(asyncio.get_running_loop().run_in_executor(index.executor, apply))

    # -- background work ------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("workspace index: %s", task.exception(), exc_info=task.exception())

    async def _build(self, index: RepoIndex, roots: list[Path]) -> None:
        loop = asyncio.get_running_loop()
        progress = index.progress
        progress.state, progress.started = "indexing", time.perf_counter()
        with heap.growing():  # no full collections while it grows; frozen once it is built
            await self._build_in_batches(index, roots, loop, progress)

    async def _build_in_batches(self, index: RepoIndex, roots: list[Path],
                                loop: asyncio.AbstractEventLoop, progress: Progress) -> None:
        token: str | None = None
        try:
            found = await loop.run_in_executor(index.executor, index.candidates, roots)
            progress.total += len(found)
            last_report = time.perf_counter()
            for start in range(0, len(found), BATCH):
                if index.cancelled or self.index is not index:
                    return
                if time.perf_counter() - progress.started > index.timeout_s:
                    progress.truncated = f"timeout ({index.timeout_s:g}s)"
                    break
                batch = found[start:start + BATCH]
                await loop.run_in_executor(index.executor, _index_batch, index, batch)
                progress.done += len(batch)
                if token is None and self._model_settled() and progress.done < progress.total:
                    # Only once the model's load has ended: clients that wait for "the" progress
                    # end to know the model is ready must not take the index's for it.
                    token = await self._begin(f"indexing {', '.join(r.name for r in roots)}")
                    token = token or ""
                if token and time.perf_counter() - last_report > 0.25:
                    last_report = time.perf_counter()
                    self._report(token, progress.done, progress.total)
        finally:
            loop.run_in_executor(index.executor, index.release_worker)
            progress.seconds = time.perf_counter() - progress.started
            progress.state = "ready" if self.index is index else "off"
            files = len(index.files)
            message = f"{files} files indexed in {progress.seconds:.1f}s" + (
                f" (stopped at {progress.truncated})" if progress.truncated else "")
            log.info("workspace index: %s", message)
            if token:
                self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(
                    message=message))

    def _model_settled(self) -> bool:
        settled = getattr(self.server, "settled", None)
        return settled is None or settled().is_set()

    async def _begin(self, message: str) -> str | None:
        capabilities = getattr(self.server, "client_capabilities", None)
        if not getattr(getattr(capabilities, "window", None), "work_done_progress", False):
            return None
        token = f"fimlsp-index-{uuid.uuid4()}"
        try:
            await self.server.work_done_progress.create_async(token)
            self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title="fimlsp index", message=message, percentage=0, cancellable=False))
        except Exception:  # a client that refuses progress still gets an index
            return None
        return token

    def _report(self, token: str, done: int, total: int) -> None:
        percentage = int(100 * done / total) if total else 100
        self.server.work_done_progress.report(token, types.WorkDoneProgressReport(
            message=f"{done}/{total} files", percentage=percentage))

    async def _register_watchers(self) -> None:
        """Asks the client to tell us about file changes, where it can be asked."""
        capabilities = getattr(self.server, "client_capabilities", None)
        watched = getattr(getattr(capabilities, "workspace", None), "did_change_watched_files",
                          None)
        if self._registered or not getattr(watched, "dynamic_registration", False):
            return
        self._registered = True
        options = types.DidChangeWatchedFilesRegistrationOptions(
            watchers=[types.FileSystemWatcher(glob_pattern=_WATCHED)])
        try:
            await self.server.client_register_capability_async(types.RegistrationParams(
                registrations=[types.Registration(
                    id=f"fimlsp-watch-{uuid.uuid4()}",
                    method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                    register_options=options)]))
        except Exception as error:  # the index still works; it just misses changes
            log.info("workspace index: the client refused file watching (%s)", error)

    def report(self) -> dict[str, Any]:
        if self.index is None:
            return {"state": "off"}
        return {**self.index.report(), "remote_skipped": len(self.remote_skipped)}


def _index_batch(index: RepoIndex, batch: list[tuple[Path, repo_files.Candidate]]) -> None:
    try:
        index.index_files(batch)
        return
    except Exception:  # one odd file: the batch again, file by file, without it
        log.debug("workspace index: a batch failed", exc_info=True)
    for root, candidate in batch:
        if index.cancelled:
            return
        try:
            index.index_file(root, candidate.path, candidate.size, candidate.mtime_ns)
        except Exception:  # one odd file never stops the index
            log.debug("workspace index: %s failed", candidate.path, exc_info=True)
            index.progress.skipped["failed"] += 1
