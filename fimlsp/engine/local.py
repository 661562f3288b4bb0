"""In-process inference: a transformers model, our own decode loop, and a KV cache that outlives
the request.

Why not `model.generate()`: it builds a fresh cache per call, so every keystroke would re-prefill
thousands of tokens (seconds on a CPU). We keep one `Session` per document: the token ids whose
keys/values sit in its cache (transformers' `DynamicCache`, or the lean path's `StaticKV`). A new
prompt shares a prefix with them (SPM prompts grow at the end while the user types), so we crop
the cache to the longest common prefix and prefill only the rest. The loop is a chain of small
steps, top-down: `generate` → `_prefill` → `_decode` → `_forward`.

Loading a checkpoint is `checkpoint.py`, the pure helpers (prompt lookup, sampling) are
`decoding.py`.

Why one module: what stays is one class over one shared state — the sessions, the thread picker,
the recent prefill speed — which its sessions, its loop and its load-time measurements
(`choose_threads`, `choose_speculation`) all read and write; ~500 lines that read best whole,
since splitting them would hand that state around between classes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from fimlsp.config import Settings
from fimlsp.engine import Generation, StopCheck, TokenCallback, TokenChecks, choices
from fimlsp.engine.checkpoint import cache_kwarg, load_model, resolve
from fimlsp.engine.decoding import common_prefix, draft_tokens, sample
from fimlsp.engine.lean import lean_enabled, lean_for
from fimlsp.engine.threads import ThreadPicker
from fimlsp.healing import Constraint
from fimlsp.models import ModelSpec

log = logging.getLogger(__name__)

PREFILL_CHUNK = 256  # tokens per forward during prefill: bounds how long a cancel waits
PREFILL_CHUNK_S = 0.3  # ... and fewer where reading that many takes longer than this (a request
# waits for the chunk under way; 0.15 s chunks made a 1,770-token prefill ~15 % slower than 256)
MIN_PREFILL_CHUNK = 64
# Prompt-lookup draft tokens per verifying forward. Whether drafting pays depends on the
# machine: on a CPU a forward of 7 tokens measured 2.4× one token (int8, 164M: compute-bound),
# more than the 1.75 tokens per forward the drafts won on the fixture (docs/benchmarks.md); where
# a step is memory-bound (bigger models, GPUs) the extra tokens are nearly free. So `speculate:
# auto` measures the verify cost once at load (`measure_verify_cost`) and drafts only where it
# is at most SPECULATE_PAYS_BELOW × one token.
SPECULATE = 6
SPECULATE_PAYS_BELOW = 1.5  # the tokens per forward drafts must win to break even, conservative
MAX_SESSIONS = 4  # documents whose caches we keep (LRU); one cache is ~50 MB for a 1B model at 2k


@dataclass
class Session:
    """Token ids whose keys and values are in `cache`, position for position."""

    ids: list[int]
    cache: Any  # transformers DynamicCache (reference path) or lean.StaticKV (lean path)
    # The last generation's prompt and the logits [vocab] after it: alternatives branch from
    # them without computing the prompt's last position again (with dynamic int8 a forward's
    # numbers depend on which tokens share it, so a recomputed position would change later
    # answers).
    after_prompt: tuple[list[int], torch.Tensor] | None = None


@dataclass
class Kept:
    """A session's ids, and (lean path) the keys and values of those from `start` on, each
    [layers, kv_heads, n, head_dim]: `LocalEngine.keep` / `put_back`."""

    ids: list[int]
    start: int
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None


def _speculate_from_env() -> int:
    """FIMLSP_SPECULATE as a draft length; anything but a non-negative integer means off."""
    text = os.environ.get("FIMLSP_SPECULATE", "0").strip()
    if text.isdigit():
        return int(text)
    log.warning("FIMLSP_SPECULATE=%r is not a number of draft tokens: speculation off", text)
    return 0



class LocalEngine:
    """One model, one worker thread (the scheduler's), many documents' caches."""

    def __init__(self, model: torch.nn.Module, device: torch.device,
                 max_sessions: int = MAX_SESSIONS, prefill_chunk: int = PREFILL_CHUNK,
                 lean: bool | None = None, speculate: int | None = None) -> None:
        """`lean`: our own forward and static KV cache where the model has one (`engine/lean/`);
        None follows FIMLSP_LEAN (on unless 0), False forces transformers' forward.
        `speculate`: draft tokens per verifying forward in greedy decoding; None follows
        FIMLSP_SPECULATE (unset: 0, off; see SPECULATE)."""
        self.model = model
        self.speculate = speculate if speculate is not None else _speculate_from_env()
        # The lean forward where this architecture has one, else None: transformers' forward.
        self.lean = lean_for(model) if (lean_enabled() if lean is None else lean) else None
        self.device = device
        self.max_sessions = max_sessions
        self.prefill_chunk = prefill_chunk
        # Threads per phase, when `choose_threads` measured them: a prefill of many tokens uses
        # every core; one token at a time may run faster on fewer. None: leave torch's as set.
        self.threads: dict[str, int] = {}
        self.picker: ThreadPicker | None = None  # per forward, from how fast they ran lately
        # Seconds per prompt token of recent prefills (moving average; None before the first):
        # what a prompt would cost to read, before reading it (`Completer` quick starts).
        self.prefill_s_per_token: float | None = None
        self.cache_kwarg = cache_kwarg(model)  # asked once: the signature does not change
        self.quantization = "none"  # what `load` resolved `auto` to, for status lines
        self.choices: dict[str, choices.Choice] = {}  # ... each setting's value and why
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @classmethod
    def load(cls, spec: ModelSpec, settings: Settings, lean: bool | None = None) -> LocalEngine:
        chosen = resolve(spec, settings)
        model, device = load_model(spec, settings, chosen)
        engine = cls(model, device, lean=lean, speculate=settings.speculate)
        if device.type == "cpu" and settings.threads is None:
            chosen["threads"] = engine.choose_threads(chosen["threads"])
        if settings.speculate is not None:
            chosen["speculate"] = choices.Choice(settings.speculate, "set")
        elif "FIMLSP_SPECULATE" in os.environ:
            chosen["speculate"] = choices.Choice(engine.speculate, "FIMLSP_SPECULATE")
        else:
            chosen["speculate"] = engine.choose_speculation()
        engine.choices = chosen
        engine.quantization = engine.choices["quantization"].value
        return engine

    @contextlib.contextmanager
    def _measuring(self, context: int, extra: int) -> Iterator[tuple[Session, list[int]]]:
        """A throwaway session holding a `context`-token prompt, and `extra` ids to feed after
        it: what the load-time measurements time their forwards on."""
        key = "\0measure"
        vocab = int(getattr(self.model.config, "vocab_size", 1000))
        ids = [(7 + 13 * i) % vocab for i in range(context + extra)]
        session = self._session(key)
        try:
            started = time.perf_counter()
            self._prefill(session, ids[:context], lambda: None)
            self._note_prefill(context, time.perf_counter() - started)
            yield session, ids
        finally:
            self.drop_session(key)

    def _best_forward_s(self, session: Session, ids: list[int], context: int, n: int) -> float:
        """One forward of `n` tokens after the session's `context`, timed, then undone."""
        started = time.perf_counter()
        self._forward(session, ids[context:context + n], all_logits=n > 1)
        spent = time.perf_counter() - started
        self._crop(session, context)
        return spent

    def measure_verify_cost(self, drafts: int = SPECULATE, context: int = 256,
                            rounds: int = 5) -> float:
        """How much a forward of 1 + `drafts` tokens costs against one of 1 token, after a
        `context`-token prompt, here and now: the best of `rounds` each, interleaved."""
        best = {1: float("inf"), 1 + drafts: float("inf")}
        with self._measuring(context, 1 + drafts) as (session, ids):
            for _ in range(rounds):
                for n in best:
                    best[n] = min(best[n], self._best_forward_s(session, ids, context, n))
        return best[1 + drafts] / best[1]

    def choose_threads(self, chosen: choices.Choice, context: int = 256, rounds: int = 5
                       ) -> choices.Choice:
        """`threads: auto`: `chosen` (the cores, within the CPUs and quota we have) or one,
        whichever decodes a token faster here, measured now. For a small model the threads'
        hand-offs cost more than the work they share, and only a measurement tells where."""
        most = int(chosen.value)
        if most <= 1:
            return chosen
        best = {most: float("inf"), 1: float("inf")}
        with self._measuring(context, 1) as (session, ids):
            for _ in range(rounds):
                for n in best:
                    torch.set_num_threads(n)
                    best[n] = min(best[n], self._best_forward_s(session, ids, context, 1))
        pick = min(best, key=lambda n: best[n])
        self.threads = {"prefill": most, "decode": pick}
        torch.set_num_threads(pick)
        # From now on every forward runs on whichever count has been faster lately (threads.py):
        # the measurement above is only where it starts.
        self.picker = ThreadPicker([1, most])
        for n, seconds in best.items():
            self.picker.record("decode", n, 1, seconds)
        return choices.Choice(pick, f"{chosen.why}; a token took {best[most] * 1000:.1f} ms "
                              f"on {most} threads and {best[1] * 1000:.1f} ms on one here; "
                              f"each kind of forward then runs on whichever of 1 and {most} "
                              "has been faster lately")

    @contextlib.contextmanager
    def idle_work(self) -> Iterator[None]:
        """What runs inside is work nobody waits for (computing ahead, alternatives, a warm
        start): it may try the thread count not in favour (threads.py)."""
        if self.picker is None:
            yield
            return
        with self.picker.idle_work():
            yield

    def _use_threads(self, phase: str) -> None:
        """The thread count measured best for this phase, if one was (`choose_threads`); with a
        picker, each forward chooses its own."""
        if self.picker is not None:
            return
        wanted = self.threads.get(phase)
        if wanted and torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def choose_speculation(self) -> choices.Choice:
        """`speculate: auto`: draft where verifying drafts costs little more than one token."""
        ratio = self.measure_verify_cost()
        verdict = ratio <= SPECULATE_PAYS_BELOW
        self.speculate = SPECULATE if verdict else 0
        return choices.Choice(self.speculate, f"auto: a {SPECULATE + 1}-token forward costs "
                              f"{ratio:.2f}× one token here; drafts pay below "
                              f"{SPECULATE_PAYS_BELOW}×")

    def describe(self) -> dict[str, Any]:
        """Where and how the model runs: device, dtype of its weights, quantization."""
        weights = next(iter(self.model.parameters()), None)
        return {"device": str(self.device),
                "dtype": str(weights.dtype).removeprefix("torch.") if weights is not None
                else "unknown", "quantization": self.quantization,
                "forward": "lean" if self.lean is not None else "transformers",
                "engine": "local", "threads": (self.threads.get("decode")
                                               or torch.get_num_threads())
                if self.device.type == "cpu" else None,
                **({"threads_now": self.picker.favoured()} if self.picker is not None else {})}

    # -- sessions ---------------------------------------------------------------------------

    def _session(self, key: str) -> Session:
        from transformers import DynamicCache

        session = self._sessions.pop(key, None)
        if session is None and self.lean is not None:
            session = Session(ids=[], cache=self.lean.new_cache())
        elif session is None:
            # No config: with one, sliding-window models (StarCoder2) get layers that refuse
            # `crop` once the window is full. Their attention mask still applies the window.
            session = Session(ids=[], cache=DynamicCache())
        self._sessions[key] = session  # most recently used last
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def drop_session(self, key: str) -> None:
        self._sessions.pop(key, None)

    def session_ids(self, key: str) -> list[int]:
        """The ids whose keys and values the document's session holds (a copy; [] for none)."""
        session = self._sessions.get(key)
        return list(session.ids) if session is not None else []

    @torch.inference_mode()
    def keep(self, key: str, start: int) -> Kept:
        """What the document's session holds from position `start` on, for `put_back` after
        background work that branches off there (alternatives): the ids, and on the lean path a
        copy of their keys and values, so that putting them back is exact, not a recomputation
        (which dynamic int8 would not reproduce bit for bit)."""
        session = self._sessions.get(key)
        if session is None:
            return Kept([], 0)
        start = min(start, len(session.ids))
        cache = session.cache
        if self.lean is None or not hasattr(cache, "keys"):
            return Kept(list(session.ids), start)
        end = len(session.ids)
        return Kept(list(session.ids), start, cache.keys[:, :, start:end].clone(),
                    cache.values[:, :, start:end].clone())

    @torch.inference_mode()
    def put_back(self, key: str, kept: Kept, should_stop: StopCheck = lambda: None) -> None:
        """The session as `keep` found it: the copied keys and values written back where the
        session still holds the ids before them, else the ids fed again."""
        if not kept.ids:
            return
        session = self._sessions.get(key)
        if session is not None and kept.keys is not None and \
                len(session.ids) >= kept.start and session.ids[:kept.start] == \
                kept.ids[:kept.start] and hasattr(session.cache, "keys"):
            cache, end = session.cache, len(kept.ids)
            cache.reserve(end)
            cache.keys[:, :, kept.start:end] = kept.keys
            cache.values[:, :, kept.start:end] = kept.values
            cache.crop(end)
            session.ids[:] = kept.ids
            return
        self.prefill(key, kept.ids, should_stop)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @staticmethod
    def _crop(session: Session, keep: int) -> None:
        if keep < len(session.ids):
            session.cache.crop(keep - len(session.ids))  # negative: tokens to remove
            del session.ids[keep:]

    # -- the loop ---------------------------------------------------------------------------

    @torch.inference_mode()
    def _forward(self, session: Session, ids: list[int], all_logits: bool = False
                 ) -> torch.Tensor:
        """Runs `ids` after what the session holds; returns the last position's logits [vocab],
        or with `all_logits` every fed position's [n, vocab] (to verify a draft)."""
        if self.picker is not None:
            with self.picker.running(len(ids)):
                return self._forward_on(session, ids, all_logits)
        return self._forward_on(session, ids, all_logits)

    def _forward_on(self, session: Session, ids: list[int], all_logits: bool) -> torch.Tensor:
        if self.lean is not None:
            logits = self.lean.forward(ids, session.cache, all_logits=all_logits)  # [1|n, vocab]
            session.ids.extend(ids)
            return logits if all_logits else logits[0]
        start = len(session.ids)
        input_ids = torch.tensor([ids], device=self.device)  # [1, n]
        positions = torch.arange(start, start + len(ids), device=self.device)[None]  # [1, n]
        out = self.model(input_ids=input_ids, position_ids=positions, use_cache=True,
                         logits_to_keep=0 if all_logits else 1,
                         **{self.cache_kwarg: session.cache})
        session.ids.extend(ids)
        return out.logits[0].float() if all_logits else out.logits[0, -1].float()

    def _prefill(self, session: Session, ids: list[int], should_stop: StopCheck
                 ) -> tuple[torch.Tensor | None, str | None]:
        """Feeds `ids` in chunks; stops early (cache stays valid for what was fed) on a signal."""
        logits = None
        self._use_threads("prefill" if len(ids) > 1 else "decode")
        chunk = self._chunk_tokens()
        for begin in range(0, len(ids), chunk):
            reason = should_stop()
            if reason:
                return None, reason
            logits = self._forward(session, ids[begin:begin + chunk])
        return logits, None

    def _chunk_tokens(self) -> int:
        """Tokens per prefill forward: as many as `PREFILL_CHUNK_S` reads at the recent speed,
        within [`MIN_PREFILL_CHUNK`, `prefill_chunk`] — a request arriving during a background
        prefill (a warm start) waits for the chunk under way, so on a slow or loaded CPU the
        chunks get shorter."""
        if self.prefill_s_per_token is None:
            return self.prefill_chunk
        fits = int(PREFILL_CHUNK_S / self.prefill_s_per_token)
        return max(min(MIN_PREFILL_CHUNK, self.prefill_chunk), min(self.prefill_chunk, fits))

    def _resume(self, key: str, prompt: list[int], feed_at_least: int, should_stop: StopCheck
                ) -> tuple[Session, Generation, torch.Tensor | None, str | None]:
        """The document's session cropped to what it shares with `prompt` (keeping at least
        `feed_at_least` tokens to feed), then the rest prefilled: (session, result so far, last
        logits or None if stopped, why it stopped)."""
        session = self._session(key)
        reused = min(common_prefix(session.ids, prompt), len(prompt) - feed_at_least)
        self._crop(session, reused)
        result = Generation(prompt_tokens=len(prompt), reused_tokens=reused)
        started = time.perf_counter()
        logits, reason = self._prefill(session, prompt[reused:], should_stop)
        elapsed = time.perf_counter() - started
        result.prefill_ms = elapsed * 1000
        if reason is None:
            self._note_prefill(len(prompt) - reused, elapsed)
        return session, result, logits, reason

    def _note_prefill(self, tokens: int, seconds: float) -> None:
        if tokens >= PREFILL_CHUNK // 4:  # a few tokens time the overheads, not the reading
            per_token = seconds / tokens
            old = self.prefill_s_per_token
            self.prefill_s_per_token = per_token if old is None else 0.5 * old + 0.5 * per_token

    def unread(self, key: str, prompt: list[int]) -> int:
        """Tokens of `prompt` the document's session does not hold: what a request would
        prefill."""
        session = self._sessions.get(key)
        return len(prompt) - (common_prefix(session.ids, prompt) if session is not None else 0)

    @contextlib.contextmanager
    def _session_guard(self, key: str) -> Iterator[None]:
        """Any failure inside a forward or a crop (out of memory, a CUDA error, a bug) may have
        left the cache and the ids it stands for out of step: a cache that grew while its ids
        did not, half-cropped layers. Nothing can tell which, so the document's session goes,
        and its next request prefills from nothing, as a fresh engine would."""
        try:
            yield
        except BaseException:
            self.drop_session(key)
            raise

    def prefill(self, key: str, prompt: list[int], should_stop: StopCheck = lambda: None
                ) -> Generation:
        """Puts `prompt`'s keys and values in the document's cache without generating (a warm
        start): the next `generate` with this prompt feeds one token. Stops between chunks."""
        with self._session_guard(key):
            _, result, _, reason = self._resume(key, prompt, 0, should_stop)
        result.stop_reason = reason or "warm"
        return result

    def next_logprobs(self, key: str, prompt: list[int], should_stop: StopCheck = lambda: None,
                      constraint: Constraint | None = None) -> torch.Tensor | None:
        """Log-probabilities [vocab] of the token after `prompt` (within what `constraint`
        allows), from the document's session: those the last generation kept when it was for
        this prompt (the answer just given), else one forward of its last token. None when
        stopped first."""
        session = self._sessions.get(key)
        kept = session.after_prompt if session is not None else None
        if session is not None and kept is not None and kept[0] == prompt and \
                session.ids[:len(prompt)] == prompt:
            logits = kept[1]
        else:
            _, _, logits, _ = self._resume(key, prompt, 1, should_stop)
            if logits is None:
                return None
        if constraint is not None and constraint.active:
            logits = constraint.mask(logits)
        return torch.log_softmax(logits.float(), dim=-1)

    def generate(self, key: str, prompt: list[int], *, max_new_tokens: int,
                 stop_ids: set[int], should_stop: StopCheck = lambda: None,
                 temperature: float = 0.0, top_p: float = 1.0,
                 on_token: TokenCallback | None = None,
                 speculate: int | None = None,
                 constraint: Constraint | None = None,
                 scores: list[float] | None = None) -> Generation:
        """Greedy (or sampled) continuation of `prompt`, reusing the document's cache.
        `speculate`: draft tokens for this request (next edits, which copy their prompt), instead
        of the engine's setting. `constraint` (token healing) limits the first tokens to those
        it allows. `scores`: receives each sampled token's log-probability (alternatives are
        ranked by their mean); no drafts then."""
        if not prompt:
            raise ValueError("empty prompt")
        with self._session_guard(key):
            session, result, logits, reason = self._resume(key, prompt, 1, should_stop)
            if logits is None:
                result.stop_reason = reason or "cancelled"
                return result
            session.after_prompt = (list(prompt), logits)

            started = time.perf_counter()
            result.stop_reason = self._decode(session, logits, result, max_new_tokens, stop_ids,
                                              should_stop, temperature, top_p, on_token,
                                              0 if scores is not None else speculate,
                                              constraint, scores)
            result.decode_ms = (time.perf_counter() - started) * 1000
        return result

    def _decode(self, session: Session, logits: torch.Tensor, result: Generation,
                max_new_tokens: int, stop_ids: set[int], should_stop: StopCheck,
                temperature: float, top_p: float, on_token: TokenCallback | None,
                speculate: int | None = None, constraint: Constraint | None = None,
                scores: list[float] | None = None) -> str:
        """Samples up to `max_new_tokens` into `result.ids`; returns why it stopped.

        Greedy decoding speculates: the tokens that followed the text's tail where it occurred
        before (`draft_tokens`) go into the same forward as the sampled token; every draft token
        the model's own argmax agrees with is a token plain decoding would have produced next,
        so it is emitted without a forward of its own, and the disagreeing rest is cropped from
        the cache. Every emitted token goes through the same checks, in the same order, as
        without speculation, so the output, the callbacks and the stop reasons are identical.
        """
        out = result.ids
        self._use_threads("decode")
        base = len(session.ids)  # the prompt: what plain decoding has fed when it starts
        speculate = (self.speculate if speculate is None else speculate) if temperature <= 0 \
            else 0

        emit = TokenChecks(out, stop_ids, max_new_tokens, should_stop, on_token).emit

        def settle(reason: str) -> str:
            """Leaves the session as plain decoding would: everything emitted is fed except the
            last token (which is only fed to get the token after it), or all at an eos."""
            self._crop(session, base + len(out) - (0 if reason == "eos" else 1))
            return reason

        while True:
            healing = constraint if constraint is not None and constraint.active else None
            allowed = logits if healing is None else healing.mask(logits)
            token = sample(allowed, temperature, top_p)
            if scores is not None:
                scores.append(float(torch.log_softmax(allowed.float(), dim=-1)[token]))
            if healing is not None:
                healing.feed(token)
            reason = emit(token)
            if reason:
                return settle(reason)
            # No drafts while a constraint is active: a draft is checked against the model's
            # argmax, not against what the constraint allows.
            drafting = speculate and (constraint is None or not constraint.active)
            draft = draft_tokens([*session.ids, token], min(speculate, max_new_tokens - len(out)
                                                              - 1)) if drafting else []
            result.decode_forwards += 1
            if not draft:
                logits = self._forward(session, [token])
                continue
            every = self._forward(session, [token, *draft], all_logits=True)  # [1 + d, vocab]
            predicted = every.argmax(dim=-1).tolist()  # predicted[i]: greedy after draft[:i]
            agreed = 0
            while agreed < len(draft) and draft[agreed] == predicted[agreed]:
                agreed += 1
            result.drafted += len(draft)
            result.accepted += agreed
            self._crop(session, len(session.ids) - (len(draft) - agreed))
            logits = every[agreed]  # [vocab]: what comes after the agreed draft
            for token in draft[:agreed]:
                reason = emit(token)
                if reason:
                    return settle(reason)
