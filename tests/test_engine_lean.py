"""The lean path (engine/lean/: our own forward per family, a preallocated KV cache) against
transformers' forward, the reference, for every architecture the presets name.

The engine suite of test_engine.py runs again here (imported, as test_engine_archs.py does) with
this module's `tiny`, whose engines are lean: every step's logits — fresh, extended, cropped in
the middle, last token changed, after a cancelled prefill, chunked — must equal a from-scratch
transformers forward over the whole sequence within 1e-4, greedy tokens must be equal, and
speculation must not change a single token (test_speculation_is_exact; the reference path runs
the same suite in test_engine.py, test_engine_archs.py and test_refact.py). The models: each
architecture's real config shrunk (random weights, real tokenizers), a StarCoder2 and a Qwen2
whose sliding window is shorter than the prompts, and the trained tiny-fim-starcoder. Further
tests cover what the suite cannot see: that the lean path really ran, the switch back to the
reference, lean and reference engines answering alike request after request, the cache growing
past its first allocation, every position's logits, and dynamic int8.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from test_engine import (  # noqa: F401  (collected again here, with this module's `tiny`)
    ATOL,
    Tiny,
    checked,
    reference_logits,
    test_chunked_prefill_equals_one_shot,
    test_extend_crop_and_diverge,
    test_fresh_session,
    test_identical_prompt_again_reuses_all_but_one,
    test_max_new_tokens_is_respected,
    test_request_after_a_cancelled_prefill,
    test_speculation_is_exact,
    test_stop_id_later_in_the_answer,
    test_stop_id_stops_before_the_token,
    test_superseded_while_decoding,
)
from test_engine_archs import build_arch_model

from fimlsp.config import Settings
from fimlsp.engine.lean import FAMILIES, GROW_TO, LeanModel, StaticKV, lean_for
from fimlsp.engine.local import LocalEngine
from fimlsp.models import load_tokenizer, resolve_model
from fimlsp.tools.tiny import build_tiny_model

TRAINED = "tiny-fim-starcoder"
WINDOW = 8  # a sliding window far shorter than the test prompts (44–100 tokens)
# fixture id → (how to build it, the transformers class it must load as)
MODELS: dict[str, tuple[str, str]] = {
    "tiny_starcoder_py": ("shared", "GPTBigCodeForCausalLM"),
    "starcoderbase-1b": ("shared", "GPTBigCodeForCausalLM"),
    "gpt_bigcode-santacoder": ("shared", "GPTBigCodeForCausalLM"),
    TRAINED: ("trained", "GPTBigCodeForCausalLM"),
    "FIM-NeoX-1.3B": ("shared", "GPTNeoXForCausalLM"),
    "Refact-1_6B-fim": ("shared", "GPTRefactForCausalLM"),
    "llama": ("arch", "LlamaForCausalLM"),
    "qwen2": ("arch", "Qwen2ForCausalLM"),
    "qwen2-window": ("arch", "Qwen2ForCausalLM"),
    "starcoder2": ("arch", "Starcoder2ForCausalLM"),
    "starcoder2-window": ("arch", "Starcoder2ForCausalLM"),
}
OVERRIDES: dict[str, dict[str, object]] = {
    # Qwen2 slides its window only on the layers from max_window_layers on: one of each here.
    "qwen2-window": {"use_sliding_window": True, "sliding_window": WINDOW,
                     "max_window_layers": 1},
    "starcoder2-window": {"sliding_window": WINDOW},
}


def build(name: str, tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    how, _ = MODELS[name]
    if how == "trained":
        folder = shared / "models" / TRAINED
        if not (folder / "config.json").is_file():
            pytest.skip(f"the trained model is not in {folder.parent}")
        return folder
    if how == "shared":
        return build_tiny_model(tmp_path_factory.mktemp(name), name, shared=shared)
    arch = name.removesuffix("-window")
    return build_arch_model(tmp_path_factory.mktemp(name), arch, shared,
                            **OVERRIDES.get(name, {}))


@pytest.fixture(scope="module", params=list(MODELS))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         shared: Path) -> Tiny:
    folder = build(request.param, tmp_path_factory, shared)
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", dtype="float32", quantization="none"),
                              lean=True)
    assert type(engine.model).__name__ == MODELS[request.param][1]
    assert isinstance(engine.lean, LeanModel), f"no lean forward for {request.param}"
    return Tiny(request.param, spec, load_tokenizer(str(folder)), engine)


def test_every_family_is_tested_here() -> None:
    """A family added to lean_for without a model here, or one dropped from it, fails."""
    assert {cls for _, cls in MODELS.values()} == set(FAMILIES)


def test_the_windows_are_shorter_than_the_prompts(tiny: Tiny) -> None:
    """The window models really cross their window (else they would test full attention)."""
    config = tiny.engine.model.config
    if tiny.name.endswith("-window"):
        assert config.sliding_window == WINDOW and len(tiny.prompt()) > 4 * WINDOW
        windows = [getattr(b.self_attn, "sliding_window", WINDOW) for b in
                   tiny.engine.model.model.layers]
        assert WINDOW in windows


def test_the_lean_path_serves_the_requests(tiny: Tiny) -> None:
    engine = tiny.fresh()
    assert engine.lean is not None and engine.describe()["forward"] == "lean"
    engine.generate("doc", tiny.prompt(), max_new_tokens=3, stop_ids=set())
    session = engine._sessions["doc"]
    assert isinstance(session.cache, StaticKV)
    assert session.cache.get_seq_length() == len(session.ids)


def test_the_reference_can_be_forced(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """FIMLSP_LEAN=0 (or lean=False) runs transformers' forward with its DynamicCache, and both
    paths answer the same."""
    from transformers import DynamicCache

    lean = tiny.fresh()
    reference = tiny.fresh(lean=False)
    monkeypatch.setenv("FIMLSP_LEAN", "0")
    from_env = tiny.fresh()
    assert reference.lean is None and from_env.lean is None and lean.lean is not None
    assert reference.describe()["forward"] == "transformers"
    prompt = tiny.prompt()
    answers = [e.generate("doc", prompt, max_new_tokens=6, stop_ids=set()).ids
               for e in (lean, reference, from_env)]
    assert answers[0] == answers[1] == answers[2]
    assert isinstance(reference._sessions["doc"].cache, DynamicCache)


def test_lean_and_reference_engines_answer_alike(tiny: Tiny) -> None:
    """Request after request on one document (a prompt, then one that shares its prefix and
    changes the rest, then the first again), greedy through LocalEngine.generate: the same
    tokens and the same reuse on both paths, with and without speculation."""
    first = tiny.prompt()
    middle = len(first) // 2
    second = first[:middle] + tiny.encode("def volume(radius):\n    return ") + first[middle:]
    for speculate in (0, 4):
        lean, reference = tiny.fresh(speculate=speculate), tiny.fresh(lean=False,
                                                                       speculate=speculate)
        assert lean.lean is not None and reference.lean is None
        for prompt in (first, second, first):
            got = lean.generate("doc", prompt, max_new_tokens=10, stop_ids=set())
            want = reference.generate("doc", prompt, max_new_tokens=10, stop_ids=set())
            assert (got.ids, got.reused_tokens) == (want.ids, want.reused_tokens)
            assert lean._sessions["doc"].ids == reference._sessions["doc"].ids


def test_every_position_and_a_growing_cache(tiny: Tiny) -> None:
    """All-position logits (what a speculative draft is verified with) equal transformers', over
    a prompt longer than the first allocation, fed in chunks that make the cache grow."""
    lean = tiny.engine.lean
    assert lean is not None
    base = tiny.prompt()
    ids = (base * (GROW_TO * 2 // len(base) + 1))[: GROW_TO + 40]
    kv = lean.new_cache()
    first = kv.capacity
    got = torch.cat([lean.forward(ids[i:i + 100], kv, all_logits=True)
                     for i in range(0, len(ids), 100)])  # [T, V]
    assert kv.capacity > first and kv.get_seq_length() == len(ids)
    with torch.inference_mode():
        want = tiny.engine.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    torch.testing.assert_close(got, want.float(), atol=ATOL, rtol=0)


def test_crop_then_extend_overwrites_in_place(tiny: Tiny) -> None:
    lean = tiny.engine.lean
    assert lean is not None
    ids = tiny.prompt()
    other = [t for t in tiny.encode(" volume = radius ** 3") if t != ids[-5]]
    kv = lean.new_cache()
    lean.forward(ids, kv)
    keys = kv.keys
    kv.crop(-5)
    assert kv.get_seq_length() == len(ids) - 5
    got = lean.forward(other, kv)[0]
    assert kv.keys is keys  # no reallocation, no copy: the same storage, written in place
    torch.testing.assert_close(got, reference_logits(tiny.engine.model, ids[:-5] + other),
                               atol=ATOL, rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_dynamic_int8_lean_equals_int8_reference(tiny: Tiny) -> None:
    """The lean forward calls the quantized Linear modules as they are: on the same int8 model it
    gives transformers' logits (up to the rounding of dynamically quantized activations) and the
    same greedy answer."""
    model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tiny.engine.model),
                                                   {torch.nn.Linear}, dtype=torch.qint8)
    assert lean_for(model) is not None
    prompt = tiny.prompt()
    lean = LocalEngine(model, tiny.engine.device, lean=True)
    reference = LocalEngine(model, tiny.engine.device, lean=False)
    got = lean.generate("doc", prompt, max_new_tokens=8, stop_ids=set())
    want = reference.generate("doc", prompt, max_new_tokens=8, stop_ids=set())
    assert got.ids == want.ids
    lean_logits = lean.lean.forward(prompt, lean.lean.new_cache())[0]  # type: ignore[union-attr]
    reference_int8 = reference_logits(model, prompt)
    assert torch.nn.functional.cosine_similarity(lean_logits, reference_int8, dim=0) > 0.999


def test_other_architectures_keep_the_reference() -> None:
    """A model no family knows (GPT-2 here), and a gpt_bigcode without multi-query attention,
    run transformers' forward."""
    from transformers import AutoConfig, AutoModelForCausalLM

    for config in (AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2, vocab_size=64),
                   AutoConfig.for_model("gpt_bigcode", n_layer=1, n_embd=32, n_head=2,
                                        vocab_size=64, multi_query=False)):
        model = AutoModelForCausalLM.from_config(config)
        assert lean_for(model) is None
        engine = LocalEngine(model, torch.device("cpu"))
        assert engine.lean is None and engine.describe()["forward"] == "transformers"


@pytest.mark.parametrize(("value", "expected"), [("", 0), ("0", 0), ("4", 4), ("x", 0)])
def test_speculation_is_off_unless_asked(tiny: Tiny, monkeypatch: pytest.MonkeyPatch,
                                         value: str, expected: int) -> None:
    monkeypatch.setenv("FIMLSP_SPECULATE", value)
    assert LocalEngine(tiny.engine.model, tiny.engine.device).speculate == expected
    monkeypatch.delenv("FIMLSP_SPECULATE")
    assert LocalEngine(tiny.engine.model, tiny.engine.device).speculate == 0


def test_the_cache_grows_by_doubling_up_to_the_model_positions() -> None:
    kv = StaticKV(2, 3, 8, torch.float32, torch.device("cpu"), limit=700)
    kv.keys[:, :, :3] = 1.0
    kv.length = 3
    kv.reserve(257)
    assert kv.capacity == 2 * GROW_TO and bool((kv.keys[:, :, :3] == 1.0).all())
    kv.reserve(600)
    assert kv.capacity == 700  # doubling would give 1024: the positions stop it
    kv.crop(-2)
    assert kv.get_seq_length() == 1
    kv.crop(0)
    assert kv.get_seq_length() == 0
