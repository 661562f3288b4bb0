"""Answers without the model: typing-through and the recent completions.

Typing-through: while the user types characters that continue the suggestion on screen, the
answer is the rest of that suggestion, at once. Per document we keep the last suggestion shown
and the text around the cursor it was made for; a request whose prefix is that prefix plus a
typed string that starts the suggestion — with the suffix unchanged and the same settings — gets
the remainder. Nothing here touches the model or waits for it, so the server asks before it
queues anything on the model's thread. `fimlsp.accept` / `fimlsp.partialAccept` advance the
suggestion the same way typing does.

Prefetched: the suggestion that will be wanted after the user accepts the one on screen,
computed in the model's idle time (`Completer.prefetch`) and looked up as typing-through is.

Alternatives: further suggestions at the cursor where one was shown, computed in the model's
idle time (`Completer.alternatives`) and added to the list when the client asks there again
(cycling), or after the user typed into them.

Recent completions: an LRU keyed by prompt identity (the prompt's token ids and the generation
settings), for the same prompt seen again — after an undo, or moving back to where the user was.
Building the prompt needs the document's sticky window edges, so this one is asked on the
model's thread, before generating.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fimlsp.context import Cursor


@dataclass
class Shown:
    """The suggestion on screen in one document, and where it was shown."""

    prefix: str  # the document before the cursor when it was shown
    suffix: str  # ... and after it
    text: str  # the suggestion still ahead of `prefix`
    request_id: int
    settings: Any  # the settings it was made under: other settings, other answers


class TypingThrough:
    """The last suggestion shown per document (`key`), and the answers it still holds."""

    def __init__(self, documents: int = 64) -> None:
        self._shown: OrderedDict[str, Shown] = OrderedDict()
        self._documents = documents

    def remember(self, key: str, cursor: Cursor, text: str, request_id: int,
                 settings: Any) -> None:
        """`text` is now on screen at `cursor` in document `key` (nothing, if it is empty)."""
        self._shown.pop(key, None)
        if not text:
            return
        self._shown[key] = Shown(cursor.prefix, cursor.suffix, text, request_id, settings)
        while len(self._shown) > self._documents:
            self._shown.popitem(last=False)

    def lookup(self, key: str, cursor: Cursor, settings: Any) -> str | None:
        """The rest of the suggestion on screen, if the user has only typed into it."""
        shown = self._shown.get(key)
        if shown is None or shown.settings != settings:
            return None
        prefix = cursor.prefix
        if len(prefix) < len(shown.prefix) or cursor.suffix != shown.suffix:
            return None
        typed = prefix[len(shown.prefix):]
        if not (shown.text.startswith(typed) and prefix.startswith(shown.prefix)):
            return None
        rest = shown.text[len(typed):]
        return rest if rest.strip() else None

    def advance(self, request_id: int, chars: int) -> None:
        """The user took the first `chars` characters of suggestion `request_id` (accept or
        partial accept): they are document text now, the rest is still on screen."""
        for key, shown in self._shown.items():
            if shown.request_id == request_id:
                taken = shown.text[:max(0, chars)]
                shown.prefix += taken
                shown.text = shown.text[len(taken):]
                if not shown.text.strip():
                    del self._shown[key]
                return

    def extend(self, key: str, request_id: int, prefix: str, whole: str) -> bool:
        """Suggestion `request_id`, shown at `prefix` and cut short by the time budget, has been
        generated to its end, `whole`: if it is still on screen, the rest of `whole` is now what
        typing-through and accepts go on with. False when it is gone."""
        shown = self._shown.get(key)
        if shown is None or shown.request_id != request_id or \
                not shown.prefix.startswith(prefix):
            return False
        taken = shown.prefix[len(prefix):]  # typed or accepted since it was shown
        if not whole.startswith(taken + shown.text):
            return False
        shown.text = whole[len(taken):]
        return True

    def forget(self, key: str) -> None:
        self._shown.pop(key, None)

    def __len__(self) -> int:
        return len(self._shown)


@dataclass
class Ahead:
    """A suggestion computed before it was asked for: at `prefix`/`suffix`, the cursor after
    the user accepts the suggestion on screen."""

    prefix: str
    suffix: str
    text: str
    settings: Any
    spent_ms: float  # the model's time on it, for the "wasted" count when nobody asks


class Prefetched:
    """Suggestions for where the cursor will be after an accept, per document.

    Filled from the model's thread (a background job), read on the event loop before anything
    is queued: a hit costs two string comparisons, however busy the model is. An answer is taken
    once; a document keeps its few newest, and closing it drops them.
    """

    def __init__(self, per_document: int = 4, documents: int = 64) -> None:
        self._items: OrderedDict[str, list[Ahead]] = OrderedDict()
        self._per_document = per_document
        self._documents = documents
        self._lock = threading.Lock()

    def put(self, key: str, cursor: Cursor, text: str, settings: Any, spent_ms: float) -> None:
        with self._lock:
            items = [a for a in self._items.pop(key, []) if (a.prefix, a.suffix) != (
                cursor.prefix, cursor.suffix)]
            items.insert(0, Ahead(cursor.prefix, cursor.suffix, text, settings, spent_ms))
            self._items[key] = items[:self._per_document]
            while len(self._items) > self._documents:
                self._items.popitem(last=False)

    def take(self, key: str, cursor: Cursor, settings: Any) -> Ahead | None:
        """The answer computed for exactly this cursor (and these settings), removed."""
        with self._lock:
            items = self._items.get(key, [])
            for index, ahead in enumerate(items):
                if ahead.settings == settings and ahead.prefix == cursor.prefix \
                        and ahead.suffix == cursor.suffix:
                    del items[index]
                    return ahead
        return None

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(map(len, self._items.values()))


@dataclass
class Branches:
    """Alternatives to the suggestion shown at `prefix`/`suffix`: (text, request id) each, the
    likeliest first."""

    prefix: str
    suffix: str
    texts: list[tuple[str, int]]
    settings: Any


class Alternatives:
    """The alternatives computed for the newest suggestion of each document.

    Filled from the model's thread, read on the event loop (a lock between them). One entry per
    document: a suggestion shown elsewhere replaces it, closing the document drops it.
    """

    def __init__(self, documents: int = 64) -> None:
        self._items: OrderedDict[str, Branches] = OrderedDict()
        self._documents = documents
        self._lock = threading.Lock()

    def put(self, key: str, cursor: Cursor, texts: list[tuple[str, int]],
            settings: Any) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = Branches(cursor.prefix, cursor.suffix, texts, settings)
            while len(self._items) > self._documents:
                self._items.popitem(last=False)

    def has(self, key: str, cursor: Cursor, settings: Any) -> bool:
        """Computed for exactly this cursor already (nothing to compute again)."""
        with self._lock:
            item = self._items.get(key)
            return item is not None and item.settings == settings and \
                (item.prefix, item.suffix) == (cursor.prefix, cursor.suffix)

    def lookup(self, key: str, cursor: Cursor, settings: Any) -> list[tuple[str, int]]:
        """The alternatives' rest at `cursor`: at the cursor they were made for, all of them;
        after the user typed on, those that start with what was typed, without it."""
        with self._lock:
            item = self._items.get(key)
        if item is None or item.settings != settings or cursor.suffix != item.suffix or \
                not cursor.prefix.startswith(item.prefix):
            return []
        typed = cursor.prefix[len(item.prefix):]
        return [(text[len(typed):], request_id) for text, request_id in item.texts
                if text.startswith(typed) and text[len(typed):].strip()]

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class RecentCompletions:
    """An LRU of cleaned answers keyed by prompt identity, each remembering its document so
    that closing the document drops its answers."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()  # identity → (key, text)
        self._size = size

    def get(self, identity: str) -> str | None:
        item = self._items.get(identity)
        if item is None:
            return None
        self._items.move_to_end(identity)
        return item[1]

    def put(self, identity: str, text: str, key: str = "") -> None:
        self._items[identity] = (key, text)
        self._items.move_to_end(identity)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def forget(self, key: str) -> None:
        for identity in [i for i, (k, _) in self._items.items() if k == key]:
            del self._items[identity]

    def __contains__(self, identity: str) -> bool:
        return identity in self._items

    def __len__(self) -> int:
        return len(self._items)
