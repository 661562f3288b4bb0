"""What the completion pipeline's parts share: the records one request produces (`Completion`,
and `Unfinished` for an answer the time budget cut), the counters all requests add to (`Stats`),
and `LoadedModel`, the view of the loaded model that each part (prompting.py, generating.py,
branching.py) reads from the `Completer` that owns them.

Kept apart from those parts so that the server, the benchmarks and the tests can name the
records without reaching into the pipeline.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from tokenizers import Tokenizer

from fimlsp import healing
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.engine.local import LocalEngine
from fimlsp.engine.remote import RemoteEngine
from fimlsp.models import ModelSpec


class LoadedModel(Protocol):
    """What the pipeline's parts read of the model the `Completer` has loaded. They read it on
    every call, never keep a copy: settings change without a reload, and the tokenizer and the
    engine arrive after the parts are made."""

    settings: Settings
    spec: ModelSpec | None
    tokenizer: Tokenizer | None
    window: int
    engine: LocalEngine | RemoteEngine | None

    def load_tokenizer(self) -> None: ...

    def next_id(self) -> int: ...

    @property
    def order(self) -> str: ...

    @property
    def heals(self) -> bool: ...

    @property
    def answer_settings(self) -> tuple[Any, ...]: ...


@dataclass
class Unfinished:
    """Where a cut answer's generation stopped: enough to go on with it later."""

    ids: list[int]  # the prompt
    generated: list[int]  # the tokens generated so far
    mode: str  # the policy's mode (surroundings.mode_for)
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

