"""How many CPU threads each forward runs on, picked from how fast the last forwards ran.

A measurement at load (`LocalEngine.choose_threads`) says what was fastest *then*. The cores
are shared — with the editor, a browser, a build — and what pays changes with that load: on this
project's 2-core machine, a 1,770-token prefill of the 164M model took 1.1 s on both threads and
1.8 s on one when the machine was quiet, and 13–24 s on both against 5–8 s on one while two
low-priority processes ran beside it (docs/benchmarks.md): a thread that has to wait for a core
holds up every barrier of every matmul. So each kind of forward (one token; a few; a chunk of a
prefill) keeps a moving average of its time per token for each thread count, runs on the fastest,
and every `PROBE_EVERY`-th time tries the other, so the choice follows the load. Only in work
nobody waits for (a suggestion computed ahead, alternatives, a warm start: `probing`): under
load the other count can be ten times slower, and a user's request must not pay for finding out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

PROBE_EVERY = 4  # every this many forwards of a kind, one runs on the count not in favour
SMOOTHING = 0.5  # weight of the newest measurement in the moving average


def kind_of(tokens: int) -> str:
    """Forwards whose cost per token is alike: a decode step, a draft's verify, a prefill chunk."""
    if tokens == 1:
        return "decode"
    return "verify" if tokens <= 16 else "prefill"


class ThreadPicker:
    """Per kind of forward, the thread count that ran it fastest lately (model thread only)."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = sorted(set(counts))
        self._per_token_s: dict[str, dict[int, float]] = {}
        self._runs: dict[str, int] = {}
        self.probing = False  # the forwards now are work nobody waits for: try the other count

    def pick(self, kind: str) -> int:
        """The count to run the next forward of `kind` on: each count once, then the fastest,
        and now and then the other to see whether the load has changed."""
        measured = self._per_token_s.setdefault(kind, {})
        untried = [n for n in reversed(self.counts) if n not in measured]
        if untried:
            return untried[0]
        runs = self._runs[kind] = self._runs.get(kind, 0) + 1
        ranked = sorted(self.counts, key=lambda n: measured[n])
        if self.probing and len(ranked) > 1 and runs % PROBE_EVERY == 0:
            return ranked[1 + (runs // PROBE_EVERY) % (len(ranked) - 1)]
        return ranked[0]

    def record(self, kind: str, threads: int, tokens: int, seconds: float) -> None:
        per_token = seconds / max(1, tokens)
        measured = self._per_token_s.setdefault(kind, {})
        old = measured.get(threads)
        measured[threads] = per_token if old is None else \
            (1 - SMOOTHING) * old + SMOOTHING * per_token

    def favoured(self) -> dict[str, int]:
        """Per kind measured so far, the count it runs on now (for `fimlsp.stats`)."""
        return {kind: min(m, key=lambda n: m[n]) for kind, m in self._per_token_s.items()
                if len(m) == len(self.counts)}

    @contextmanager
    def idle_work(self) -> Iterator[None]:
        """The body's forwards are background work: they may try the count not in favour."""
        before, self.probing = self.probing, True
        try:
            yield
        finally:
            self.probing = before

    @contextmanager
    def running(self, tokens: int) -> Iterator[None]:
        """Runs the body (one forward of `tokens`) on the picked count and measures it."""
        kind = kind_of(tokens)
        threads = self.pick(kind)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        yield
        self.record(kind, threads, tokens, time.perf_counter() - started)
