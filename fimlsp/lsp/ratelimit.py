"""Complaints about a client's (or a stranger's) mistakes: stderr, rate-limited.

A client that sends garbage in a loop must not fill the disk or drown the useful lines; and a
complaint never becomes a `window/showMessage` popup, which is itself a message that can fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    """At most `limit` lines per `window_s`, then one line saying how many were left out."""

    def __init__(self, logger: logging.Logger, limit: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger, self._limit, self._window_s, self._clock = logger, limit, window_s, clock
        self._start = clock()
        self._count = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        with self._lock:
            now = self._clock()
            if now - self._start >= self._window_s:
                if self._dropped:
                    self._logger.warning("%d more such messages in the last %.0f s were not logged",
                                         self._dropped, now - self._start)
                self._start, self._count, self._dropped = now, 0, 0
            if self._count >= self._limit:
                self._dropped += 1
                return
            self._count += 1
        self._logger.log(level, message, *args, exc_info=exc_info)
