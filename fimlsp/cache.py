"""Answers without the model: typing-through and the recent completions.

Typing-through: while the user types characters that continue the suggestion on screen, the
answer is the rest of that suggestion, at once. Per document we keep the last suggestion shown
and the text around the cursor it was made for; a request whose prefix is that prefix plus a
typed string that starts the suggestion — with the suffix unchanged and the same settings — gets
the remainder. Nothing here touches the model or waits for it, so the server asks before it
queues anything on the model's thread. `fimlsp.accept` / `fimlsp.partialAccept` advance the
suggestion the same way typing does.

Recent completions: an LRU keyed by prompt identity (the prompt's token ids and the generation
settings), for the same prompt seen again — after an undo, or moving back to where the user was.
Building the prompt needs the document's sticky window edges, so this one is asked on the
model's thread, before generating.
"""

from __future__ import annotations

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

    def forget(self, key: str) -> None:
        self._shown.pop(key, None)

    def __len__(self) -> int:
        return len(self._shown)


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
