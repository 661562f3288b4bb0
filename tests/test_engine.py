"""LocalEngine's fast path (KV cache kept across requests, cropped, extended, chunked) against a
slow reference: a from-scratch forward over the whole sequence at every step, no cache.

Both run the same real transformers model (tiny, random weights, real architecture and real
tokenizer), in fp32, so the last-position logits must agree to 1e-4 and greedy tokens exactly.
Every check runs for gpt_bigcode (StarCoder, learned positions, multi-query attention) and
gpt_neox (FIM-NeoX, partial RoPE), on transformers' forward with its `DynamicCache` (the
reference path, `lean=False`); test_engine_lean.py runs the same checks on the lean path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from fimlsp.config import Settings
from fimlsp.context import split_at
from fimlsp.engine import Generation
from fimlsp.engine.checkpoint import cache_kwarg
from fimlsp.engine.decoding import common_prefix, sample
from fimlsp.engine.local import LocalEngine
from fimlsp.models import ModelSpec, load_tokenizer, resolve_model
from fimlsp.prompt import build_prompt
from fimlsp.tools.tiny import build_tiny_model

ATOL = 1e-4
DOCUMENT = (
    "import math\n\n\ndef area(radius):\n    \"\"\"Area of a circle.\"\"\"\n"
    "    return math.pi * radius ** 2\n\n\ndef circumference(radius):\n    return \n\n"
    "print(area(2), circumference(2))\n"
)


@dataclass
class Tiny:
    name: str
    spec: ModelSpec
    tokenizer: Tokenizer
    engine: LocalEngine  # default prefill chunk; tests that need another build their own

    def fresh(self, **kwargs: int | bool) -> LocalEngine:
        """A new engine (no sessions) on the same loaded model and the same path (lean or
        transformers' forward) as `engine`; without speculation unless asked (`checked`
        compares one forward per token; test_speculation_is_exact covers the rest)."""
        kwargs.setdefault("speculate", 0)
        kwargs.setdefault("lean", self.engine.lean is not None)
        return type(self.engine)(self.engine.model, self.engine.device, **kwargs)

    def prompt(self, line: int = 9, character: int = 11) -> list[int]:
        cursor = split_at(DOCUMENT, line, character)
        return build_prompt(self.tokenizer, self.spec.template, self.spec.order, cursor,
                            window=512, reserved=16).ids

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def neox_model(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """FIM-NeoX-1.3B's real config (gpt_neox, 25 % RoPE, parallel residual) shrunk to 2 × 64."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-neox"), "FIM-NeoX-1.3B", shared=shared)


@pytest.fixture(scope="module", params=["gpt_bigcode", "gpt_neox"])
def tiny(request: pytest.FixtureRequest) -> Tiny:
    if request.param == "gpt_bigcode":
        folder = request.getfixturevalue("tiny_model")
    else:
        folder = request.getfixturevalue("neox_model")
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", quantization="none"), lean=False)
    assert engine.model.config.model_type == request.param and engine.lean is None
    assert next(engine.model.parameters()).dtype == torch.float32
    return Tiny(request.param, spec, load_tokenizer(str(folder)), engine)


def reference_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """The slow path: the whole sequence from scratch, no cache."""
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0, -1].float()


def checked(engine: LocalEngine, key: str, prompt: list[int], *, max_new_tokens: int = 6,
            stop_ids: frozenset[int] = frozenset(), **kwargs: object) -> Generation:
    """engine.generate, with every step's logits compared against the slow reference."""
    captured: list[torch.Tensor] = []
    # Every forward the engine runs, whichever path (transformers' or the lean one) serves it.
    inner = engine._forward

    def spy(*args: object, **kw: object) -> torch.Tensor:
        logits = inner(*args, **kw)  # type: ignore[arg-type]
        captured.append(logits.detach().float().clone())
        return logits

    engine._forward = spy  # type: ignore[method-assign]
    try:
        result = engine.generate(key, prompt, max_new_tokens=max_new_tokens,
                                 stop_ids=set(stop_ids), **kwargs)  # type: ignore[arg-type]
    finally:
        del engine._forward
    assert result.prompt_tokens == len(prompt)
    # One logits vector per sampled token (plus the one that sampled the stop token).
    steps = len(result.ids) + (1 if result.stop_reason == "eos" else 0)
    assert len(captured) >= steps
    fast = captured[len(captured) - steps:]
    for k in range(steps):
        slow = reference_logits(engine.model, prompt + result.ids[:k])
        torch.testing.assert_close(fast[k], slow, atol=ATOL, rtol=0,
                                   msg=lambda m, k=k: f"step {k}: {m}")
        if k < len(result.ids):
            assert result.ids[k] == int(slow.argmax()), f"step {k}"
        else:
            assert int(slow.argmax()) in stop_ids
    # The session's cache holds exactly the ids it says, and they are what was fed.
    session = engine._sessions[key]
    assert session.cache.get_seq_length() == len(session.ids)
    assert session.ids == (prompt + result.ids)[:len(session.ids)]
    return result


def fed_after(prompt: list[int], result: Generation) -> list[int]:
    """What the session holds after a finished request: the last sampled token is never fed."""
    return prompt + (result.ids if result.stop_reason == "eos" else result.ids[:-1])


def test_fresh_session(tiny: Tiny) -> None:
    engine = tiny.fresh()
    prompt = tiny.prompt()
    result = checked(engine, "doc", prompt)
    assert result.reused_tokens == 0
    assert len(result.ids) == 6 and result.stop_reason == "max_tokens"
    assert engine._sessions["doc"].ids == fed_after(prompt, result)


def test_extend_crop_and_diverge(tiny: Tiny) -> None:
    """The requests an editor sends while the user types, on one document's session."""
    engine = tiny.fresh()
    first = tiny.prompt()
    result = checked(engine, "doc", first)

    # The prompt grows by a few tokens (SPM: typing at the cursor appends to the prompt).
    typed = tiny.encode("radius * 2")
    assert typed[0] != result.ids[0]  # else the cache would legitimately reuse one more
    second = first + typed
    result = checked(engine, "doc", second)
    assert result.reused_tokens == len(first)

    # The last prompt token changes: crop one position, then extend.
    replacement = next(t for t in tiny.encode(" math tau") if t != second[-1])
    third = [*second[:-1], replacement]
    result = checked(engine, "doc", third)
    assert result.reused_tokens == len(second) - 1

    # A change in the middle: crop back to the divergence, prefill everything after it.
    middle = len(third) // 2
    fourth = third[:middle] + tiny.encode("def volume(radius):\n    return ") + third[middle:]
    assert fourth[middle] != third[middle]
    result = checked(engine, "doc", fourth)
    assert result.reused_tokens == middle
    assert engine._sessions["doc"].ids == fed_after(fourth, result)

    # A shorter prompt that is a prefix of what the cache holds.
    fifth = fourth[: middle - 3]
    result = checked(engine, "doc", fifth)
    assert result.reused_tokens == len(fifth) - 1


def test_generation_uses_no_deprecated_keyword(tiny: Tiny) -> None:
    """transformers renamed `past_key_values` to `cache` and warns on the old name on every call
    until it removes it (5.40): the engine speaks what the installed version's forward takes."""
    engine = tiny.fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        result = engine.generate("doc", tiny.prompt(), max_new_tokens=3, stop_ids=set())
    assert len(result.ids) == 3
    assert engine.cache_kwarg in ("cache", "past_key_values")


class OldSpelling(torch.nn.Module):
    """The same real model as transformers releases before the rename present it: its forward
    takes the KV cache only as `past_key_values`."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, input_ids: torch.Tensor, past_key_values: object = None,
                position_ids: torch.Tensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int = 0) -> object:
        return self.inner(input_ids=input_ids, position_ids=position_ids, use_cache=use_cache,
                          logits_to_keep=logits_to_keep,
                          **{cache_kwarg(self.inner): past_key_values})


def test_a_forward_that_takes_only_past_key_values_still_gets_the_cache(tiny: Tiny) -> None:
    old = LocalEngine(OldSpelling(tiny.engine.model), tiny.engine.device)
    assert old.cache_kwarg == "past_key_values"
    new = tiny.fresh()
    first = tiny.prompt()
    expected = new.generate("doc", first, max_new_tokens=4, stop_ids=set())
    got = old.generate("doc", first, max_new_tokens=4, stop_ids=set())
    assert got.ids == expected.ids
    # The cache really went in: the next request reuses it instead of prefilling again.
    again = old.generate("doc", first + expected.ids[:1], max_new_tokens=2, stop_ids=set())
    assert again.reused_tokens == len(first)
    assert old._sessions["doc"].cache.get_seq_length() == len(old._sessions["doc"].ids)


def test_identical_prompt_again_reuses_all_but_one(tiny: Tiny) -> None:
    engine = tiny.fresh()
    prompt = tiny.prompt()
    first = checked(engine, "doc", prompt)
    again = checked(engine, "doc", prompt)
    assert again.reused_tokens == len(prompt) - 1  # at least one token is fed for its logits
    assert again.ids == first.ids


def test_request_after_a_cancelled_prefill(tiny: Tiny) -> None:
    engine = tiny.fresh(prefill_chunk=4)
    prompt = tiny.prompt()
    assert len(prompt) > 12
    calls = 0

    def cancel_after_first_chunk() -> str | None:
        nonlocal calls
        calls += 1
        return "cancelled" if calls > 1 else None

    result = checked(engine, "doc", prompt, should_stop=cancel_after_first_chunk)
    assert result.stop_reason == "cancelled" and result.interrupted
    assert result.ids == [] and calls == 2
    session = engine._sessions["doc"]
    assert session.ids == prompt[:4]  # the chunk that was fed stays valid
    assert session.cache.get_seq_length() == 4

    # The next request (the same document, one more token typed) picks up from there.
    result = checked(engine, "doc", [*prompt, *tiny.encode(" r")])
    assert result.reused_tokens == 4
    assert result.stop_reason == "max_tokens"


def test_chunked_prefill_equals_one_shot(tiny: Tiny) -> None:
    prompt = tiny.prompt()
    one_shot = checked(tiny.fresh(), "doc", prompt)
    chunked = checked(tiny.fresh(prefill_chunk=3), "doc", prompt)
    assert chunked.ids == one_shot.ids


def test_superseded_while_decoding(tiny: Tiny) -> None:
    engine = tiny.fresh()
    prompt = tiny.prompt()
    seen: list[int] = []

    def on_token(token: int) -> bool:
        seen.append(token)
        return False

    result = checked(engine, "doc", prompt, max_new_tokens=10, on_token=on_token,
                     should_stop=lambda: "superseded" if len(seen) >= 2 else None)
    assert result.stop_reason == "superseded" and result.interrupted
    assert result.ids == seen and len(result.ids) == 2
    after = checked(engine, "doc", prompt)
    assert after.reused_tokens == len(prompt) - 1
    assert after.ids[:2] == result.ids


def test_stop_id_stops_before_the_token(tiny: Tiny) -> None:
    prompt = tiny.prompt()
    greedy_first = int(reference_logits(tiny.engine.model, prompt).argmax())
    result = checked(tiny.fresh(), "doc", prompt, stop_ids=frozenset({greedy_first}))
    assert result.ids == [] and result.stop_reason == "eos"
    assert not result.interrupted


def test_stop_id_later_in_the_answer(tiny: Tiny) -> None:
    prompt = tiny.prompt()
    free = checked(tiny.fresh(), "doc", prompt, max_new_tokens=8)
    stop_at = next((i for i, t in enumerate(free.ids) if t not in free.ids[:i] and i > 0), None)
    if stop_at is None:
        pytest.fail(f"the greedy answer repeats one token only: {free.ids}")
    stopped = checked(tiny.fresh(), "doc", prompt, max_new_tokens=8,
                      stop_ids=frozenset({free.ids[stop_at]}))
    assert stopped.ids == free.ids[:stop_at] and stopped.stop_reason == "eos"


@pytest.mark.parametrize("max_new_tokens", [1, 3, 9])
def test_max_new_tokens_is_respected(tiny: Tiny, max_new_tokens: int) -> None:
    result = checked(tiny.fresh(), "doc", tiny.prompt(), max_new_tokens=max_new_tokens)
    assert len(result.ids) == max_new_tokens and result.stop_reason == "max_tokens"


def test_on_token_returning_true_stops(tiny: Tiny) -> None:
    seen: list[int] = []

    def third_token_stops(token: int) -> bool:
        seen.append(token)
        return len(seen) == 3

    result = checked(tiny.fresh(), "doc", tiny.prompt(), max_new_tokens=10,
                     on_token=third_token_stops)
    assert result.stop_reason == "callback"
    assert result.ids == seen and len(seen) == 3


def test_speculation_is_exact(tiny: Tiny) -> None:
    """Prompt-lookup speculation changes how many forwards run, never what comes out: the same
    ids, stop reasons, reuse and session contents as plain greedy decoding, request after request
    (fresh, extended, last token changed, changed in the middle), and under every way to stop."""
    plain, fast = tiny.fresh(), tiny.fresh(speculate=4)
    first = tiny.prompt()
    second = first + tiny.encode("radius * 2")
    third = [*second[:-1], next(t for t in tiny.encode(" math tau") if t != second[-1])]
    middle = len(third) // 2
    fourth = third[:middle] + tiny.encode("def volume(radius):\n    return ") + third[middle:]
    drafted = 0
    answers = []
    for prompt in (first, second, third, fourth, fourth[: middle - 3]):
        want = plain.generate("doc", prompt, max_new_tokens=12, stop_ids=set())
        got = fast.generate("doc", prompt, max_new_tokens=12, stop_ids=set())
        assert (got.ids, got.stop_reason, got.reused_tokens) == \
            (want.ids, want.stop_reason, want.reused_tokens)
        assert fast._sessions["doc"].ids == plain._sessions["doc"].ids
        assert fast._sessions["doc"].cache.get_seq_length() == len(fast._sessions["doc"].ids)
        assert got.decode_forwards <= want.decode_forwards == len(want.ids) - 1
        drafted += got.drafted
        answers.append(want.ids)
    # Text that repeats, the answer included (random weights rarely repeat the prompt by
    # themselves): drafts are found, verified, and kept or dropped.
    repeated = first + answers[0] + first
    want = plain.generate("doc", repeated, max_new_tokens=12, stop_ids=set())
    got = fast.generate("doc", repeated, max_new_tokens=12, stop_ids=set())
    assert (got.ids, got.stop_reason) == (want.ids, want.stop_reason)
    assert fast._sessions["doc"].ids == plain._sessions["doc"].ids
    drafted += got.drafted
    assert drafted > 0, "no draft was ever verified: the test exercised nothing"

    answer = answers[0]  # the answer to `first`
    for stop in {answer[i] for i in (0, 3, 7)}:  # an eos at the first, a middle, a late token
        want = plain.generate("s", first, max_new_tokens=12, stop_ids={stop})
        got = fast.generate("s", first, max_new_tokens=12, stop_ids={stop})
        assert (got.ids, got.stop_reason) == (want.ids, want.stop_reason)
        assert fast._sessions["s"].ids == plain._sessions["s"].ids
    for engine in (plain, fast):
        engine.drop_session("s")

    def stops(engine: LocalEngine, at: int, how: str) -> tuple[list[int], str, list[int]]:
        seen: list[int] = []

        def on_token(token: int) -> bool:
            seen.append(token)
            return how == "callback" and len(seen) == at

        result = engine.generate("c", first, max_new_tokens=12, stop_ids=set(), on_token=on_token,
                                 should_stop=lambda: "superseded" if how == "superseded"
                                 and len(seen) >= at else None)
        ids = engine._sessions["c"].ids
        engine.drop_session("c")
        return seen, result.stop_reason, ids

    for how in ("callback", "superseded"):
        for at in (1, 2, 5):
            assert stops(fast, at, how) == stops(plain, at, how)


def test_draft_tokens() -> None:
    from fimlsp.engine.decoding import draft_tokens

    text = [1, 2, 3, 4, 5, 9, 2, 3, 4, 6, 7, 2, 3]
    assert draft_tokens(text, 3) == [4, 6, 7]  # the latest earlier "2 3" wins
    assert draft_tokens(text, 1) == [4]
    assert draft_tokens([*text, 8], 3) == []  # 8 never occurred before
    assert draft_tokens([5, 1, 5], 4) == [1, 5]  # a 1-gram, followed up to the end
    assert draft_tokens(text, 0) == [] and draft_tokens([], 3) == [] and draft_tokens([7], 3) == []


def test_sessions_are_kept_per_document(tiny: Tiny) -> None:
    engine = tiny.fresh()
    a, b = tiny.prompt(), tiny.prompt(line=5, character=4)
    assert a != b
    checked(engine, "a", a)
    checked(engine, "b", b)
    # Each document resumes its own cache.
    assert checked(engine, "a", a).reused_tokens == len(a) - 1
    assert checked(engine, "b", b).reused_tokens == len(b) - 1


def test_lru_keeps_at_most_max_sessions(tiny: Tiny) -> None:
    engine = tiny.fresh(max_sessions=2)
    prompt = tiny.prompt()
    short = prompt[:10]
    for key in ("a", "b", "c"):
        engine.generate(key, short, max_new_tokens=1, stop_ids=set())
    assert list(engine._sessions) == ["b", "c"]
    # "b" is used again, so "c" becomes the least recently used and goes first.
    assert engine.generate("b", short, max_new_tokens=1, stop_ids=set()).reused_tokens == 9
    engine.generate("d", short, max_new_tokens=1, stop_ids=set())
    assert list(engine._sessions) == ["b", "d"]
    assert len(engine._sessions) <= 2
    # An evicted document starts from scratch, and still gets the right answer.
    again = checked(engine, "a", short)
    assert again.reused_tokens == 0
    engine.drop_session("a")
    assert "a" not in engine._sessions


def test_empty_prompt_is_rejected(tiny: Tiny) -> None:
    with pytest.raises(ValueError):
        tiny.fresh().generate("doc", [], max_new_tokens=4, stop_ids=set())


def test_sampling_with_tiny_top_p_is_greedy(tiny: Tiny) -> None:
    logits = reference_logits(tiny.engine.model, tiny.prompt())
    assert sample(logits, 0.0, 1.0) == int(logits.argmax())
    for _ in range(5):
        assert sample(logits, 1.0, 1e-9) == int(logits.argmax())


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [([], [], 0), ([1, 2, 3], [1, 2, 3], 3), ([1, 2, 3], [1, 2], 2), ([1, 2], [1, 2, 3], 2),
     ([1, 2, 3], [1, 9, 3], 1), ([5], [6], 0)],
    ids=["empty", "equal", "shorter-b", "shorter-a", "middle", "first"],
)
def test_common_prefix(a: list[int], b: list[int], n: int) -> None:
    assert common_prefix(a, b) == n


def test_tiny_neox_is_the_real_architecture(neox_model: Path) -> None:
    """The shrunk FIM-NeoX keeps what matters for caching: partial RoPE, untied head."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(neox_model)
    assert config.model_type == "gpt_neox"
    rope = getattr(config, "rope_parameters", None) or {}
    assert rope.get("partial_rotary_factor", getattr(config, "rotary_pct", None)) == 0.25
    assert config.tie_word_embeddings is False
    spec = resolve_model(str(neox_model))
    assert spec.template.name == "fim-neox" and spec.order == "spm"

