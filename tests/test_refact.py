"""Native GPT-Refact (fimlsp.engine.architectures.refact) against what FACTS.md §4 says the
checkpoint is.

- a hand-written forward (explicit loops over heads, the ALiBi matrix in the original's absolute
  form `+slope·(j+1)`, float64) agrees with the model to 1e-5, also after a crop and an extension
  of its cache;
- the full-size model built from the real config.json has exactly the checkpoint's 227 tensor
  names and shapes; a state dict with those names loads with nothing missing or unexpected;
- `from_pretrained` on a folder whose config.json carries the real `auto_map` (and whose custom
  code would leave a mark if it ran) builds our class and runs none of it;
- the engine suite of test_engine.py (cached == uncached, crops, cancels) on a tiny Refact.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_engine import (  # noqa: F401  (collected again here, with this module's `tiny`)
    Tiny,
    test_a_forward_that_takes_only_past_key_values_still_gets_the_cache,
    test_chunked_prefill_equals_one_shot,
    test_extend_crop_and_diverge,
    test_fresh_session,
    test_generation_uses_no_deprecated_keyword,
    test_identical_prompt_again_reuses_all_but_one,
    test_request_after_a_cancelled_prefill,
    test_stop_id_later_in_the_answer,
    test_stop_id_stops_before_the_token,
    test_superseded_while_decoding,
)
from test_engine_archs import test_wrong_positions_after_a_crop_would_be_caught  # noqa: F401
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from fimlsp.config import Settings
from fimlsp.engine.architectures.refact import (
    GPTRefactConfig,
    GPTRefactForCausalLM,
    alibi_slopes,
    mlp_width,
)
from fimlsp.engine.checkpoint import load_model
from fimlsp.engine.local import LocalEngine
from fimlsp.models import load_tokenizer, resolve_model
from fimlsp.tools.tiny import build_tiny_model, shrink

# fp32 model against a float64 hand computation; fp32 sums in an order that depends on the
# thread count (each load sets it), which moves logits by up to ~1.5e-5.
REFERENCE_ATOL = 3e-5


def real_config_dir(shared: Path) -> Path:
    return shared / "model-configs" / "Refact-1_6B-fim"


# -- the hand-written reference -------------------------------------------------------------


def hf_slopes(n_head: int) -> list[float]:
    """Written out again from FACTS.md: 2^(-8h/n) for h = 1..n (n the largest power of two
    ≤ n_head), then 2^(-4/n) to the powers 1, 3, 5, … for the heads left over."""
    n = 1
    while n * 2 <= n_head:
        n *= 2
    slopes = [2 ** (-8 * h / n) for h in range(1, n + 1)]
    slopes += [(2 ** (-4 / n)) ** p for p in range(1, 2 * (n_head - n), 2)]
    return slopes


def layer_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight


def reference_logits(state: dict[str, torch.Tensor], config: GPTRefactConfig, ids: list[int],
                     slopes: list[float] | None = None) -> torch.Tensor:
    """GPT-Refact from the tensor names alone, in float64: [T, vocab]."""
    sd = {name: tensor.double() for name, tensor in state.items()}
    heads, eps = config.n_head, config.layer_norm_epsilon
    dim = config.n_embd // heads
    slopes = hf_slopes(heads) if slopes is None else slopes
    length = len(ids)
    alibi = torch.full((heads, length, length), -math.inf, dtype=torch.float64)
    for h in range(heads):
        for i in range(length):
            for j in range(i + 1):
                alibi[h, i, j] = slopes[h] * (j + 1)  # the original HF form, per key position
    x = sd["transformer.wte.weight"][ids]  # [T, E]
    for n in range(config.n_layer):
        p = f"transformer.h.{n}."
        a = layer_norm(x, sd[p + "ln_1.weight"], eps)
        q = a @ sd[p + "attn.q.weight"].T  # [T, E]
        kv = a @ sd[p + "attn.kv.weight"].T  # [T, 2D]
        k, v = kv[:, :dim], kv[:, dim:]
        outs = []
        for h in range(heads):
            scores = q[:, h * dim:(h + 1) * dim] @ k.T / math.sqrt(dim) + alibi[h]  # [T, T]
            outs.append(torch.softmax(scores, dim=-1) @ v)  # [T, D]
        x = x + torch.cat(outs, dim=1) @ sd[p + "attn.c_proj.weight"].T
        m = layer_norm(x, sd[p + "ln_2.weight"], eps)
        width = sd[p + "mlp.c_proj.weight"].shape[1]
        gate_up = m @ sd[p + "mlp.gate_up_proj.weight"].T  # [T, 2F]
        gate, up = gate_up[:, :width], gate_up[:, width:]
        x = x + (gate * torch.sigmoid(gate) * up) @ sd[p + "mlp.c_proj.weight"].T
    return layer_norm(x, sd["ln_f.weight"], eps) @ sd["lm_head.weight"].T


def small_model(n_head: int, head_dim: int = 8, layers: int = 2, seed: int = 0
                ) -> GPTRefactForCausalLM:
    """Random weights large enough that attention is sharp (0.02 would make every head uniform)."""
    config = GPTRefactConfig(vocab_size=97, n_positions=64, n_embd=n_head * head_dim,
                             n_layer=layers, n_head=n_head)
    torch.manual_seed(seed)
    model = GPTRefactForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln" in name:
                param.copy_(1 + 0.2 * torch.randn_like(param))
            else:
                param.normal_(0, 0.3)
    return model


# -- ALiBi and widths -----------------------------------------------------------------------


def test_alibi_slopes_of_refact_are_powers_of_a_quarter_root() -> None:
    """32 heads: slope_h = 2^(-h/4), h = 1..32, from 0.8409 down to 0.0039 (FACTS.md §4)."""
    slopes = alibi_slopes(32)
    expected = torch.tensor([2 ** (-h / 4) for h in range(1, 33)])
    torch.testing.assert_close(slopes, expected, atol=0, rtol=1e-6)
    assert slopes[0] == pytest.approx(0.8409, abs=1e-4)
    assert slopes[-1] == pytest.approx(0.0039, abs=1e-4)


@pytest.mark.parametrize(("n_head", "expected"), [
    (4, [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]),
    (6, [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]),  # 4 + 2 interleaved extras
    (1, [2 ** -8]),
])
def test_alibi_slopes_other_head_counts(n_head: int, expected: list[float]) -> None:
    assert alibi_slopes(n_head).tolist() == pytest.approx(expected, rel=1e-6)
    assert hf_slopes(n_head) == pytest.approx(expected, rel=1e-12)


def test_mlp_width_of_refact() -> None:
    assert mlp_width(2048) == 5632
    assert mlp_width(64) == 256


# -- the hand-computed reference ------------------------------------------------------------


@pytest.mark.parametrize("n_head", [4, 6], ids=["4-heads", "6-heads-non-power-of-two"])
def test_forward_equals_hand_computed_alibi_attention(n_head: int) -> None:
    model = small_model(n_head)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (13,), generator=generator)
    with torch.inference_mode():
        logits = model(input_ids=ids[None], use_cache=False).logits[0]  # [T, V]
    reference = reference_logits(model.state_dict(), model.config, ids.tolist())
    torch.testing.assert_close(logits.double(), reference, atol=REFERENCE_ATOL, rtol=0)

    # The comparison is sharp enough to see the head order of the slopes, and ALiBi at all.
    slopes = hf_slopes(n_head)
    for wrong in (slopes[::-1], [0.0] * n_head):
        other = reference_logits(model.state_dict(), model.config, ids.tolist(), wrong)
        assert (other - reference).abs().max() > 1e-2


def test_cache_crop_and_extend_equal_the_hand_computed_reference() -> None:
    """ALiBi from absolute positions: prefill, crop in the middle, extend with other tokens one
    chunk and then one token at a time; every step equals the hand reference of the sequence."""
    model = small_model(4)
    generator = torch.Generator().manual_seed(2)
    first = torch.randint(0, 97, (12,), generator=generator).tolist()
    cache = DynamicCache(config=model.config)

    def feed(ids: list[int], start: int) -> torch.Tensor:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True,
                        position_ids=torch.arange(start, start + len(ids))[None], logits_to_keep=1)
        assert out.logits.shape == (1, 1, 97)
        return out.logits[0, -1].double()

    def expect(ids: list[int]) -> torch.Tensor:
        return reference_logits(model.state_dict(), model.config, ids)[-1]

    torch.testing.assert_close(feed(first, 0), expect(first), atol=REFERENCE_ATOL, rtol=0)
    cache.crop(-7)  # keep 5
    assert cache.get_seq_length() == 5
    sequence = [*first[:5], 3, 1, 4]
    torch.testing.assert_close(feed([3, 1, 4], 5), expect(sequence), atol=REFERENCE_ATOL, rtol=0)
    for token in (1, 5, 9):
        sequence.append(token)
        torch.testing.assert_close(feed([token], len(sequence) - 1), expect(sequence),
                                   atol=REFERENCE_ATOL, rtol=0)
    assert cache.get_seq_length() == len(sequence) == 11


# -- the real checkpoint's tensors ----------------------------------------------------------


def facts_tensors() -> dict[str, tuple[int, ...]]:
    """FACTS.md §4's table, typed in: the current HF checkpoint of Refact-1_6B-fim."""
    tensors = {"transformer.wte.weight": (49216, 2048)}
    for n in range(32):
        p = f"transformer.h.{n}."
        tensors |= {
            p + "ln_1.weight": (2048,),
            p + "attn.q.weight": (2048, 2048),
            p + "attn.kv.weight": (128, 2048),
            p + "attn.c_proj.weight": (2048, 2048),
            p + "ln_2.weight": (2048,),
            p + "mlp.gate_up_proj.weight": (11264, 2048),
            p + "mlp.c_proj.weight": (2048, 5632),
        }
    tensors |= {"ln_f.weight": (2048,), "lm_head.weight": (49216, 2048)}
    return tensors


def test_full_size_model_has_the_checkpoint_tensor_names_and_shapes(shared: Path) -> None:
    config = AutoConfig.from_pretrained(real_config_dir(shared), trust_remote_code=False)
    assert type(config) is GPTRefactConfig  # the real config.json, its auto_map ignored
    assert (config.n_layer, config.n_embd, config.n_head, config.vocab_size) == (32, 2048, 32,
                                                                                 49216)
    with torch.device("meta"):
        model = GPTRefactForCausalLM(config)
    state = model.state_dict()
    expected = facts_tensors()
    assert {name: tuple(t.shape) for name, t in state.items()} == expected
    assert len(state) == 227
    assert sum(t.numel() for t in state.values()) == 1_585_842_176
    assert model.lm_head.weight is not model.transformer.wte.weight  # untied

    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in expected.items()}
    result = model.load_state_dict(checkpoint, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


REMOTE_CODE = """import pathlib
pathlib.Path(__file__).with_name("REMOTE_CODE_RAN").write_text(__name__)
raise RuntimeError("remote code ran")
"""


def write_checkpoint(folder: Path, shared: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny checkpoint as the hub has it: the real config.json shrunk (auto_map kept), custom
    code files beside it, and tensors written under the real names by hand (not by our class)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    raw = json.loads((real_config_dir(shared) / "config.json").read_text())
    config = shrink(raw, layers=2, width=64, heads=4)
    config["auto_map"] = raw["auto_map"]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for module in ("configuration_gpt_refact.py", "modeling_gpt_refact.py"):
        (folder / module).write_text(REMOTE_CODE)
    tokenizer = shared / "tokenizers" / "refact-1_6b-fim"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, folder / name)
    vocab, width, kv, ff = 49216, 64, 2 * 16, 256
    shapes = {"transformer.wte.weight": (vocab, width), "ln_f.weight": (width,),
              "lm_head.weight": (vocab, width)}
    for n in range(2):
        p = f"transformer.h.{n}."
        shapes |= {p + "ln_1.weight": (width,), p + "attn.q.weight": (width, width),
                   p + "attn.kv.weight": (kv, width), p + "attn.c_proj.weight": (width, width),
                   p + "ln_2.weight": (width,), p + "mlp.gate_up_proj.weight": (2 * ff, width),
                   p + "mlp.c_proj.weight": (width, ff)}
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: 0.1 * torch.randn(shape, generator=generator)
               for name, shape in shapes.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def test_from_pretrained_loads_the_real_names_and_runs_no_remote_code(
        tmp_path: Path, shared: Path) -> None:
    folder = tmp_path / "refact"
    tensors = write_checkpoint(folder, shared)

    config = AutoConfig.from_pretrained(folder)
    assert type(config) is GPTRefactConfig and config.auto_map  # read, never followed
    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                       output_loading_info=True)
    assert type(model) is GPTRefactForCausalLM
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    state = model.state_dict()
    assert set(state) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(state[name], tensor), name
    assert not torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])

    engine_model, _ = load_model(resolve_model(str(folder)),
                                 Settings(device="cpu", quantization="none"))
    assert type(engine_model) is GPTRefactForCausalLM
    assert torch.equal(engine_model.lm_head.weight, tensors["lm_head.weight"])
    assert not (folder / "REMOTE_CODE_RAN").exists()


# -- the engine suite -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Tiny:
    """Refact-1_6B-fim's real config shrunk to 2 × 64 (4 heads), the real Refact tokenizer."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-refact"), "Refact-1_6B-fim",
                              shared=shared)
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", quantization="none"),
                              lean=False)  # the reference path
    assert type(engine.model) is GPTRefactForCausalLM
    assert next(engine.model.parameters()).dtype == torch.float32
    return Tiny("gpt_refact", spec, load_tokenizer(str(folder)), engine)
