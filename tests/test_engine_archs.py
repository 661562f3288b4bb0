"""The engine suite of test_engine.py (cached and incremental decoding == a from-scratch forward
over the whole sequence, logits within 1e-4, greedy tokens equal) on the RoPE architectures that
have no shared config: llama (DeepSeek-Coder), qwen2 (Qwen2.5-Coder) and starcoder2.

The test functions are imported from test_engine.py, so pytest runs each of them here again with
this module's `tiny` fixture. Their configs are the real models' architectures, shrunk:

- llama: DeepSeek-Coder-1.3B-base (full multi-head attention, RoPE θ 1e5 with linear scaling ×4,
  RMSNorm, SwiGLU, untied head);
- qwen2: Qwen2.5-Coder-1.5B (grouped-query attention 6:1 with q/k/v biases, RoPE θ 1e6, tied head,
  sliding window off as in the release);
- starcoder2: StarCoder2-3B (grouped-query attention, RoPE θ ≈ 1e6, LayerNorm and linear biases,
  GELU MLP, sliding window 4096: longer than these prompts).

test_refact.py and test_santacoder.py import the same functions for the two custom-code models.
These run transformers' forward and its `DynamicCache` (`lean=False`); test_engine_lean.py runs
the suite on the lean path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_engine import (  # noqa: F401  (collected again here, with this module's `tiny`)
    ATOL,
    Tiny,
    checked,
    reference_logits,
    test_a_forward_that_takes_only_past_key_values_still_gets_the_cache,
    test_chunked_prefill_equals_one_shot,
    test_extend_crop_and_diverge,
    test_fresh_session,
    test_generation_uses_no_deprecated_keyword,
    test_identical_prompt_again_reuses_all_but_one,
    test_request_after_a_cancelled_prefill,
    test_speculation_is_exact,
    test_stop_id_later_in_the_answer,
    test_stop_id_stops_before_the_token,
    test_superseded_while_decoding,
)

from fimlsp.config import Settings
from fimlsp.engine.checkpoint import cache_kwarg
from fimlsp.engine.local import LocalEngine
from fimlsp.models import load_tokenizer, resolve_model

ENGINE_SUITE = (
    "test_chunked_prefill_equals_one_shot", "test_extend_crop_and_diverge", "test_fresh_session",
    "test_identical_prompt_again_reuses_all_but_one", "test_request_after_a_cancelled_prefill",
    "test_speculation_is_exact",
    "test_stop_id_later_in_the_answer", "test_stop_id_stops_before_the_token",
    "test_superseded_while_decoding",
)

# (shrunk config, tokenizer folder in shared/tokenizers, FIM template the tokenizer implies)
ARCHS: dict[str, tuple[dict, str, str]] = {
    "llama": ({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": 32256, "hidden_size": 64, "intermediate_size": 172,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "hidden_act": "silu", "max_position_embeddings": 16384, "rms_norm_eps": 1e-6,
        "rope_theta": 100000, "rope_scaling": {"type": "linear", "factor": 4.0},
        "attention_bias": False, "tie_word_embeddings": False,
        "bos_token_id": 32013, "eos_token_id": 32014,
    }, "deepseek-coder", "deepseek-coder"),
    "qwen2": ({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
        "vocab_size": 151936, "hidden_size": 96, "intermediate_size": 224,
        "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 1,
        "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": 32768,
        "max_window_layers": 2, "tie_word_embeddings": True,
        "bos_token_id": 151643, "eos_token_id": 151643,
    }, "qwen2.5-coder", "qwen2.5-coder"),
    "starcoder2": ({
        "model_type": "starcoder2", "architectures": ["Starcoder2ForCausalLM"],
        "vocab_size": 49152, "hidden_size": 64, "intermediate_size": 256,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 16384, "norm_epsilon": 1e-5,
        "rope_theta": 999999.4420358813, "use_bias": True, "sliding_window": 4096,
        "bos_token_id": 0, "eos_token_id": 0,
    }, "starcoder2", "starcoder2"),
}


def build_arch_model(out_dir: Path, arch: str, shared: Path, seed: int = 0,
                     **overrides: object) -> Path:
    """config.json, random weights (seeded) and the real tokenizer, like fimlsp.tools.tiny does."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config, tokenizer, _ = ARCHS[arch]
    # Random weights at the usual 0.02 are so small against the (tied) embedding that qwen2 and
    # starcoder2 answer one token over and over; larger ones give varied greedy answers.
    config = {**config, "initializer_range": 0.1, **overrides}
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    model.save_pretrained(out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        source = shared / "tokenizers" / tokenizer / name
        if source.is_file():
            shutil.copy(source, out_dir / name)
    return out_dir


@pytest.fixture(scope="module", params=list(ARCHS))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         shared: Path) -> Tiny:
    arch = request.param
    folder = build_arch_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, shared)
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", quantization="none"),
                              lean=False)  # the reference path
    assert engine.model.config.model_type == arch
    assert next(engine.model.parameters()).dtype == torch.float32
    assert spec.template.name == ARCHS[arch][2]
    return Tiny(arch, spec, load_tokenizer(str(folder)), engine)


def test_the_suite_is_collected_here() -> None:
    """The imports above are the tests: a renamed one in test_engine.py must not vanish silently."""
    names = set(globals())
    assert all(name in names and callable(globals()[name]) for name in ENGINE_SUITE)


def test_tiny_configs_keep_what_matters_for_caching(tiny: Tiny) -> None:
    """Positions by RoPE with each model's base and scaling; full (not sliding) attention in the
    cache over these prompts; grouped-query attention where the real model has it."""
    config = tiny.engine.model.config
    real, _, _ = ARCHS[tiny.name]
    rope = config.rope_parameters
    assert rope["rope_theta"] == real["rope_theta"]
    if tiny.name == "llama":
        assert rope["rope_type"] == "linear" and rope["factor"] == 4.0
    assert config.num_key_value_heads == real["num_key_value_heads"]
    saved = json.loads((Path(tiny.spec.source) / "config.json").read_text())
    assert saved["model_type"] == tiny.name
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if tiny.name == "starcoder2":  # sliding layers, but the window is far beyond these prompts
        assert config.sliding_window == 4096 > len(tiny.prompt())
    else:
        assert all(type(layer) is DynamicLayer for layer in cache.layers)


def test_wrong_positions_after_a_crop_would_be_caught(tiny: Tiny) -> None:
    """Tokens fed after cached ones must get their absolute positions: with the right
    `position_ids` the extension equals a forward over the whole sequence; with positions
    restarting at 0 it does not (so the suite above can catch that mistake for this model)."""
    from transformers import DynamicCache

    model = tiny.engine.model
    ids = tiny.prompt()
    head, tail = ids[:-5], ids[-5:]
    whole = reference_logits(model, ids)

    def extended(start: int) -> torch.Tensor:
        cache = DynamicCache(config=model.config)
        with_cache = {cache_kwarg(model): cache}
        with torch.inference_mode():
            model(input_ids=torch.tensor([head]), use_cache=True, **with_cache)
            out = model(input_ids=torch.tensor([tail]), use_cache=True, **with_cache,
                        position_ids=torch.arange(start, start + len(tail))[None])
        return out.logits[0, -1].float()

    torch.testing.assert_close(extended(len(head)), whole, atol=ATOL, rtol=0)
    assert (extended(0) - whole).abs().max() > 1e-3


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Tiny:
    """StarCoder2 with its sliding window shrunk below the prompt length (the real 3B model has
    4096 against a 16384 preset window, so real prompts cross it)."""
    folder = build_arch_model(tmp_path_factory.mktemp("tiny-window"), "starcoder2", shared,
                              sliding_window=16)
    spec = resolve_model(str(folder))
    return Tiny("starcoder2", spec, load_tokenizer(str(folder)),
                LocalEngine.load(spec, Settings(device="cpu", quantization="none"), lean=False))


def test_crop_beyond_a_sliding_window(short_window: Tiny) -> None:
    engine = short_window.fresh()
    prompt = short_window.prompt()
    assert len(prompt) > 3 * engine.model.config.sliding_window
    checked(engine, "doc", prompt)
    checked(engine, "doc", prompt + short_window.encode(" r"))  # crops the fed answer, extends
    middle = len(prompt) // 2
    checked(engine, "doc", prompt[:middle] + short_window.encode("x = 1") + prompt[middle:])
