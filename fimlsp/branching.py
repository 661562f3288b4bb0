"""Alternatives: other suggestions at the cursor of the one on screen, for the editor's cycle
key, computed in the model's idle time as branches of the first answer's prompt and handed out
when the client asks again (`alternatives_for`, on the event loop).
"""

from __future__ import annotations

import time

import torch

from fimlsp import healing, postprocess
from fimlsp.cache import Alternatives
from fimlsp.completion import Completion, LoadedModel, Stats
from fimlsp.context import Cursor
from fimlsp.engine.decoding import common_prefix
from fimlsp.engine.local import LocalEngine
from fimlsp.generating import Generator, idle_work, raw_text
from fimlsp.prompt import Prompt
from fimlsp.scheduler import CancelToken
from fimlsp.surroundings import mode_for


class Brancher:
    """Computes the alternatives of one `Completer`'s model and keeps them in `store`."""

    def __init__(self, model: LoadedModel, generator: Generator, stats: Stats,
                 store: Alternatives) -> None:
        self.model = model
        self.generator = generator
        self.stats = stats
        self.store = store  # further suggestions at the cursor, computed in idle time

    @property
    def offered(self) -> bool:
        """Alternatives are computed: the setting, and the in-process engine (which branches
        its own KV session)."""
        settings = self.model.settings
        return settings.alternatives > 0 and settings.engine == "local"

    @property
    def status(self) -> str:
        """Alternatives as `fimlsp.stats` reports them, with why when they are off."""
        settings = self.model.settings
        if settings.alternatives <= 0:
            return "off (alternatives setting)"
        if settings.engine != "local":
            return (f"off (the {settings.engine} engine would branch only by sampling or "
                    "beam search in more requests, not from the first answer's prompt: not "
                    "built)")
        return f"on ({settings.alternatives})"

    @idle_work
    def compute(self, key: str, cursor: Cursor, shown: str, token: CancelToken
                ) -> list[str] | None:
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
        then dropped.

        The alternatives found now (for the server's log: a client that cycles can tell they
        are ready); None when none were computed now (off, already there, or stopped)."""
        model = self.model
        if not shown or not self.offered or not isinstance(model.engine, LocalEngine) \
                or self.store.has(key, cursor, model.answer_settings):
            return None
        engine, started = model.engine, time.perf_counter()
        prompt = self.generator.prompter.prompt_for(cursor, key)
        # Branches rewrite the session after the prompt only: that is what is kept.
        kept = engine.keep(key, common_prefix(engine.session_ids(key), prompt.ids))
        try:
            found = self._branches(key, cursor, prompt, shown, token,
                                   model.settings.alternatives)
        finally:
            if not token():  # as the answers (and prefetch) left it
                engine.put_back(key, kept, token)
        spent = (time.perf_counter() - started) * 1000
        if found is None or token():
            self.stats.add(alternatives_interrupted=1, alternatives_ms=spent)
            return None
        self.stats.add(alternatives=len(found), alternative_runs=1, alternatives_ms=spent)
        self.store.put(key, cursor, [(text, model.next_id()) for text in found],
                       model.answer_settings)
        return found

    def _branches(self, key: str, cursor: Cursor, prompt: Prompt, shown: str,
                  token: CancelToken, wanted: int) -> list[str] | None:
        """The distinct cleaned branches, likeliest (mean log-probability) first; None when
        stopped."""
        model, settings = self.model, self.model.settings
        engine, tokenizer = model.engine, model.tokenizer
        assert isinstance(engine, LocalEngine) and tokenizer is not None
        mode = mode_for(cursor, settings.multiline, key)
        heal = prompt.heal
        constraint = healing.Constraint(tokenizer, heal) if heal is not None else None
        logprobs = engine.next_logprobs(key, prompt.ids, token, constraint)
        if logprobs is None:
            return None
        tries = 3 * wanted  # branches that clean to the same text cost a try each
        top = torch.topk(logprobs, min(tries + 1, logprobs.numel()))
        candidates = [(int(i), float(v)) for v, i in zip(top.values.tolist(),
                                                         top.indices.tolist(), strict=True)
                      if v > float("-inf")]
        if settings.temperature <= 0:
            candidates = candidates[1:]  # the argmax: the first answer's own first token
        raw = settings.policy == "raw"
        stop_ids = self.generator.stop_ids()
        seen, ranked = {shown}, []
        for first, first_score in candidates[:tries]:
            if len(ranked) >= wanted:
                break
            if token():
                return None
            if first in stop_ids:
                continue
            ids, scores = [first], [first_score]
            if settings.max_new_tokens > 1 and (raw or not postprocess.wants_stop(
                    healing.suggestion(tokenizer, ids, heal), mode, cursor, key)):
                generation = self.generator.generate(key, cursor, prompt.ids, mode, token,
                                                     [first], heal, scores)
                if generation.interrupted or generation.stop_reason == "time":
                    return None
                ids.extend(generation.ids)
                self.stats.add(generated=len(generation.ids),
                               forwards=generation.decode_forwards + bool(generation.ids))
            text = healing.suggestion(tokenizer, ids, heal)
            text = raw_text(text) if raw else postprocess.clean(text, cursor, mode, key)
            if not text.strip() or text in seen:
                continue
            seen.add(text)
            ranked.append((sum(scores) / len(scores), text))
        ranked.sort(key=lambda pair: -pair[0])  # stable: equal scores keep the try order
        return [text for _, text in ranked]

    def ready(self, key: str, cursor: Cursor, first: str) -> list[Completion]:
        """The alternatives ready at `cursor`, other than `first` (the answer the client gets
        first); on the event loop."""
        found = [Completion(text, request_id, "alternative", stop_reason="alternative")
                 for text, request_id in self.store.lookup(key, cursor,
                                                           self.model.answer_settings)
                 if text != first]
        self.stats.add(alternatives_shown=len(found))
        return found
