"""The lean path (engine/lean.py: our own gpt_bigcode forward, a preallocated KV cache) against
transformers' forward, the reference.

The engine suite of test_engine.py runs again here (imported, as test_engine_archs.py does) with
this module's `tiny`: every step's logits of the lean engine — fresh, extended, cropped in the
middle, last token changed, after a cancelled prefill, chunked — must equal a from-scratch
transformers forward over the whole sequence within 1e-4, and greedy tokens must be equal. The
models: the three gpt_bigcode seed configs shrunk (random weights, real tokenizers) and the
trained tiny-fim-starcoder in shared/models. Further tests cover what the suite cannot see: that
the lean path really ran, the switch back to the reference, the cache growing past its first
allocation, every position's logits, and dynamic int8.
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

from fimlsp.config import Settings
from fimlsp.engine.lean import GROW_TO, LeanBigCode, StaticKV, lean_for
from fimlsp.engine.local import LocalEngine
from fimlsp.models import load_tokenizer, resolve_model
from fimlsp.tiny import build_tiny_model

SEEDS = ("tiny_starcoder_py", "starcoderbase-1b", "gpt_bigcode-santacoder")
TRAINED = "tiny-fim-starcoder"


@pytest.fixture(scope="module", params=[*SEEDS, TRAINED])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         shared: Path) -> Tiny:
    if request.param == TRAINED:
        folder = shared / "models" / TRAINED
        if not (folder / "config.json").is_file():
            pytest.skip(f"the trained model is not in {folder.parent}")
    else:
        folder = build_tiny_model(tmp_path_factory.mktemp(request.param), request.param,
                                  shared=shared)
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", dtype="float32"), lean=True)
    assert isinstance(engine.lean, LeanBigCode), "the lean path must serve gpt_bigcode"
    return Tiny(request.param, spec, load_tokenizer(str(folder)), engine)


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


def test_other_architectures_keep_the_reference(tmp_path: Path, shared: Path) -> None:
    folder = build_tiny_model(tmp_path / "neox", "FIM-NeoX-1.3B", shared=shared)
    engine = LocalEngine.load(resolve_model(str(folder)), Settings(device="cpu"))
    assert engine.lean is None and engine.describe()["forward"] == "transformers"


@pytest.mark.parametrize(("value", "expected"), [("", 0), ("0", 0), ("4", 4), ("x", 0)])
def test_speculation_is_off_unless_asked(tiny: Tiny, monkeypatch: pytest.MonkeyPatch,
                                         value: str, expected: int) -> None:
    monkeypatch.setenv("FIMLSP_SPECULATE", value)
    assert LocalEngine(tiny.engine.model, tiny.engine.device).speculate == expected
    monkeypatch.delenv("FIMLSP_SPECULATE")
    assert LocalEngine(tiny.engine.model, tiny.engine.device).speculate == 0


def test_the_cache_grows_by_doubling_up_to_the_model_positions() -> None:
    kv = StaticKV(2, 8, torch.float32, torch.device("cpu"), limit=700)
    kv.keys[:, :3] = 1.0
    kv.length = 3
    kv.reserve(257)
    assert kv.capacity == 2 * GROW_TO and bool((kv.keys[:, :3] == 1.0).all())
    kv.reserve(600)
    assert kv.capacity == 700  # doubling would give 1024: the positions stop it
    kv.crop(-2)
    assert kv.get_seq_length() == 1
    kv.crop(0)
    assert kv.get_seq_length() == 0
