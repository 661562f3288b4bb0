"""Engines turn prompt token ids into generated token ids.

The interface is deliberately small (ids in, ids out, timings) so two engines sit behind it:
`local` runs a model in this process with a KV cache kept across requests, `remote/` sends the
same ids to a serving engine. Below `local`: `checkpoint` loads a model (with `architectures/`,
the models transformers lacks), `lean/` is our own forward over a loaded model, `decoding` the
pure helpers (prompt lookup, sampling), `choices` and `threads` what runs fastest here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Returns why generation must stop now ("cancelled", "superseded", "time"), or None to go on.
# Checked between prefill chunks and between tokens: the only places a forward pass can pause.
StopCheck = Callable[[], "str | None"]
# Receives each generated token id as soon as it is sampled (streaming, stop strings).
TokenCallback = Callable[[int], bool]  # return True to stop after this token


@dataclass
class Generation:
    """The result of one request, with the numbers every request log line carries."""

    ids: list[int] = field(default_factory=list)  # generated, without the stop token
    stop_reason: str = "max_tokens"  # eos | max_tokens | callback | cancelled | superseded | time
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV came from the previous request
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    # Forward passes after the prefill. Without speculation one per generated token after the
    # first; with it fewer: tokens per forward = len(ids) / (decode_forwards + 1).
    decode_forwards: int = 0
    drafted: int = 0  # prompt-lookup draft tokens verified
    accepted: int = 0  # of them, those the model agreed with (kept without a forward each)

    @property
    def interrupted(self) -> bool:
        return self.stop_reason in ("cancelled", "superseded")


@dataclass
class TokenChecks:
    """The checks every generated token goes through, in this order, in every engine: the
    template's stop ids end it (the stop token is not kept), then the callback (the completion
    policy) may stop after it, then the length limit, then a cancel or the time budget. One
    place, so that a remote engine stops exactly where the local one would."""

    out: list[int]
    stop_ids: set[int]
    max_new_tokens: int
    should_stop: StopCheck
    on_token: TokenCallback | None = None

    def emit(self, token: int) -> str | None:
        """Appends `token` to `out` unless it is a stop id; why to stop now, or None."""
        if token in self.stop_ids:
            return "eos"
        self.out.append(token)
        if self.on_token is not None and self.on_token(token):
            return "callback"
        if len(self.out) >= self.max_new_tokens:
            return "max_tokens"
        return self.should_stop()
