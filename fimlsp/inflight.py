"""A generation still running when the user types the next key: the next request takes it over.

Editors cancel an inline-completion request as soon as the document changes (VS Code does, and
so do our Neovim and Emacs clients), so at 150 ms a key every answer that takes longer than one
keystroke is thrown away and the next request starts over — the user never sees a suggestion
while typing. Yet when the user types exactly what the running generation has started to write,
that generation is still the right answer: only its first characters are now typed. So a local
generation whose request was cancelled is not stopped; it runs on as background work (any other
request stops it), and a request at the cursor that follows by typing alone — same suffix,
prefix plus the typed characters, and a generation so far consistent with them — waits for it
and answers with the rest (`Answerer.complete`). The generation itself stops between tokens as
soon as what it writes parts from what was typed (`Progress.wrote`), so a guess that went wrong
costs one token. An orphan that ends with no request taking it over becomes the document's
typing-through suggestion, for the keystroke that comes after.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fimlsp.context import Cursor
from fimlsp.scheduler import CancelToken


def consistent(written: str, typed: str) -> bool:
    """The generation's text so far and the user's typing can still be the same text."""
    return written.startswith(typed) or typed.startswith(written)


class Progress:
    """What a running generation has written, shared by the model's thread (which writes it
    token by token) and the event loop (which reads it and says what the user typed since)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.written = ""  # the suggestion so far, relative to the request's cursor
        self.expect = ""  # typed since the request: the suggestion must start with it

    def wrote(self, text: str) -> bool:
        """The model's thread: the suggestion is `text` now; False once it parts from what the
        user typed (nobody wants the rest)."""
        with self._lock:
            self.written = text
            return consistent(text, self.expect)

    def follow(self, typed: str) -> bool:
        """The event loop: the user typed `typed` after the request's cursor; True if the
        generation can still answer for it (it then stops when it parts from it)."""
        with self._lock:
            if not (consistent(self.written, typed) and consistent(typed, self.expect)):
                return False
            if len(typed) > len(self.expect):
                self.expect = typed
            return True


@dataclass
class InFlight:
    """A document's running model request (event loop only)."""

    cursor: Cursor
    request_id: int
    settings: Any  # the answer settings it runs under
    future: Future[Any]
    token: CancelToken
    progress: Progress = field(default_factory=Progress)
    orphan: bool = False  # its own request was cancelled; it runs on for a follower

    def typed_to(self, cursor: Cursor, settings: Any) -> str | None:
        """What the user typed between this request's cursor and `cursor`, when typing is all
        that happened (else None)."""
        if settings != self.settings or cursor.suffix != self.cursor.suffix or \
                not cursor.prefix.startswith(self.cursor.prefix):
            return None
        return cursor.prefix[len(self.cursor.prefix):]

    def follows(self, cursor: Cursor, settings: Any) -> str | None:
        """The typed text, when this generation can answer a request at `cursor`."""
        if self.future.done() and (self.future.cancelled() or
                                   self.future.exception() is not None):
            return None
        typed = self.typed_to(cursor, settings)
        if typed is None or self.token() in ("cancelled", "superseded"):
            return None
        return typed if self.progress.follow(typed) else None


class Flights:
    """The running model request per document (event loop only; at most one each)."""

    def __init__(self) -> None:
        self._running: dict[str, InFlight] = {}

    def start(self, key: str, flight: InFlight) -> None:
        self._running[key] = flight

    def get(self, key: str) -> InFlight | None:
        return self._running.get(key)

    def ended(self, key: str, flight: InFlight) -> bool:
        """`flight` is over; True if it was still the document's newest request."""
        if self._running.get(key) is flight:
            del self._running[key]
            return True
        return False

    def forget(self, key: str) -> None:
        flight = self._running.pop(key, None)
        if flight is not None and flight.orphan:
            flight.token.cancel("cancelled")

    def __len__(self) -> int:
        return len(self._running)
