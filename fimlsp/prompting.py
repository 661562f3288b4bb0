"""The prompt a request is served with: from an LSP position to a cursor, then what goes around
it (the sticky window edges, the open documents' snippets, the workspace index's, the editor's
definitions, the path header), kept per document so that the prompt stays the same keystroke
after keystroke and the engine's cache keeps matching it.

`prompt.py` lays a prompt out within the token budget; this module chooses what goes into it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from fimlsp.completion import LoadedModel
from fimlsp.context import (
    WINDOW_LINES,
    ChunkIndex,
    Cursor,
    Snippet,
    display_path,
    query_words,
    similar_snippets,
)
from fimlsp.documents import MAX_DOCUMENT_CHARS, Text
from fimlsp.engine.local import LocalEngine
from fimlsp.errors import ErrorKind, FimError
from fimlsp.positions import units_len
from fimlsp.prompt import Edges, Prompt, build_prompt
from fimlsp.repo.choose import RepoContext, uri_path
from fimlsp.repo.index import RepoIndex
from fimlsp.sources import is_secret_path

# Characters of document kept on each side of the cursor, per token of the model's window: the
# prompt needs at most a window of tokens, and code runs 2.5-5 characters per token.
CONTEXT_CHARS_PER_TOKEN = 8
_MIN_CONTEXT_CHARS = 16_384
DOCUMENTS_KEPT = 64  # documents whose per-document state is kept (LRU)
# Quick starts: an automatic request whose prompt would take longer than this to read (a file
# just opened, a jump far away) is answered from a short prompt near the cursor, in a session of
# its own, while the whole prompt is read in the background (a warm start, answering.py).
QUICK_PREFILL_MS = 600.0
MIN_QUICK_WINDOW = 256  # tokens: less is not worth a suggestion
QUICK_SUFFIX = "#quick"  # the short prompt's engine session: `key` + this
MAX_EDITOR_DEFINITIONS = 16  # definitions a client may send per `fimlsp.context`
MAX_EDITOR_CHARS = 4000  # of each one's text


class Prompter:
    """Builds the prompts of one `Completer`'s model and keeps, per document, what makes them
    stable: bounded (LRU) and dropped when the document closes (`forget`)."""

    def __init__(self, model: LoadedModel, lock: threading.RLock) -> None:
        self.model = model
        # Per document: where its prompt was cut, and its neighbour snippets with the cursor
        # line they were chosen at and the documents they came from. The other documents'
        # windows are in `_index`.
        self._edges: OrderedDict[str, Edges] = OrderedDict()
        self._neighbours: OrderedDict[str, tuple[int, list[Snippet], tuple[str, ...]]] = \
            OrderedDict()
        self._index = ChunkIndex()
        # Per-document state is used by the model's thread (completions) and the event loop
        # (`fimlsp.prompt`, closing a document): the completer's lock, shared with its parts.
        self._lock = lock
        # The open documents (uri → text), for neighbour snippets; the server provides them.
        self.documents: Callable[[], Mapping[str, str]] = dict
        # The workspace index (fimlsp/repo), when there is one; the server provides it.
        self.repo_index: Callable[[], RepoIndex | None] = lambda: None
        self._repo = RepoContext()  # per document: the index's snippets, kept stable

    def cursor_for(self, text: str | Text, line: int, character: int,
                   encoding: str = "utf-16",
                   selected: tuple[int, int, int, int, str] | None = None) -> Cursor:
        """The cursor at an LSP position (INVALID_PARAMS outside the document); with `selected`
        (start line, start character, end line, end character, text), as if that range already
        held that text (a completion item the user has selected in a popup).

        The cursor holds the document only near the position: CONTEXT_CHARS_PER_TOKEN per token
        of the window on each side, which is more than any prompt can use. Everything after this
        (prompt, policy, typing-through) then costs the same in a 100k-line or a 5 MB one-line
        file as in a small one. The prefix starts at a multiple of a quarter of that, so while
        the user types it starts at the same place and the prompt's sticky edges stay valid;
        the suffix is measured from the cursor, so typing at the cursor does not change it.
        """
        doc = text if isinstance(text, Text) else Text(text)
        if len(doc) > MAX_DOCUMENT_CHARS:
            raise FimError(ErrorKind.UNKNOWN_DOCUMENT,
                           f"document too large ({len(doc)} characters); not completing")
        begin = end = doc.offset(line, character, encoding, clamp=False)
        inserted = ""
        if selected is not None:
            begin = doc.offset(selected[0], selected[1], encoding, clamp=False)
            end = doc.offset(selected[2], selected[3], encoding, clamp=False)
            inserted = selected[4]
        chars = max(_MIN_CONTEXT_CHARS, (self.model.window or 8192) * CONTEXT_CHARS_PER_TOKEN)
        quantum = chars // 4
        start = 0 if begin <= chars else (begin - chars) // quantum * quantum
        prefix = _tokenizable(doc.slice(start, begin)) + inserted
        suffix = _tokenizable(doc.slice(end, end + chars))
        if "\x00" in prefix[-4096:] or "\x00" in suffix[:4096]:
            raise FimError(ErrorKind.UNKNOWN_DOCUMENT, "binary content near the cursor")
        return Cursor(prefix, suffix, line, character, prefix_cut=start > 0)

    def prompt_for(self, cursor: Cursor, key: str | None = None) -> Prompt:
        """The prompt at `cursor`; with a document `key`, its window edges are sticky."""
        model = self.model
        if key is None:
            if model.tokenizer is None or model.spec is None:
                model.load_tokenizer()
            assert model.tokenizer is not None and model.spec is not None
            return build_prompt(model.tokenizer, model.spec.template, model.order, cursor,
                                model.window, model.settings.max_new_tokens,
                                heal=model.heals)
        return self.served_prompt(key, cursor)[0]

    def served_prompt(self, key: str, cursor: Cursor
                      ) -> tuple[Prompt, list[Snippet], list[Snippet]]:
        """The prompt a request in document `key` is served with (sticky edges, the open
        documents' snippets, the workspace index's, the path header), with the index's snippets
        and the open documents' that went into it: one function, so that `fimlsp.prompt` shows
        exactly what a completion sends."""
        model = self.model
        if model.tokenizer is None or model.spec is None:
            model.load_tokenizer()
        assert model.tokenizer is not None and model.spec is not None
        settings = model.settings
        with self._lock:
            edges = self._edges.pop(key, None) or Edges()
            self._edges[key] = edges  # most recent last; the oldest go first
            _bound(self._edges)
            snippets = self._snippets_for(key, cursor)
            repo, repo_name, path = self._repo_snippets(key, cursor, snippets)
            share = settings.neighbour_share + (settings.repo_share if repo else 0.0)
            prompt = build_prompt(model.tokenizer, model.spec.template, model.order, cursor,
                                  model.window, settings.max_new_tokens, edges,
                                  [*repo, *snippets], path or display_path(key), share,
                                  repo_name, heal=model.heals)
            return prompt, repo, snippets

    def quick_prompt(self, key: str, cursor: Cursor, prompt: Prompt) -> Prompt | None:
        """A short prompt at `cursor` when reading the whole `prompt` would take longer than
        `QUICK_PREFILL_MS` at the engine's recent prefill speed; None when it would not (or when
        nothing says how fast reading is). Its window edges are sticky, like the document's, so
        its own session is reused keystroke after keystroke."""
        model = self.model
        engine = model.engine
        if not isinstance(engine, LocalEngine) or engine.prefill_s_per_token is None or \
                model.tokenizer is None or model.spec is None:
            return None
        max_new_tokens = model.settings.max_new_tokens
        per_token_ms = engine.prefill_s_per_token * 1000
        if engine.unread(key, prompt.ids) * per_token_ms <= QUICK_PREFILL_MS:
            return None
        window = max(MIN_QUICK_WINDOW, int(QUICK_PREFILL_MS / per_token_ms) + max_new_tokens)
        if window >= len(prompt.ids) + max_new_tokens:
            return None
        with self._lock:
            edges = self._edges.setdefault(key + QUICK_SUFFIX, Edges())
        return build_prompt(model.tokenizer, model.spec.template, model.order, cursor, window,
                            max_new_tokens, edges, (), display_path(key), heal=model.heals)

    def _repo_snippets(self, key: str, cursor: Cursor, held: list[Snippet]
                       ) -> tuple[list[Snippet], str | None, str | None]:
        """The workspace index's snippets for `cursor` (fimlsp/repo/choose.py), the name of the
        folder (`<repo_name>`) and the current file's path in it, when there are any."""
        index = self.repo_index()
        window, share = self.model.window, self.model.settings.repo_share
        if (index is None and not self._repo.editor(key)) or share <= 0 or not window:
            return [], None, None
        max_chars = int(window * share) * 3  # trimmed by tokens
        snippets = self._repo.choose(index, key, cursor, max_chars, held)
        if not snippets or index is None:
            return snippets, None, None
        here = uri_path(key)
        root = index.root_of(here) if here is not None else None
        root = root or next(iter(index.roots), None)
        path = here.relative_to(root).as_posix() if here and root and \
            here.is_relative_to(root) else None
        return snippets, index.roots.get(root) if root else None, path

    def editor_context(self, key: str, definitions: Any) -> int:
        """`fimlsp.context`: definitions the editor's language server found for the symbols
        near the cursor of `key` ([{uri, text, line?, name?}], nearest first), used as the
        best-ranked snippets of the next prompts there. The text comes from the client, so
        nothing outside the workspace folders is read here. Returns how many were kept."""
        if not isinstance(definitions, list) or len(definitions) > MAX_EDITOR_DEFINITIONS:
            raise FimError(ErrorKind.INVALID_PARAMS, "fimlsp.context takes a list of at most "
                           f"{MAX_EDITOR_DEFINITIONS} definitions {{uri, text, line?, name?}}")
        index = self.repo_index()
        snippets = []
        for number, item in enumerate(definitions):
            if not isinstance(item, dict) or not isinstance(item.get("uri"), str) or \
                    not isinstance(item.get("text"), str) or \
                    not isinstance(item.get("line", 0), int) or \
                    not isinstance(item.get("name", ""), str):
                raise FimError(ErrorKind.INVALID_PARAMS,
                               f"fimlsp.context: definitions[{number}] must be {{uri: string, "
                               "text: string, line?: integer, name?: string}")
            if not item["text"].strip() or not self._may_lend(item["uri"]):
                continue
            path = uri_path(item["uri"])
            root = index.root_of(path) if index is not None and path is not None else None
            shown = path.relative_to(root).as_posix() if root and path else \
                display_path(item["uri"])
            name = item.get("name") or "a symbol near the cursor"
            text = item["text"][:MAX_EDITOR_CHARS]
            snippets.append(Snippet(shown, text if text.endswith("\n") else text + "\n", 200.0,
                                    max(0, item.get("line", 0)), item["uri"],
                                    f"definition of {name} from the editor's language server"))
        with self._lock:
            self._repo.set_editor(key, snippets)
        return len(snippets)

    def _may_lend(self, uri: str) -> bool:
        """A definition the editor sent may open a prompt unless its file is secrets-like
        (sources.py): it may come from outside the workspace (a library), so only the name
        rule applies."""
        if self.model.settings.context_secrets:
            return True
        parsed = urlsplit(uri)
        return not is_secret_path(unquote(parsed.path or parsed.netloc).split("/"))

    def prompt_report(self, key: str, cursor: Cursor) -> tuple[Prompt, list[dict[str, Any]]]:
        """`fimlsp.prompt`: the prompt a completion at `cursor` is served with, built by the
        same function (`served_prompt`: sticky edges, both kinds of snippets, the path header,
        token healing), and why each snippet was chosen. Like a completion it moves the
        document's sticky edges, so the next completion there sends this very prompt. On the
        worker thread, as completions are."""
        prompt, repo, snippets = self.served_prompt(key, cursor)
        with self._lock:
            chosen = [dict(c) for c in self._repo.last.get(key, [])] if repo else []
        chosen += [{"path": s.path, "line": s.line + 1, "kind": "open document",
                    "reason": "similar identifiers", "score": round(s.score, 2),
                    "chars": len(s.text)} for s in snippets]
        text = prompt.text
        for entry in chosen:  # a snippet the token budget cut entirely is listed, not shown
            entry["in_prompt"] = any(s.path == entry["path"] and s.line + 1 == entry["line"]
                                     and s.text.split("\n", 1)[0] in text
                                     for s in [*repo, *snippets])
        return prompt, chosen

    def _snippets_for(self, key: str, cursor: Cursor) -> list[Snippet]:
        """Snippets of the other open documents, chosen again only when the cursor has moved
        away or they changed: they open the prompt, so changing them re-prefills everything."""
        documents = self.documents()
        self._index.prune(documents)  # closed or edited documents: their old text goes now
        share = self.model.settings.neighbour_share
        if share <= 0 or len(documents) < 2:
            return []
        key = unquote(key)  # documents are keyed unescaped
        last = self._neighbours.pop(key, None)
        # The documents the snippets came from are unchanged when the index still holds their
        # windows for the text they have now: no scan per keystroke.
        if last is not None and abs(last[0] - cursor.line) < WINDOW_LINES // 2 and all(
                self._index.is_current(uri, documents.get(uri)) for uri in last[2]):
            self._neighbours[key] = last
            return last[1]
        max_chars = int(self.model.window * share) * 4  # trimmed by tokens
        snippets = similar_snippets(query_words(cursor), documents, key, max_chars,
                                    index=self._index)
        self._neighbours[key] = (cursor.line, snippets, tuple({s.uri for s in snippets}))
        _bound(self._neighbours)
        return snippets

    def forget(self, name: str) -> None:
        """Drops what is kept for document `name` (one spelling of its uri; under the lock)."""
        self._edges.pop(name, None)
        self._edges.pop(name + QUICK_SUFFIX, None)
        self._neighbours.pop(name, None)
        self._index.forget(name)
        self._repo.forget(name)

    def document_state(self) -> dict[str, int]:
        """How many documents each of its stores holds (under the lock)."""
        return {"edges": len(self._edges), "neighbours": len(self._neighbours),
                "windows": len(self._index), "repo": len(self._repo)}


def cursor_after(cursor: Cursor, accepted: str, encoding: str = "utf-16") -> Cursor:
    """Where `cursor` is once the user has accepted `accepted` there: what `cursor_for` gives
    for the document with that text inserted (the suffix is measured from the cursor, so it does
    not change; the prefix's start moves only when it crosses a quarter of its bound, and a
    suggestion computed for a cursor that then differs is simply not found)."""
    lines = accepted.split("\n")
    character = (cursor.character if len(lines) == 1 else 0) + units_len(lines[-1], encoding)
    return Cursor(cursor.prefix + accepted, cursor.suffix, cursor.line + len(lines) - 1,
                  character, cursor.prefix_cut)


def _tokenizable(text: str) -> str:
    """Lone surrogates (a file that is not UTF-8, JSON "\\udXXX" escapes) cannot be tokenized;
    U+FFFD takes their place."""
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _bound(items: OrderedDict[str, Any], size: int = DOCUMENTS_KEPT) -> None:
    """Keeps the `size` most recently used documents' entries (most recent last)."""
    while len(items) > size:
        items.popitem(last=False)
