"""The path of one completion: cursor → prompt → engine → clean text, with its timings.

Shared by the LSP server and the `fimlsp complete` command so that both give the same answer for
the same document and position. Everything here runs on the scheduler's worker thread, except
`prompt_for`, which needs only the tokenizer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import torch
from tokenizers import Tokenizer

from fimlsp import __version__, healing, postprocess
from fimlsp.cache import Alternatives, Prefetched, RecentCompletions, TypingThrough
from fimlsp.config import Settings
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
from fimlsp.engine import Generation, choices
from fimlsp.engine.decoding import common_prefix
from fimlsp.engine.local import LocalEngine
from fimlsp.engine.remote import RemoteEngine
from fimlsp.errors import ErrorKind, FimError
from fimlsp.inflight import Progress
from fimlsp.models import (
    ModelSpec,
    effective_window,
    load_tokenizer,
    read_config,
    resolve_model,
)
from fimlsp.positions import units_len
from fimlsp.prompt import Edges, Prompt, build_prompt
from fimlsp.repo.choose import RepoContext, uri_path
from fimlsp.repo.index import RepoIndex
from fimlsp.scheduler import CancelToken
from fimlsp.sources import is_secret_path

log = logging.getLogger(__name__)

# Characters of document kept on each side of the cursor, per token of the model's window: the
# prompt needs at most a window of tokens, and code runs 2.5-5 characters per token.
CONTEXT_CHARS_PER_TOKEN = 8
_MIN_CONTEXT_CHARS = 16_384
_RECENT = 64  # completions kept by prompt identity (undo, moving back and forth)
# Quick starts: an automatic request whose prompt would take longer than this to read (a file
# just opened, a jump far away) is answered from a short prompt near the cursor, in a session of
# its own, while the whole prompt is read in the background (the server's warm start).
QUICK_PREFILL_MS = 600.0
MIN_QUICK_WINDOW = 256  # tokens: less is not worth a suggestion
QUICK_SUFFIX = "#quick"  # the short prompt's engine session: `key` + this
MAX_EDITOR_DEFINITIONS = 16  # definitions a client may send per `fimlsp.context`
MAX_EDITOR_CHARS = 4000  # of each one's text


T = TypeVar("T")


def _idle_work(method: Callable[..., T]) -> Callable[..., T]:
    """A Completer method whose model work nobody waits for (computing ahead, alternatives, a
    warm start, finishing a cut answer): the engine may try another thread count in it
    (engine/threads.py), which a request the user waits for never pays."""

    @functools.wraps(method)
    def wrapper(self: Completer, *args: Any, **kwargs: Any) -> T:
        if isinstance(self.engine, LocalEngine):
            with self.engine.idle_work():
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Unfinished:
    """Where a cut answer's generation stopped: enough to go on with it later."""

    ids: list[int]  # the prompt
    generated: list[int]  # the tokens generated so far
    mode: str  # the policy's mode (postprocess.mode_for)
    heal: healing.Heal | None  # what token healing backed off the prompt
    cursor: Cursor  # where it was asked for: its text is relative to this cursor


@dataclass
class Completion:
    """One answer and the numbers that explain its latency."""

    text: str
    request_id: int
    source: str = "model"  # "model" or "cache"
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    generated_tokens: int = 0
    stop_reason: str = ""
    total_ms: float = 0.0
    quick: bool = False  # from a short prompt: the whole one is still to be read (warm start)
    # An answer the time budget cut short, so the rest can be generated after it was shown
    # (`Completer.finish`). Not part of the timings.
    unfinished: Unfinished | None = field(default=None, repr=False)

    def timings(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("unfinished")
        fields["prefill_ms"] = round(self.prefill_ms, 1)
        fields["decode_ms"] = round(self.decode_ms, 1)
        fields["total_ms"] = round(self.total_ms, 1)
        return fields

    def log_line(self, where: str, cache_share: float | None = None) -> str:
        return (f"request {self.request_id} {where}: source={self.source} "
                f"prompt={self.prompt_tokens} reused={self.reused_tokens} "
                f"prefill={self.prefill_ms:.0f}ms decode={self.decode_ms:.0f}ms "
                f"generated={self.generated_tokens} stop={self.stop_reason} "
                f"total={self.total_ms:.0f}ms chars={len(self.text)}"
                + (f" cache_share={cache_share:.2f}" if cache_share is not None else ""))


@dataclass
class Stats:
    """Counters for `fimlsp.stats` and the editors' status lines; never leave the machine.

    Both the event loop and the model's thread count, so every change goes through `add` /
    `record` under the lock (`+=` on an attribute is a read and a write: two threads lose counts).
    """

    requests: int = 0
    answered_from_cache: int = 0
    cancelled: int = 0
    errors: int = 0
    accepted: int = 0
    accepted_chars: int = 0
    partially_accepted: int = 0
    warmed: int = 0  # warm starts that prefilled their whole prompt
    warm_interrupted: int = 0  # ... and those a real request stopped first
    healed: int = 0  # model requests whose prompt was backed off to a token boundary
    prefetched: int = 0  # suggestions computed ahead, for after an accept
    prefetch_used: int = 0  # ... of which a request was answered with
    prefetch_interrupted: int = 0  # ... stopped by a real request before they finished
    prefetch_ms: float = 0.0  # model time spent computing ahead
    prefetch_used_ms: float = 0.0  # ... on the ones used: the rest is the price of guessing
    alternatives: int = 0  # alternatives computed (each distinct from the first and the others)
    alternative_runs: int = 0  # suggestions whose alternatives were computed to the end
    alternatives_interrupted: int = 0  # ... stopped by a real request first
    alternatives_ms: float = 0.0  # model time spent on them
    alternatives_shown: int = 0  # alternatives sent to a client (it asked again, cycling)
    finished: int = 0  # answers the time budget cut, generated to their end after being shown
    orphaned: int = 0  # generations whose request the client cancelled, left running (inflight)
    taken_over: int = 0  # ... requests answered by one of them: the user typed what it wrote
    generated: int = 0  # tokens the model generated, over all generations
    forwards: int = 0  # forward passes that produced them (one per token without drafts)
    drafted: int = 0  # prompt-lookup draft tokens verified
    drafts_accepted: int = 0  # ... that the model agreed with
    last: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def record(self, last: dict[str, Any]) -> None:
        with self._lock:
            self.last = last

    def snapshot(self) -> Stats:
        """A consistent copy, for reports."""
        with self._lock:
            copy = dataclasses.replace(self, last=dict(self.last))
        return copy

    @property
    def cache_share(self) -> float:
        """Share of requests answered without the model (typing-through or recent answers)."""
        return self.answered_from_cache / self.requests if self.requests else 0.0


def raw_text(text: str) -> str:
    """The model's text as it came (`policy: raw`), the baseline the policy is measured against:
    only spelled-out special tokens go, since no editor should insert those."""
    text = postprocess.strip_special(text)
    return text if text.strip() else ""


class Completer:
    """Owns the tokenizer, the engine and the recent answers for one model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec: ModelSpec | None = None
        self.tokenizer: Tokenizer | None = None
        self.window = 0
        self.window_reason = ""
        self._config: dict[str, Any] | None = None  # the model's config.json, once known
        self.engine: LocalEngine | RemoteEngine | None = None
        self.stats = Stats()
        self._recent = RecentCompletions(_RECENT)  # by prompt identity, on the model's thread
        self.typing = TypingThrough()  # the suggestion on screen per document, on the event loop
        self.ahead = Prefetched()  # suggestions for after an accept, computed in idle time
        self.branches = Alternatives()  # further suggestions at the cursor, computed in idle time
        # Per document, bounded (LRU) and dropped when it closes (`forget`): where its prompt was
        # cut, and its neighbour snippets with the cursor line they were chosen at and the
        # documents they came from. The other documents' windows are in `_index`.
        self._edges: OrderedDict[str, Edges] = OrderedDict()
        self._neighbours: OrderedDict[str, tuple[int, list[Snippet], tuple[str, ...]]] = \
            OrderedDict()
        self._index = ChunkIndex()
        # Per-document state is used by the model's thread (completions) and the event loop
        # (`fimlsp.prompt`, closing a document).
        self._documents_lock = threading.RLock()
        # The open documents (uri → text), for neighbour snippets; the server provides them.
        self.documents: Callable[[], Mapping[str, str]] = dict
        # The workspace index (fimlsp/repo), when there is one; the server provides it.
        self.repo_index: Callable[[], RepoIndex | None] = lambda: None
        self._repo = RepoContext()  # per document: the index's snippets, kept stable
        self._ids = 0
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------

    def load_tokenizer(self) -> None:
        """Resolves the model and loads what prompting needs (no weights): fast."""
        s = self.settings
        source = s.tokenizer
        spec = resolve_model(s.model, s.template, source, allow_download=s.allow_download)
        self.tokenizer = load_tokenizer(spec.tokenizer_source, s.allow_download)
        self.spec = spec
        self._config = read_config(spec.source)
        self.update_settings(s)

    def load(self) -> None:
        """Everything: tokenizer, then weights. Blocking; run it on the worker thread."""
        if self.tokenizer is None:
            self.load_tokenizer()
        assert self.spec is not None and self.tokenizer is not None
        if self.settings.engine != "local":
            self.engine = self._remote_engine()
        else:
            self.engine = LocalEngine.load(self.spec, self.settings)
        if self.heals and isinstance(self.engine, LocalEngine):
            # Built here, with the model, not on the first keystroke.
            healing.index_for(self.tokenizer).prepare(self.engine.device)
        config = getattr(self.engine.model, "config", None)
        if config is not None:  # the loaded checkpoint's own limit is the one that counts
            self._config = config.to_dict()
        self.update_settings(self.settings)

    def _remote_engine(self) -> RemoteEngine:
        """A serving engine: no weights here; it asks the endpoint what it serves (a down
        endpoint is a status, not a failure: requests try again)."""
        assert self.spec is not None and self.tokenizer is not None
        stops = [t for t in self.spec.template.stop if self.tokenizer.token_to_id(t) is not None]
        engine = RemoteEngine(self.settings, self.tokenizer, stops)
        if not engine.probe():  # down now: learned once it answers, the window with it
            engine.learned = lambda: self.update_settings(self.settings)
            engine.keep_probing()
        return engine

    def update_settings(self, settings: Settings) -> None:
        """New settings that need no reload; the window follows a changed context_window."""
        self.settings = settings
        if self.spec is not None:
            cap = choices.window_cap(settings.context_window, settings.engine, settings.device)
            self.window, self.window_reason = effective_window(self.spec, self._config,
                                                               settings.context_window, cap)
            served = getattr(self.engine, "max_context", None)  # a serving engine's own limit
            if served and served < self.window:
                self.window, self.window_reason = served, "the serving engine's limit"

    def choices(self) -> dict[str, choices.Choice]:
        """Each resource setting's value and why (engine/choices.py), with the window's."""
        made = dict(getattr(self.engine, "choices", {}))
        if self.window:
            made["window"] = choices.Choice(self.window, self.window_reason)
        return made

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    # -- one request ------------------------------------------------------------------------

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
        chars = max(_MIN_CONTEXT_CHARS, (self.window or 8192) * CONTEXT_CHARS_PER_TOKEN)
        quantum = chars // 4
        start = 0 if begin <= chars else (begin - chars) // quantum * quantum
        prefix = _tokenizable(doc.slice(start, begin)) + inserted
        suffix = _tokenizable(doc.slice(end, end + chars))
        if "\x00" in prefix[-4096:] or "\x00" in suffix[:4096]:
            raise FimError(ErrorKind.UNKNOWN_DOCUMENT, "binary content near the cursor")
        return Cursor(prefix, suffix, line, character, prefix_cut=start > 0)

    def prompt_for(self, cursor: Cursor, key: str | None = None) -> Prompt:
        """The prompt at `cursor`; with a document `key`, its window edges are sticky."""
        if key is None:
            if self.tokenizer is None or self.spec is None:
                self.load_tokenizer()
            assert self.tokenizer is not None and self.spec is not None
            return build_prompt(self.tokenizer, self.spec.template, self.order, cursor,
                                self.window, self.settings.max_new_tokens,
                                heal=self.heals)
        return self._served_prompt(key, cursor)[0]

    def _served_prompt(self, key: str, cursor: Cursor
                       ) -> tuple[Prompt, list[Snippet], list[Snippet]]:
        """The prompt a request in document `key` is served with (sticky edges, the open
        documents' snippets, the workspace index's, the path header), with the index's snippets
        and the open documents' that went into it: one function, so that `fimlsp.prompt` shows
        exactly what a completion sends."""
        if self.tokenizer is None or self.spec is None:
            self.load_tokenizer()
        assert self.tokenizer is not None and self.spec is not None
        with self._documents_lock:
            edges = self._edges.pop(key, None) or Edges()
            self._edges[key] = edges  # most recent last; the oldest go first
            _bound(self._edges)
            snippets = self._snippets_for(key, cursor)
            repo, repo_name, path = self._repo_snippets(key, cursor, snippets)
            share = self.settings.neighbour_share + (self.settings.repo_share if repo else 0.0)
            prompt = build_prompt(self.tokenizer, self.spec.template, self.order, cursor,
                                  self.window, self.settings.max_new_tokens, edges,
                                  [*repo, *snippets], path or display_path(key), share,
                                  repo_name, heal=self.heals)
            return prompt, repo, snippets

    def _quick_prompt(self, key: str, cursor: Cursor, prompt: Prompt) -> Prompt | None:
        """A short prompt at `cursor` when reading the whole `prompt` would take longer than
        `QUICK_PREFILL_MS` at the engine's recent prefill speed; None when it would not (or when
        nothing says how fast reading is). Its window edges are sticky, like the document's, so
        its own session is reused keystroke after keystroke."""
        engine = self.engine
        if not isinstance(engine, LocalEngine) or engine.prefill_s_per_token is None or \
                self.tokenizer is None or self.spec is None:
            return None
        per_token_ms = engine.prefill_s_per_token * 1000
        if engine.unread(key, prompt.ids) * per_token_ms <= QUICK_PREFILL_MS:
            return None
        window = max(MIN_QUICK_WINDOW,
                     int(QUICK_PREFILL_MS / per_token_ms) + self.settings.max_new_tokens)
        if window >= len(prompt.ids) + self.settings.max_new_tokens:
            return None
        with self._documents_lock:
            edges = self._edges.setdefault(key + QUICK_SUFFIX, Edges())
        return build_prompt(self.tokenizer, self.spec.template, self.order, cursor, window,
                            self.settings.max_new_tokens, edges, (), display_path(key),
                            heal=self.heals)

    @property
    def heals(self) -> bool:
        """Token healing is on: the setting, and an engine that can constrain its first tokens
        (the in-process one; serving engines take no per-step constraint here)."""
        return self.settings.token_healing and self.settings.engine == "local"

    @property
    def offers_alternatives(self) -> bool:
        """Alternatives are computed: the setting, and the in-process engine (which branches
        its own KV session)."""
        return self.settings.alternatives > 0 and self.settings.engine == "local"

    @property
    def alternatives_status(self) -> str:
        """Alternatives as `fimlsp.stats` reports them, with why when they are off."""
        if self.settings.alternatives <= 0:
            return "off (alternatives setting)"
        if self.settings.engine != "local":
            return (f"off (the {self.settings.engine} engine would branch only by sampling or "
                    "beam search in more requests, not from the first answer's prompt: not "
                    "built)")
        return f"on ({self.settings.alternatives})"

    @property
    def healing_status(self) -> str:
        """Token healing as `fimlsp.stats` reports it, with why when it is off."""
        if not self.settings.token_healing:
            return "off (tokenHealing setting)"
        if self.settings.engine != "local":
            return f"off (the {self.settings.engine} engine cannot constrain the first tokens)"
        return "on"

    def _repo_snippets(self, key: str, cursor: Cursor, held: list[Snippet]
                       ) -> tuple[list[Snippet], str | None, str | None]:
        """The workspace index's snippets for `cursor` (fimlsp/repo/choose.py), the name of the
        folder (`<repo_name>`) and the current file's path in it, when there are any."""
        index = self.repo_index()
        if (index is None and not self._repo.editor(key)) or self.settings.repo_share <= 0 \
                or not self.window:
            return [], None, None
        max_chars = int(self.window * self.settings.repo_share) * 3  # trimmed by tokens
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
        with self._documents_lock:
            self._repo.set_editor(key, snippets)
        return len(snippets)

    def _may_lend(self, uri: str) -> bool:
        """A definition the editor sent may open a prompt unless its file is secrets-like
        (sources.py): it may come from outside the workspace (a library), so only the name
        rule applies."""
        if self.settings.context_secrets:
            return True
        parsed = urlsplit(uri)
        return not is_secret_path(unquote(parsed.path or parsed.netloc).split("/"))

    def prompt_report(self, key: str, cursor: Cursor) -> tuple[Prompt, list[dict[str, Any]]]:
        """`fimlsp.prompt`: the prompt a completion at `cursor` is served with, built by the
        same function (`_served_prompt`: sticky edges, both kinds of snippets, the path header,
        token healing), and why each snippet was chosen. Like a completion it moves the
        document's sticky edges, so the next completion there sends this very prompt. On the
        worker thread, as completions are."""
        prompt, repo, snippets = self._served_prompt(key, cursor)
        with self._documents_lock:
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

    @property
    def order(self) -> str:
        """The FIM order prompts use: the `order` setting, else the model's (preset/template).
        An order the template was not trained with is refused by `build_prompt`."""
        assert self.spec is not None
        return self.spec.order if self.settings.order == "auto" else self.settings.order

    def _snippets_for(self, key: str, cursor: Cursor) -> list[Snippet]:
        """Snippets of the other open documents, chosen again only when the cursor has moved
        away or they changed: they open the prompt, so changing them re-prefills everything."""
        documents = self.documents()
        self._index.prune(documents)  # closed or edited documents: their old text goes now
        if self.settings.neighbour_share <= 0 or len(documents) < 2:
            return []
        key = unquote(key)  # documents are keyed unescaped
        last = self._neighbours.pop(key, None)
        # The documents the snippets came from are unchanged when the index still holds their
        # windows for the text they have now: no scan per keystroke.
        if last is not None and abs(last[0] - cursor.line) < WINDOW_LINES // 2 and all(
                self._index.is_current(uri, documents.get(uri)) for uri in last[2]):
            self._neighbours[key] = last
            return last[1]
        max_chars = int(self.window * self.settings.neighbour_share) * 4  # trimmed by tokens
        snippets = similar_snippets(query_words(cursor), documents, key, max_chars,
                                    index=self._index)
        self._neighbours[key] = (cursor.line, snippets, tuple({s.uri for s in snippets}))
        _bound(self._neighbours)
        return snippets

    def forget(self, key: str, *session_suffixes: str) -> None:
        """Drops everything kept for document `key`, which was closed: window edges, neighbour
        snippets and windows, recent answers, the suggestion on screen, the engine's cache
        (and its other sessions, `key` + each suffix: next edits'). On the model's thread (the
        engine's cache is its); `typing` is the event loop's."""
        with self._documents_lock:
            for name in {key, unquote(key)}:
                self._edges.pop(name, None)
                self._edges.pop(name + QUICK_SUFFIX, None)
                self._neighbours.pop(name, None)
                self._index.forget(name)
                self._repo.forget(name)
                self._recent.forget(name)
                self.ahead.forget(name)
                self.branches.forget(name)
                if self.engine is not None:
                    self.engine.drop_session(name)
                    for suffix in (*session_suffixes, QUICK_SUFFIX):
                        self.engine.drop_session(name + suffix)

    def document_state(self) -> dict[str, int]:
        """How many documents each per-document store holds: all bounded, closed ones gone."""
        with self._documents_lock:
            return {"edges": len(self._edges), "neighbours": len(self._neighbours),
                    "windows": len(self._index), "recent": len(self._recent),
                    "repo": len(self._repo),
                    "typing": len(self.typing), "alternatives": len(self.branches),
                    "sessions": self.engine.session_count if self.engine is not None else 0}

    def complete(self, key: str, cursor: Cursor, token: CancelToken | None = None,
                 request_id: int | None = None, count: bool = True,
                 progress: Progress | None = None, quick: bool = False,
                 lines_by_ms: float | None = None) -> Completion:
        """The cleaned suggestion for `cursor`; blocking, on the worker thread. `count`: a
        request of the user's (not one computed ahead), for the stats. `progress`: where the
        text so far is kept for a later keystroke to take the generation over (inflight.py).
        `quick`: an automatic request, which may be answered from a short prompt when the whole
        one would take long to read (`QUICK_PREFILL_MS`). `lines_by_ms`: the user is typing; a
        block that has finished a line by then is answered with its finished lines (pace.py)."""
        started = time.perf_counter()
        request_id = request_id if request_id is not None else self.next_id()
        self._count(cache=False, request=count)
        prompt = self.prompt_for(cursor, key)
        session = key
        short = self._quick_prompt(key, cursor, prompt) if quick else None
        if short is not None:
            prompt, session = short, key + QUICK_SUFFIX
        mode = postprocess.mode_for(cursor, self.settings.multiline, key)
        # Settings and a healed prompt's removed text are part of the answer: `self.re|` and
        # `self.req|` back off to the same ids.
        key_parts = (prompt.ids, prompt.heal.text if prompt.heal else None, mode,
                     *self.answer_settings)
        identity = hashlib.blake2b(repr(key_parts).encode(), digest_size=16).hexdigest()
        with self._documents_lock:  # several worker threads with a serving engine
            recent = self._recent.get(identity)
        if recent is not None:
            self._count(cache=count, request=False)
            result = Completion(recent, request_id, "cache",
                                prompt_tokens=len(prompt.ids), stop_reason="cache")
        else:
            generation = self._generate(key, cursor, prompt.ids, mode,
                                        token or CancelToken(), heal=prompt.heal,
                                        progress=progress, session=session,
                                        lines_by=None if lines_by_ms is None else
                                        started + lines_by_ms / 1000)
            self.stats.add(healed=int(prompt.heal is not None))
            text = healing.suggestion(self.tokenizer, generation.ids, prompt.heal)
            cut = generation.stop_reason == "time" and mode == "block" and \
                self.settings.policy != "raw"
            if cut:  # the line being written could still be cut once it ends: not shown
                text = finished_lines(text)
            text = raw_text(text) if self.settings.policy == "raw" else postprocess.clean(
                text, cursor, mode, key)
            result = Completion(text, request_id, "model", len(prompt.ids),
                                generation.reused_tokens, generation.prefill_ms,
                                generation.decode_ms, len(generation.ids), generation.stop_reason)
            result.quick = short is not None
            if cut and text and short is None:  # a quick answer's rest is not worth its session
                result.unfinished = Unfinished(prompt.ids, generation.ids, mode, prompt.heal,
                                               cursor)
            self.stats.add(generated=len(generation.ids),
                           forwards=generation.decode_forwards + bool(generation.ids),
                           drafted=generation.drafted, drafts_accepted=generation.accepted)
            if generation.interrupted:
                self.stats.add(cancelled=1)
            elif generation.stop_reason != "time":
                with self._documents_lock:
                    self._recent.put(identity, text, key)
        result.total_ms = (time.perf_counter() - started) * 1000
        if count:
            self.stats.record(result.timings())
        return result

    # -- computing ahead: the suggestion after an accept ------------------------------------

    @_idle_work
    def prefetch(self, key: str, cursor: Cursor, shown: str, token: CancelToken) -> None:
        """Computes, in the model's idle time, the suggestion that will be asked for once the
        user accepts `shown` at `cursor`, and keeps it where `answer_ahead` finds it: after an
        accept the next suggestion is there at once (llama.vim's `fim_try_hint`). The same KV
        session: its prompt is this one plus the accepted text, so only those tokens are new.
        Any real request stops it between tokens; what it had is then dropped."""
        if self.engine is None or not shown:
            return
        after = cursor_after(cursor, shown)
        started = time.perf_counter()
        result = self.complete(key, after, token, count=False)
        spent = (time.perf_counter() - started) * 1000
        if result.stop_reason in ("cancelled", "superseded", "time"):
            self.stats.add(prefetch_interrupted=1, prefetch_ms=spent)
            return
        self.stats.add(prefetched=1, prefetch_ms=spent)
        self.ahead.put(key, after, result.text, self.answer_settings, spent)

    def answer_ahead(self, key: str, cursor: Cursor) -> Completion | None:
        """The suggestion computed ahead for exactly this cursor; on the event loop, before
        anything is queued (as `typed_through`)."""
        started = time.perf_counter()
        ahead = self.ahead.take(key, cursor, self.answer_settings)
        if ahead is None:
            return None
        self._count(cache=True)
        self.stats.add(prefetch_used=1, prefetch_used_ms=ahead.spent_ms)
        result = Completion(ahead.text, self.next_id(), "prefetch", stop_reason="prefetched")
        result.total_ms = (time.perf_counter() - started) * 1000
        self.stats.record(result.timings())
        return result

    # -- alternatives: other suggestions at the same cursor ---------------------------------

    @_idle_work
    def alternatives(self, key: str, cursor: Cursor, shown: str, token: CancelToken) -> None:
        """Computes, in the model's idle time, up to `alternatives` further suggestions at
        `cursor`, where `shown` is on screen, and keeps them where `alternatives_for` finds
        them (the client asks again when the user cycles).

        From the document's own KV session: the prompt is the one just answered, so one
        forward of its last token gives the first token's distribution (within token
        healing's constraint); each branch starts with another of its likeliest tokens, written
        after the prompt's keys and values (cropped back, never prefilled again), and goes on
        greedily under the same policy as the first answer. Branches equal to the first answer
        or to each other once cleaned are dropped; the rest are ranked by mean log-probability.
        What the session held before is put back at the end, so the next keystroke reuses
        exactly what it would have. Any real request stops it between tokens; what it had is
        then dropped."""
        if not shown or not self.offers_alternatives or not isinstance(self.engine, LocalEngine)\
                or self.branches.has(key, cursor, self.answer_settings):
            return
        engine, started = self.engine, time.perf_counter()
        prompt = self.prompt_for(cursor, key)
        # Branches rewrite the session after the prompt only: that is what is kept.
        kept = engine.keep(key, common_prefix(engine.session_ids(key), prompt.ids))
        try:
            found = self._branches(key, cursor, prompt, shown, token,
                                   self.settings.alternatives)
        finally:
            if not token():  # as the answers (and prefetch) left it
                engine.put_back(key, kept, token)
        spent = (time.perf_counter() - started) * 1000
        if found is None or token():
            self.stats.add(alternatives_interrupted=1, alternatives_ms=spent)
            return
        self.stats.add(alternatives=len(found), alternative_runs=1, alternatives_ms=spent)
        self.branches.put(key, cursor, [(text, self.next_id()) for text in found],
                          self.answer_settings)

    def _branches(self, key: str, cursor: Cursor, prompt: Prompt, shown: str,
                  token: CancelToken, wanted: int) -> list[str] | None:
        """The distinct cleaned branches, likeliest (mean log-probability) first; None when
        stopped."""
        assert isinstance(self.engine, LocalEngine) and self.tokenizer is not None
        mode = postprocess.mode_for(cursor, self.settings.multiline, key)
        heal = prompt.heal
        constraint = healing.Constraint(self.tokenizer, heal) if heal is not None else None
        logprobs = self.engine.next_logprobs(key, prompt.ids, token, constraint)
        if logprobs is None:
            return None
        tries = 3 * wanted  # branches that clean to the same text cost a try each
        top = torch.topk(logprobs, min(tries + 1, logprobs.numel()))
        candidates = [(int(i), float(v)) for v, i in zip(top.values.tolist(),
                                                         top.indices.tolist(), strict=True)
                      if v > float("-inf")]
        if self.settings.temperature <= 0:
            candidates = candidates[1:]  # the argmax: the first answer's own first token
        raw = self.settings.policy == "raw"
        stop_ids = self._stop_ids()
        seen, ranked = {shown}, []
        for first, first_score in candidates[:tries]:
            if len(ranked) >= wanted:
                break
            if token():
                return None
            if first in stop_ids:
                continue
            ids, scores = [first], [first_score]
            if self.settings.max_new_tokens > 1 and (raw or not postprocess.wants_stop(
                    healing.suggestion(self.tokenizer, ids, heal), mode, cursor, key)):
                generation = self._generate(key, cursor, prompt.ids, mode, token, [first],
                                            heal, scores)
                if generation.interrupted or generation.stop_reason == "time":
                    return None
                ids.extend(generation.ids)
                self.stats.add(generated=len(generation.ids),
                               forwards=generation.decode_forwards + bool(generation.ids))
            text = healing.suggestion(self.tokenizer, ids, heal)
            text = raw_text(text) if raw else postprocess.clean(text, cursor, mode, key)
            if not text.strip() or text in seen:
                continue
            seen.add(text)
            ranked.append((sum(scores) / len(scores), text))
        ranked.sort(key=lambda pair: -pair[0])  # stable: equal scores keep the try order
        return [text for _, text in ranked]

    def alternatives_for(self, key: str, cursor: Cursor, first: str) -> list[Completion]:
        """The alternatives ready at `cursor`, other than `first` (the answer the client gets
        first); on the event loop."""
        found = [Completion(text, request_id, "alternative", stop_reason="alternative")
                 for text, request_id in self.branches.lookup(key, cursor, self.answer_settings)
                 if text != first]
        self.stats.add(alternatives_shown=len(found))
        return found

    @_idle_work
    def warm(self, key: str, cursor: Cursor, token: CancelToken) -> Completion:
        """Prefills the prompt at `cursor` into the document's cache and answers nothing: the
        first keystroke there then costs one token, not the whole window. For the model's idle
        time (a document opened or focused); any real request stops it between chunks."""
        assert self.engine is not None
        started = time.perf_counter()
        prompt = self.prompt_for(cursor, key)
        generation = self.engine.prefill(key, prompt.ids, token)
        result = Completion("", self.next_id(), "warm", len(prompt.ids),
                            generation.reused_tokens, generation.prefill_ms,
                            stop_reason=generation.stop_reason)
        result.total_ms = (time.perf_counter() - started) * 1000
        self.stats.add(warmed=int(not generation.interrupted),
                       warm_interrupted=int(generation.interrupted))
        return result

    @_idle_work
    def finish(self, key: str, cut: Unfinished, token: CancelToken) -> str | None:
        """The whole answer that a cut one is the first lines of (the time budget cut it): the
        generation goes on from where it stopped, on the same KV session, in the model's idle
        time. The full text, cleaned, relative to `cut.cursor`; None when stopped."""
        ids, generated, mode, heal, cursor = (cut.ids, cut.generated, cut.mode, cut.heal,
                                              cut.cursor)
        generation = self._generate(key, cursor, ids, mode, token, generated, heal)
        if generation.interrupted or generation.stop_reason == "time":
            return None
        return postprocess.clean(healing.suggestion(self.tokenizer, [*generated,
                                                                     *generation.ids], heal),
                                 cursor, mode, key)

    def _generate(self, key: str, cursor: Cursor, prompt: list[int], mode: str,
                  token: CancelToken, already: list[int] | None = None,
                  heal: healing.Heal | None = None, scores: list[float] | None = None,
                  progress: Progress | None = None, session: str | None = None,
                  lines_by: float | None = None) -> Generation:
        """`already`: tokens generated before (a cut answer going on, a branch's first token):
        they follow the prompt, and the policy and the length limit count them. `heal`: what
        token healing backed off the prompt (`prompt.Prompt.heal`): the first tokens must write
        it again. `scores`: receives each new token's log-probability (in-process engine).
        `progress`: where the text so far is kept for a later keystroke (inflight.py).
        `session`: the engine session to use, when not the document's own (a quick start's).
        `lines_by`: a `time.perf_counter()` after which a block stops once it has a finished
        line (as the time budget stops it: the caller shows the finished lines)."""
        assert self.engine is not None and self.tokenizer is not None and self.spec is not None
        stop_ids = self._stop_ids()
        already = already or []
        generated: list[int] = list(already)

        raw = self.settings.policy == "raw"

        def on_token(token_id: int) -> bool:
            generated.append(token_id)
            if raw and progress is None and lines_by is None:  # no policy: only the stop ids
                return False
            text = healing.suggestion(self.tokenizer, generated, heal)
            if progress is not None and not progress.wrote(text):
                token.cancel("superseded")  # the user typed something else: nobody wants it
            if lines_by is not None and mode == "block" and time.perf_counter() > lines_by:
                done = finished_lines(text)
                if done != text and done.strip():
                    token.cancel("time")  # a line is finished: show what is finished now
            return not raw and postprocess.wants_stop(text, mode, cursor, key)

        constraint = None
        if heal is not None:
            constraint = healing.Constraint(self.tokenizer, heal)
            for token_id in already:  # a cut answer going on: what it already wrote counts
                constraint.feed(token_id)
        s = self.settings
        local: dict[str, Any] = {}  # what only the in-process engine takes
        if constraint is not None and constraint.active:
            local["constraint"] = constraint  # `heals`: only the local engine heals
        if scores is not None:
            local["scores"] = scores
        key_for_engine = session or key
        if not local:
            return self.engine.generate(key_for_engine, [*prompt, *already],
                                        max_new_tokens=max(1, s.max_new_tokens - len(already)),
                                        stop_ids=stop_ids, should_stop=token,
                                        temperature=s.temperature, top_p=s.top_p,
                                        on_token=on_token)
        assert isinstance(self.engine, LocalEngine)
        return self.engine.generate(key_for_engine, [*prompt, *already],
                                    max_new_tokens=max(1, s.max_new_tokens - len(already)),
                                    stop_ids=stop_ids, should_stop=token,
                                    temperature=s.temperature, top_p=s.top_p,
                                    on_token=on_token, **local)

    def _stop_ids(self) -> set[int]:
        assert self.tokenizer is not None and self.spec is not None
        return {i for t in self.spec.template.stop
                if (i := self.tokenizer.token_to_id(t)) is not None}

    def _decode(self, ids: list[int]) -> str:
        assert self.tokenizer is not None
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _count(self, cache: bool, request: bool = True) -> None:
        self.stats.add(requests=int(request), answered_from_cache=int(cache))

    # -- answers without the model (fimlsp/cache.py) -----------------------------------------

    def typed_through(self, key: str, cursor: Cursor) -> Completion | None:
        """The rest of the suggestion on screen when the user has typed into it; no model call,
        nothing queued: call it on the event loop, before the scheduler."""
        if not self.settings.typing_through:
            return None
        started = time.perf_counter()
        text = self.typing.lookup(key, cursor, self.answer_settings)
        if text is None:
            return None
        self._count(cache=True)
        result = Completion(text, self.next_id(), "cache", stop_reason="typed")
        result.total_ms = (time.perf_counter() - started) * 1000
        self.stats.record(result.timings())
        self.typing.remember(key, cursor, text, result.request_id, self.answer_settings)
        return result

    def shown(self, key: str, cursor: Cursor, result: Completion | None) -> None:
        """What the client was answered at `cursor` (nothing, when `result` is None)."""
        text, request_id = (result.text, result.request_id) if result else ("", 0)
        self.typing.remember(key, cursor, text, request_id, self.answer_settings)

    @property
    def answer_settings(self) -> tuple[Any, ...]:
        """The settings that make an answer what it is (not how long it may take)."""
        s = self.settings
        return (s.max_new_tokens, s.temperature, s.top_p, s.multiline, s.policy,
                s.token_healing)

    # -- what the user did with it ----------------------------------------------------------

    def accepted(self, text: str, partial: bool) -> None:
        self.stats.add(partially_accepted=int(partial), accepted=int(not partial),
                       accepted_chars=len(text))

    def stats_report(self) -> dict[str, Any]:
        s = self.stats.snapshot()
        return {**{k: s.last.get(k) for k in ("prompt_tokens", "reused_tokens", "prefill_ms",
                                               "decode_ms", "generated_tokens", "source",
                                               "total_ms")},
                "requests": s.requests, "cancelled": s.cancelled,
                "answered_from_cache": s.answered_from_cache,
                "cache_share": round(s.cache_share, 3), "errors": s.errors,
                "accepted": s.accepted, "partially_accepted": s.partially_accepted,
                "accepted_chars": s.accepted_chars,
                "warmed": s.warmed, "warm_interrupted": s.warm_interrupted,
                "healed": s.healed, "token_healing": self.healing_status,
                "alternatives": s.alternatives, "alternative_runs": s.alternative_runs,
                "alternatives_interrupted": s.alternatives_interrupted,
                "alternatives_ms": round(s.alternatives_ms, 1),
                "alternatives_shown": s.alternatives_shown,
                "alternatives_status": self.alternatives_status,
                "prefetched": s.prefetched, "prefetch_used": s.prefetch_used,
                "prefetch_interrupted": s.prefetch_interrupted,
                "prefetch_ms": round(s.prefetch_ms, 1),
                "prefetch_wasted_ms": round(s.prefetch_ms - s.prefetch_used_ms, 1),
                "finished": s.finished, "orphaned": s.orphaned, "taken_over": s.taken_over,
                "generated": s.generated, "forwards": s.forwards, "drafted": s.drafted,
                "drafts_accepted": s.drafts_accepted,
                "tokens_per_forward": round(s.generated / s.forwards, 3) if s.forwards else None,
                "model": self.spec.name if self.spec else self.settings.model,
                "ready": self.ready, "window": self.window, "version": __version__,
                "choices": {name: {"value": choices.show(c.value), "why": c.why}
                            for name, c in self.choices().items()},
                "document_state": self.document_state(),
                **(self.engine.describe() if self.engine is not None else
                   {"device": None, "dtype": None, "quantization": None})}


def finished_lines(text: str) -> str:
    """`text` up to its last line break: the lines that are complete (all of it when the first
    line is still being written)."""
    end = text.rstrip(" \t").rfind("\n")
    return text[:end] if end > 0 and text[:end].strip() else text


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


def _bound(items: OrderedDict[str, Any], size: int = _RECENT) -> None:
    """Keeps the `size` most recently used documents' entries (most recent last)."""
    while len(items) > size:
        items.popitem(last=False)
