"""Generating an answer with the model: the answer to a request (`complete`), and the model
work nobody waits for: the rest of an answer the time budget cut (`finish`), the prompt read
ahead of the first keystroke (`warm`), and the suggestion after an accept (`prefetch`, taken by
`answer_ahead`). Everything here runs on the scheduler's worker thread except `answer_ahead`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fimlsp import healing, postprocess
from fimlsp.cache import Prefetched, RecentCompletions
from fimlsp.completion import Completion, LoadedModel, Stats, Unfinished
from fimlsp.context import Cursor
from fimlsp.engine import Generation
from fimlsp.engine.local import LocalEngine
from fimlsp.inflight import Progress
from fimlsp.prompting import QUICK_SUFFIX, Prompter, cursor_after
from fimlsp.scheduler import CancelToken
from fimlsp.surroundings import mode_for

RECENT = 64  # completions kept by prompt identity (undo, moving back and forth)

T = TypeVar("T")


def idle_work(method: Callable[..., T]) -> Callable[..., T]:
    """A method of a pipeline part (one with `model`) whose model work nobody waits for
    (computing ahead, alternatives, a warm start, finishing a cut answer): the engine may try
    another thread count in it (engine/threads.py), which a request the user waits for never
    pays."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        engine = self.model.engine
        if isinstance(engine, LocalEngine):
            with engine.idle_work():
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper


class Generator:
    """Turns prompts into cleaned answers with the `Completer`'s engine, and keeps the answers
    it may give again without the model: recent ones by prompt identity, and those computed
    ahead for after an accept."""

    def __init__(self, model: LoadedModel, prompter: Prompter, stats: Stats,
                 ahead: Prefetched, lock: threading.RLock) -> None:
        self.model = model
        self.prompter = prompter
        self.stats = stats
        self.ahead = ahead  # suggestions for after an accept, computed in idle time
        self.recent = RecentCompletions(RECENT)  # by prompt identity, on the model's thread
        self._lock = lock  # the completer's: several worker threads with a serving engine

    def complete(self, key: str, cursor: Cursor, token: CancelToken | None = None,
                 request_id: int | None = None, count: bool = True,
                 progress: Progress | None = None, quick: bool = False,
                 lines_by_ms: float | None = None) -> Completion:
        """The cleaned suggestion for `cursor`; blocking, on the worker thread. `count`: a
        request of the user's (not one computed ahead), for the stats. `progress`: where the
        text so far is kept for a later keystroke to take the generation over (inflight.py).
        `quick`: an automatic request, which may be answered from a short prompt when the whole
        one would take long to read (`prompting.QUICK_PREFILL_MS`). `lines_by_ms`: the user is
        typing; a block that has finished a line by then is answered with its finished lines
        (pace.py)."""
        model, settings = self.model, self.model.settings
        started = time.perf_counter()
        request_id = request_id if request_id is not None else model.next_id()
        self.count(cache=False, request=count)
        prompt = self.prompter.prompt_for(cursor, key)
        session = key
        short = self.prompter.quick_prompt(key, cursor, prompt) if quick else None
        if short is not None:
            prompt, session = short, key + QUICK_SUFFIX
        mode = mode_for(cursor, settings.multiline, key)
        # Settings and a healed prompt's removed text are part of the answer: `self.re|` and
        # `self.req|` back off to the same ids.
        key_parts = (prompt.ids, prompt.heal.text if prompt.heal else None, mode,
                     *model.answer_settings)
        identity = hashlib.blake2b(repr(key_parts).encode(), digest_size=16).hexdigest()
        with self._lock:
            recent = self.recent.get(identity)
        if recent is not None:
            self.count(cache=count, request=False)
            result = Completion(recent, request_id, "cache",
                                prompt_tokens=len(prompt.ids), stop_reason="cache")
        else:
            generation = self.generate(key, cursor, prompt.ids, mode,
                                       token or CancelToken(), heal=prompt.heal,
                                       progress=progress, session=session,
                                       lines_by=None if lines_by_ms is None else
                                       started + lines_by_ms / 1000)
            self.stats.add(healed=int(prompt.heal is not None))
            text = healing.suggestion(model.tokenizer, generation.ids, prompt.heal)
            cut = generation.stop_reason == "time" and mode == "block" and \
                settings.policy != "raw"
            if cut:  # the line being written could still be cut once it ends: not shown
                text = finished_lines(text)
            text = raw_text(text) if settings.policy == "raw" else postprocess.clean(
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
                with self._lock:
                    self.recent.put(identity, text, key)
        result.total_ms = (time.perf_counter() - started) * 1000
        if count:
            self.stats.record(result.timings())
        return result

    @idle_work
    def warm(self, key: str, cursor: Cursor, token: CancelToken) -> Completion:
        """Prefills the prompt at `cursor` into the document's cache and answers nothing: the
        first keystroke there then costs one token, not the whole window. For the model's idle
        time (a document opened or focused); any real request stops it between chunks."""
        engine = self.model.engine
        assert engine is not None
        started = time.perf_counter()
        prompt = self.prompter.prompt_for(cursor, key)
        generation = engine.prefill(key, prompt.ids, token)
        result = Completion("", self.model.next_id(), "warm", len(prompt.ids),
                            generation.reused_tokens, generation.prefill_ms,
                            stop_reason=generation.stop_reason)
        result.total_ms = (time.perf_counter() - started) * 1000
        self.stats.add(warmed=int(not generation.interrupted),
                       warm_interrupted=int(generation.interrupted))
        return result

    @idle_work
    def finish(self, key: str, cut: Unfinished, token: CancelToken) -> str | None:
        """The whole answer that a cut one is the first lines of (the time budget cut it): the
        generation goes on from where it stopped, on the same KV session, in the model's idle
        time. The full text, cleaned, relative to `cut.cursor`; None when stopped."""
        ids, generated, mode, heal, cursor = (cut.ids, cut.generated, cut.mode, cut.heal,
                                              cut.cursor)
        generation = self.generate(key, cursor, ids, mode, token, generated, heal)
        if generation.interrupted or generation.stop_reason == "time":
            return None
        return postprocess.clean(healing.suggestion(self.model.tokenizer,
                                                    [*generated, *generation.ids], heal),
                                 cursor, mode, key)

    # -- computing ahead: the suggestion after an accept ------------------------------------

    @idle_work
    def prefetch(self, key: str, cursor: Cursor, shown: str, token: CancelToken) -> None:
        """Computes, in the model's idle time, the suggestion that will be asked for once the
        user accepts `shown` at `cursor`, and keeps it where `answer_ahead` finds it: after an
        accept the next suggestion is there at once (llama.vim's `fim_try_hint`). The same KV
        session: its prompt is this one plus the accepted text, so only those tokens are new.
        Any real request stops it between tokens; what it had is then dropped."""
        if self.model.engine is None or not shown:
            return
        after = cursor_after(cursor, shown)
        started = time.perf_counter()
        result = self.complete(key, after, token, count=False)
        spent = (time.perf_counter() - started) * 1000
        if result.stop_reason in ("cancelled", "superseded", "time"):
            self.stats.add(prefetch_interrupted=1, prefetch_ms=spent)
            return
        self.stats.add(prefetched=1, prefetch_ms=spent)
        self.ahead.put(key, after, result.text, self.model.answer_settings, spent)

    def answer_ahead(self, key: str, cursor: Cursor) -> Completion | None:
        """The suggestion computed ahead for exactly this cursor; on the event loop, before
        anything is queued (as `Completer.typed_through`)."""
        started = time.perf_counter()
        ahead = self.ahead.take(key, cursor, self.model.answer_settings)
        if ahead is None:
            return None
        self.count(cache=True)
        self.stats.add(prefetch_used=1, prefetch_used_ms=ahead.spent_ms)
        result = Completion(ahead.text, self.model.next_id(), "prefetch",
                            stop_reason="prefetched")
        result.total_ms = (time.perf_counter() - started) * 1000
        self.stats.record(result.timings())
        return result

    # -- the generation itself --------------------------------------------------------------

    def generate(self, key: str, cursor: Cursor, prompt: list[int], mode: str,
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
        model = self.model
        engine, tokenizer = model.engine, model.tokenizer
        assert engine is not None and tokenizer is not None and model.spec is not None
        stop_ids = self.stop_ids()
        already = already or []
        generated: list[int] = list(already)

        raw = model.settings.policy == "raw"

        def on_token(token_id: int) -> bool:
            generated.append(token_id)
            if raw and progress is None and lines_by is None:  # no policy: only the stop ids
                return False
            text = healing.suggestion(tokenizer, generated, heal)
            if progress is not None and not progress.wrote(text):
                token.cancel("superseded")  # the user typed something else: nobody wants it
            if lines_by is not None and mode == "block" and time.perf_counter() > lines_by:
                done = finished_lines(text)
                if done != text and done.strip():
                    token.cancel("time")  # a line is finished: show what is finished now
            return not raw and postprocess.wants_stop(text, mode, cursor, key)

        constraint = None
        if heal is not None:
            constraint = healing.Constraint(tokenizer, heal)
            for token_id in already:  # a cut answer going on: what it already wrote counts
                constraint.feed(token_id)
        s = model.settings
        local: dict[str, Any] = {}  # what only the in-process engine takes
        if constraint is not None and constraint.active:
            local["constraint"] = constraint  # `heals`: only the local engine heals
        if scores is not None:
            local["scores"] = scores
        key_for_engine = session or key
        if not local:
            return engine.generate(key_for_engine, [*prompt, *already],
                                   max_new_tokens=max(1, s.max_new_tokens - len(already)),
                                   stop_ids=stop_ids, should_stop=token,
                                   temperature=s.temperature, top_p=s.top_p,
                                   on_token=on_token)
        assert isinstance(engine, LocalEngine)
        return engine.generate(key_for_engine, [*prompt, *already],
                               max_new_tokens=max(1, s.max_new_tokens - len(already)),
                               stop_ids=stop_ids, should_stop=token,
                               temperature=s.temperature, top_p=s.top_p,
                               on_token=on_token, **local)

    def stop_ids(self) -> set[int]:
        """The template's stop tokens that the tokenizer has."""
        model = self.model
        assert model.tokenizer is not None and model.spec is not None
        return {i for t in model.spec.template.stop
                if (i := model.tokenizer.token_to_id(t)) is not None}

    def decode(self, ids: list[int]) -> str:
        assert self.model.tokenizer is not None
        return self.model.tokenizer.decode(ids, skip_special_tokens=True)

    def count(self, cache: bool, request: bool = True) -> None:
        self.stats.add(requests=int(request), answered_from_cache=int(cache))


def raw_text(text: str) -> str:
    """The model's text as it came (`policy: raw`), the baseline the policy is measured against:
    only spelled-out special tokens go, since no editor should insert those."""
    text = postprocess.strip_special(text)
    return text if text.strip() else ""


def finished_lines(text: str) -> str:
    """`text` up to its last line break: the lines that are complete (all of it when the first
    line is still being written)."""
    end = text.rstrip(" \t").rfind("\n")
    return text[:end] if end > 0 and text[:end].strip() else text
