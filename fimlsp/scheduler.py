"""One worker thread owns the model; the newest request for a document wins.

Model work (loading, prefill, decode) blocks for milliseconds to seconds, so it never runs on the
event loop that reads LSP messages — otherwise a `$/cancelRequest` could not even be read while
we decode. A torch forward cannot be interrupted, so cancellation is cooperative: each job gets a
`CancelToken` that the engine checks between prefill chunks and between tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """A job that was cancelled before it started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """Says why a job should stop: cancelled by the client, superseded, or out of time."""

    def __init__(self, time_budget_s: float | None = None) -> None:
        self._reason: str | None = None
        self._deadline = time.monotonic() + time_budget_s if time_budget_s else None

    def cancel(self, reason: str = "cancelled") -> None:
        if self._reason is None:
            self._reason = reason

    def remaining_s(self) -> float | None:
        """Seconds left of the time budget (None: no budget), for waits that cannot check the
        token while they block: connecting to a serving engine."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def __call__(self) -> str | None:
        if self._reason is not None:
            return self._reason
        if self._deadline is not None and time.monotonic() > self._deadline:
            return "time"
        return None


class Scheduler:
    """`workers`: 1 for a model in this process (it is one device's worth of compute: a second
    thread would only slow the first); more for a serving engine, where each request is a
    connection the engine batches with the others."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fimlsp-model")
        self._latest: dict[str, CancelToken] = {}
        self._background: set[CancelToken] = set()  # warm starts: any real request stops them
        self._yielding: set[CancelToken] = set()  # next edits: any completion request stops them
        self._orphans: set[CancelToken] = set()  # requests the client cancelled: any request stops
        self._lock = threading.Lock()

    def set_workers(self, workers: int) -> None:
        """A new pool for what comes next; jobs already queued or running finish on the old."""
        if workers == self.workers:
            return
        old, self.workers = self._pool, workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fimlsp-model")
        old.shutdown(wait=False)

    def submit(self, key: str, job: Callable[[CancelToken], T],
               time_budget_s: float | None = None, *, yields: bool = False
               ) -> tuple[Future[T], CancelToken]:
        """Queues `job` for document `key`, superseding that document's previous job.
        `yields`: a job that any later `submit` (without `yields`) cancels, queued or running,
        so that a long next-edit rewrite never holds up a completion (warm starts do not)."""
        token = CancelToken(time_budget_s)
        with self._lock:
            for waiting in [*self._background, *self._orphans]:
                waiting.cancel("superseded")  # a user waits for this one: it goes first
            self._orphans.clear()
            if not yields:
                for waiting in self._yielding:
                    waiting.cancel("superseded")
            else:
                self._yielding.add(token)
            previous = self._latest.get(key)
            if previous is not None:
                previous.cancel("superseded")
            self._latest[key] = token

        def run() -> T:
            try:
                reason = token()
                if reason in ("cancelled", "superseded"):
                    raise Cancelled(reason)
                return job(token)
            finally:
                with self._lock:
                    if self._latest.get(key) is token:
                        del self._latest[key]
                    self._yielding.discard(token)
                    self._orphans.discard(token)

        return self._pool.submit(run), token

    def orphan(self, token: CancelToken, future: Future[Any]) -> None:
        """The client cancelled the request of the job behind `token`, which runs on for a
        later keystroke to take over (fimlsp/inflight.py): from now on any request stops it,
        whatever its document, as it stops background work."""
        with self._lock:
            if not future.done():
                self._orphans.add(token)

    def submit_background(self, job: Callable[[CancelToken], T]) -> tuple[Future[T],
                                                                           CancelToken]:
        """Queues work nobody waits for (a warm start); the next `submit` cancels it, queued or
        running (between its chunks), so a request never waits behind it for more than one
        chunk."""
        token = CancelToken()
        with self._lock:
            for waiting in self._background:
                waiting.cancel("superseded")  # only the newest warm start is worth finishing
            self._background.add(token)

        def run() -> T:
            try:
                reason = token()
                if reason:
                    raise Cancelled(reason)
                return job(token)
            finally:
                with self._lock:
                    self._background.discard(token)

        return self._pool.submit(run), token

    def run(self, job: Callable[[], T]) -> Future[T]:
        """Queues work that is not per document (loading a model) on the same thread."""
        return self._pool.submit(job)

    def shutdown(self) -> None:
        with self._lock:
            for token in [*self._latest.values(), *self._background, *self._yielding,
                          *self._orphans]:
                token.cancel("cancelled")
        self._pool.shutdown(wait=False, cancel_futures=True)
