"""The path of one completion: cursor → prompt → engine → clean text, with its timings.

Shared by the LSP server and the `fimlsp complete` command so that both give the same answer for
the same document and position. `Completer` is the one object they talk to: it loads the model
and holds the parts that do the work, each reading the model through it (`LoadedModel`):
prompting.py (the prompt a request is served with), generating.py (answers, and the model work
nobody waits for), branching.py (alternatives at the same cursor). Everything runs on the
scheduler's worker thread, except `prompt_for` without a document (only the tokenizer) and the
answers without the model (`typed_through`, `answer_ahead`, `alternatives_for`, on the event
loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from tokenizers import Tokenizer

from fimlsp import __version__, healing, heap
from fimlsp.branching import Brancher
from fimlsp.cache import Alternatives, Prefetched, TypingThrough
from fimlsp.completion import Completion, Stats, Unfinished
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.documents import Text
from fimlsp.engine import choices
from fimlsp.engine.local import LocalEngine
from fimlsp.engine.remote import RemoteEngine
from fimlsp.generating import Generator
from fimlsp.inflight import Progress
from fimlsp.models import (
    ModelSpec,
    effective_window,
    load_tokenizer,
    read_config,
    resolve_model,
)
from fimlsp.prompt import Prompt
from fimlsp.prompting import QUICK_SUFFIX, Prompter
from fimlsp.repo.index import RepoIndex
from fimlsp.scheduler import CancelToken


def resolved(settings: Settings) -> tuple[Settings, choices.Choice]:
    """`settings` with `max_new_tokens` decided where the user left it unset
    (`choices.answer_tokens`), so that everything downstream reads a number; and the choice, for
    `fimlsp.stats`."""
    choice = choices.answer_tokens(settings.max_new_tokens, settings.engine, settings.device)
    return settings.replace(max_new_tokens=choice.value), choice


class Completer:
    """Owns the tokenizer, the engine and the recent answers for one model."""

    def __init__(self, settings: Settings) -> None:
        self.answer_tokens: choices.Choice
        self.settings = settings
        self.spec: ModelSpec | None = None
        self.tokenizer: Tokenizer | None = None
        self.window = 0
        self.window_reason = ""
        self._config: dict[str, Any] | None = None  # the model's config.json, once known
        self.engine: LocalEngine | RemoteEngine | None = None
        self.stats = Stats()
        self.typing = TypingThrough()  # the suggestion on screen per document, on the event loop
        self.ahead = Prefetched()  # suggestions for after an accept, computed in idle time
        self.branches = Alternatives()  # further suggestions at the cursor, computed in idle time
        # Per-document state is used by the model's thread (completions) and the event loop
        # (`fimlsp.prompt`, closing a document): one lock for all the parts' stores.
        self._documents_lock = threading.RLock()
        self.prompter = Prompter(self, self._documents_lock)
        self.generator = Generator(self, self.prompter, self.stats, self.ahead,
                                   self._documents_lock)
        self.brancher = Brancher(self, self.generator, self.stats, self.branches)
        self._ids = 0
        self._lock = threading.Lock()

    @property
    def documents(self) -> Callable[[], Mapping[str, str]]:
        """The open documents (uri → text), for neighbour snippets; the server provides them."""
        return self.prompter.documents

    @documents.setter
    def documents(self, documents: Callable[[], Mapping[str, str]]) -> None:
        self.prompter.documents = documents

    @property
    def repo_index(self) -> Callable[[], RepoIndex | None]:
        """The workspace index (fimlsp/repo), when there is one; the server provides it."""
        return self.prompter.repo_index

    @repo_index.setter
    def repo_index(self, repo_index: Callable[[], RepoIndex | None]) -> None:
        self.prompter.repo_index = repo_index

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
        heap.settle()  # what was loaded stays: full collections walk only what comes after

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
        made["max_new_tokens"] = self.answer_tokens
        if self.window:
            made["window"] = choices.Choice(self.window, self.window_reason)
        return made

    @property
    def settings(self) -> Settings:
        """The settings with every `auto` that needs no model decided (`resolved`)."""
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings, self.answer_tokens = resolved(settings)

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids
    @property
    def heals(self) -> bool:
        """Token healing is on: the setting, and an engine that can constrain its first tokens
        (the in-process one; serving engines take no per-step constraint here)."""
        return self.settings.token_healing and self.settings.engine == "local"

    @property
    def healing_status(self) -> str:
        """Token healing as `fimlsp.stats` reports it, with why when it is off."""
        if not self.settings.token_healing:
            return "off (tokenHealing setting)"
        if self.settings.engine != "local":
            return f"off (the {self.settings.engine} engine cannot constrain the first tokens)"
        return "on"

    @property
    def order(self) -> str:
        """The FIM order prompts use: the `order` setting, else the model's (preset/template).
        An order the template was not trained with is refused by `build_prompt`."""
        assert self.spec is not None
        return self.spec.order if self.settings.order == "auto" else self.settings.order

    # -- the prompt (prompting.py) ----------------------------------------------------------

    def cursor_for(self, text: str | Text, line: int, character: int,
                   encoding: str = "utf-16",
                   selected: tuple[int, int, int, int, str] | None = None) -> Cursor:
        """The cursor at an LSP position (`Prompter.cursor_for`)."""
        return self.prompter.cursor_for(text, line, character, encoding, selected)

    def prompt_for(self, cursor: Cursor, key: str | None = None) -> Prompt:
        """The prompt at `cursor`; with a document `key`, the one a completion there sends."""
        return self.prompter.prompt_for(cursor, key)

    def prompt_report(self, key: str, cursor: Cursor) -> tuple[Prompt, list[dict[str, Any]]]:
        """`fimlsp.prompt` (`Prompter.prompt_report`)."""
        return self.prompter.prompt_report(key, cursor)

    def editor_context(self, key: str, definitions: Any) -> int:
        """`fimlsp.context` (`Prompter.editor_context`)."""
        return self.prompter.editor_context(key, definitions)

    # -- answers from the model (generating.py, branching.py) -------------------------------

    def complete(self, key: str, cursor: Cursor, token: CancelToken | None = None,
                 request_id: int | None = None, count: bool = True,
                 progress: Progress | None = None, quick: bool = False,
                 lines_by_ms: float | None = None) -> Completion:
        """The cleaned suggestion for `cursor`; blocking, on the worker thread
        (`Generator.complete` says what the arguments do)."""
        return self.generator.complete(key, cursor, token, request_id, count, progress, quick,
                                       lines_by_ms)

    def finish(self, key: str, cut: Unfinished, token: CancelToken) -> str | None:
        """The whole of an answer the time budget cut, in idle time (`Generator.finish`)."""
        return self.generator.finish(key, cut, token)

    def warm(self, key: str, cursor: Cursor, token: CancelToken) -> Completion:
        """Prefills the prompt at `cursor`, in idle time (`Generator.warm`)."""
        return self.generator.warm(key, cursor, token)

    def prefetch(self, key: str, cursor: Cursor, shown: str, token: CancelToken) -> None:
        """The suggestion after accepting `shown`, in idle time (`Generator.prefetch`)."""
        self.generator.prefetch(key, cursor, shown, token)

    def answer_ahead(self, key: str, cursor: Cursor) -> Completion | None:
        """The suggestion computed ahead for exactly this cursor; on the event loop."""
        return self.generator.answer_ahead(key, cursor)

    def alternatives(self, key: str, cursor: Cursor, shown: str, token: CancelToken
                     ) -> list[str] | None:
        """Further suggestions at `cursor`, in idle time (`Brancher.compute`)."""
        return self.brancher.compute(key, cursor, shown, token)

    def alternatives_for(self, key: str, cursor: Cursor, first: str) -> list[Completion]:
        """The alternatives ready at `cursor`, other than `first`; on the event loop."""
        return self.brancher.ready(key, cursor, first)

    @property
    def offers_alternatives(self) -> bool:
        return self.brancher.offered

    @property
    def alternatives_status(self) -> str:
        return self.brancher.status

    # -- per-document state -----------------------------------------------------------------

    def forget(self, key: str, *session_suffixes: str) -> None:
        """Drops everything kept for document `key`, which was closed: window edges, neighbour
        snippets and windows, recent answers, the suggestion on screen, the engine's cache
        (and its other sessions, `key` + each suffix: next edits'). On the model's thread (the
        engine's cache is its); `typing` is the event loop's."""
        with self._documents_lock:
            for name in {key, unquote(key)}:
                self.prompter.forget(name)
                self.generator.recent.forget(name)
                self.ahead.forget(name)
                self.branches.forget(name)
                if self.engine is not None:
                    self.engine.drop_session(name)
                    for suffix in (*session_suffixes, QUICK_SUFFIX):
                        self.engine.drop_session(name + suffix)

    def document_state(self) -> dict[str, int]:
        """How many documents each per-document store holds: all bounded, closed ones gone."""
        with self._documents_lock:
            prompts = self.prompter.document_state()
            return {"edges": prompts["edges"], "neighbours": prompts["neighbours"],
                    "windows": prompts["windows"], "recent": len(self.generator.recent),
                    "repo": prompts["repo"],
                    "typing": len(self.typing), "alternatives": len(self.branches),
                    "sessions": self.engine.session_count if self.engine is not None else 0}

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
        self.generator.count(cache=True)
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
