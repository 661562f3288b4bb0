"""The original SantaCoder checkpoint (GPT-2 Conv1D weights, separate `q_attn` / `kv_attn`,
custom code in its `auto_map`) converted on load to transformers' GPTBigCode.

- a hand-written forward of the *original* layout (Conv1D: `x @ W + b` with W [in, out]; the key
  and value are the first and second half of `kv_attn`'s output; float64) agrees with the converted
  model to 1e-5: a transposed or mis-split weight would not (q_attn and c_proj are square, so
  shapes alone would not catch it);
- the converted config equals the published gpt_bigcode-santacoder config on every architecture
  field, and the full-size tensor names and shapes convert to exactly GPTBigCode's;
- `load_model` routes the checkpoint to the converter without running its custom code, and still
  refuses other custom-code checkpoints;
- the engine suite of test_engine.py (cached == uncached, crops, cancels) on the converted model.
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
    test_chunked_prefill_equals_one_shot,
    test_extend_crop_and_diverge,
    test_fresh_session,
    test_identical_prompt_again_reuses_all_but_one,
    test_request_after_a_cancelled_prefill,
    test_stop_id_later_in_the_answer,
    test_stop_id_stops_before_the_token,
    test_superseded_while_decoding,
)
from test_engine_archs import test_wrong_positions_after_a_crop_would_be_caught  # noqa: F401
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from fimlsp.config import Settings
from fimlsp.engine.architectures.santacoder import (
    convert_config,
    convert_state_dict,
    is_original_santacoder,
)
from fimlsp.engine.checkpoint import load_model
from fimlsp.engine.local import LocalEngine
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import load_tokenizer, resolve_model
from fimlsp.tools.tiny import shrink

REFERENCE_ATOL = 1e-5  # fp32 converted model against a float64 hand computation
LAYERS, WIDTH, HEADS = 2, 64, 4
REMOTE_CODE = """import pathlib
pathlib.Path(__file__).with_name("REMOTE_CODE_RAN").write_text(__name__)
raise RuntimeError("remote code ran")
"""


def real_config(shared: Path, name: str = "santacoder") -> dict:
    return json.loads((shared / "model-configs" / name / "config.json").read_text())


def original_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The original checkpoint's tensors (FACTS.md §2b): Conv1D weights are [in, out]."""
    width, inner = config["n_embd"], config["n_inner"]
    kv = 2 * width // config["n_head"]  # one key head and one value head
    shapes = {"transformer.wte.weight": (config["vocab_size"], width),
              "transformer.wpe.weight": (config["n_positions"], width),
              "transformer.ln_f.weight": (width,), "transformer.ln_f.bias": (width,)}
    for n in range(config["n_layer"]):
        p = f"transformer.h.{n}."
        shapes |= {
            p + "ln_1.weight": (width,), p + "ln_1.bias": (width,),
            p + "attn.q_attn.weight": (width, width), p + "attn.q_attn.bias": (width,),
            p + "attn.kv_attn.weight": (width, kv), p + "attn.kv_attn.bias": (kv,),
            p + "attn.c_proj.weight": (width, width), p + "attn.c_proj.bias": (width,),
            p + "ln_2.weight": (width,), p + "ln_2.bias": (width,),
            p + "mlp.c_fc.weight": (width, inner), p + "mlp.c_fc.bias": (inner,),
            p + "mlp.c_proj.weight": (inner, width), p + "mlp.c_proj.bias": (width,),
        }
    return shapes


def write_original(folder: Path, shared: Path, fmt: str = "bin", seed: int = 0,
                   scale: float = 0.2) -> dict[str, torch.Tensor]:
    """A tiny checkpoint as bigcode/santacoder ships it: the real config.json shrunk (model_type
    gpt2, auto_map kept), its custom code beside it, tensors under the original names."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = real_config(shared)
    config = shrink(raw, layers=LAYERS, width=WIDTH, heads=HEADS)
    config["auto_map"] = raw["auto_map"]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for module in ("configuration_gpt2_mq.py", "modeling_gpt2_mq.py"):
        (folder / module).write_text(REMOTE_CODE)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(shared / "tokenizers" / "santacoder" / name, folder / name)

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in original_shapes(config).items():
        noise = torch.randn(shape, generator=generator)
        norm_weight = name.split(".")[-2].startswith("ln_") and name.endswith(".weight")
        tensors[name] = 1 + scale * noise if norm_weight else scale * noise
    state = dict(tensors)
    positions = config["n_positions"]
    for n in range(LAYERS):  # what old GPT-2 code saved beside the weights
        state[f"transformer.h.{n}.attn.bias"] = torch.tril(
            torch.ones(positions, positions, dtype=torch.bool))[None, None]
        state[f"transformer.h.{n}.attn.masked_bias"] = torch.tensor(-1e4)
    state["lm_head.weight"] = tensors["transformer.wte.weight"].clone()  # tied in the model
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's `gelu_fast`, the activation the original config names."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def reference_logits(tensors: dict[str, torch.Tensor], ids: list[int],
                     transpose_q: bool = False) -> torch.Tensor:
    """The original architecture from its own tensors, in float64: [T, vocab]."""
    sd = {name: tensor.double() for name, tensor in tensors.items()}
    heads, length = HEADS, len(ids)
    dim = WIDTH // heads

    def conv1d(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ sd[name + ".weight"] + sd[name + ".bias"]  # weight [in, out]

    future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    x = sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][:length]  # [T, E]
    for n in range(LAYERS):
        p = f"transformer.h.{n}."
        a = layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        if transpose_q:  # the bug a converter could have: what the sensitivity check uses
            q = a @ sd[p + "attn.q_attn.weight"].T + sd[p + "attn.q_attn.bias"]
        else:
            q = conv1d(a, p + "attn.q_attn")  # [T, E]
        kv = conv1d(a, p + "attn.kv_attn")  # [T, 2D]
        k, v = kv[:, :dim], kv[:, dim:]
        outs = []
        for h in range(heads):
            scores = q[:, h * dim:(h + 1) * dim] @ k.T / math.sqrt(dim)  # [T, T]
            outs.append(torch.softmax(scores.masked_fill(future, -math.inf), dim=-1) @ v)
        x = x + conv1d(torch.cat(outs, dim=1), p + "attn.c_proj")
        m = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        x = x + conv1d(gelu_fast(conv1d(m, p + "mlp.c_fc")), p + "mlp.c_proj")
    x = layer_norm(x, sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"])
    return x @ sd["transformer.wte.weight"].T  # tied head


# -- recognising the checkpoint -------------------------------------------------------------


def test_recognises_the_original_and_nothing_else(shared: Path) -> None:
    assert is_original_santacoder(real_config(shared))
    assert is_original_santacoder({**real_config(shared), "model_type": "santacoder"})  # PR #23
    assert not is_original_santacoder(real_config(shared, "gpt_bigcode-santacoder"))
    assert not is_original_santacoder({"model_type": "gpt2", "n_embd": 768})  # plain GPT-2
    assert not is_original_santacoder({"model_type": "gpt2", "auto_map": {
        "AutoModelForCausalLM": "modeling_other.OtherModel"}})


def test_converted_config_is_the_published_gpt_bigcode_santacoder(shared: Path) -> None:
    """bigcode converted this very checkpoint themselves: our config must say what theirs says."""
    ours = convert_config(real_config(shared))
    theirs = GPTBigCodeConfig(**real_config(shared, "gpt_bigcode-santacoder"))
    fields = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
              "activation_function", "layer_norm_epsilon", "scale_attn_weights", "multi_query",
              "attention_softmax_in_fp32", "scale_attention_softmax_in_fp32", "bos_token_id",
              "eos_token_id", "tie_word_embeddings")
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}


def test_full_size_tensors_convert_to_gpt_bigcode_names_and_shapes(shared: Path) -> None:
    raw = real_config(shared)
    shapes = original_shapes(raw)
    assert shapes["transformer.h.0.attn.kv_attn.weight"] == (2048, 256)  # FACTS.md §2b
    original = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    converted = convert_state_dict(original, raw["n_layer"])
    config = GPTBigCodeConfig(**real_config(shared, "gpt_bigcode-santacoder"))
    with torch.device("meta"):
        model = GPTBigCodeForCausalLM(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()
                if name != "lm_head.weight"}  # tied to wte: not in a checkpoint
    assert {name: tuple(t.shape) for name, t in converted.items()} == expected
    assert converted["transformer.h.0.attn.c_attn.weight"].shape == (2304, 2048)


# -- the hand-computed reference ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_converted_model_equals_the_original_architecture(tmp_path: Path, shared: Path,
                                                          fmt: str) -> None:
    folder = tmp_path / "santacoder"
    tensors = write_original(folder, shared, fmt)
    model, _ = load_model(resolve_model(str(folder)), Settings(device="cpu", quantization="none"))
    assert type(model) is GPTBigCodeForCausalLM and model.config.multi_query
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert not (folder / "REMOTE_CODE_RAN").exists()

    ids = torch.randint(0, 49280, (17,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]  # [T, V]
    reference = reference_logits(tensors, ids)
    torch.testing.assert_close(logits.double(), reference, atol=REFERENCE_ATOL, rtol=0)
    # Sharp enough to see a transposed square weight.
    assert (reference_logits(tensors, ids, transpose_q=True) - reference).abs().max() > 1e-2


def test_conversion_refuses_a_different_layout(shared: Path) -> None:
    raw = shrink(real_config(shared), layers=1, width=WIDTH, heads=HEADS)
    original = {name: torch.zeros(shape) for name, shape in original_shapes(raw).items()}
    convert_state_dict(original, 1)  # complete: fine

    missing = {k: v for k, v in original.items() if "kv_attn.weight" not in k}
    with pytest.raises(FimError, match=r"kv_attn\.weight"):
        convert_state_dict(missing, 1)
    extra = {**original, "transformer.h.0.attn.c_attn.weight": torch.zeros(96, 64)}
    with pytest.raises(FimError, match=r"c_attn\.weight"):
        convert_state_dict(extra, 1)
    with pytest.raises(FimError) as error:
        convert_config({**raw, "attention_head_type": "multihead"})
    assert error.value.kind is ErrorKind.UNSUPPORTED


@pytest.mark.parametrize("config", [
    {"model_type": "llama", "auto_map": {"AutoModelForCausalLM": "modeling_x.X"}},
    {"model_type": "gpt2", "auto_map": {"AutoModelForCausalLM": "modeling_x.X"}},
], ids=["llama-custom", "gpt2-custom"])
def test_other_custom_code_is_still_refused(tmp_path: Path, shared: Path, config: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "modeling_x.py").write_text(REMOTE_CODE)
    shutil.copy(shared / "tokenizers" / "starcoder" / "tokenizer.json", tmp_path)
    with pytest.raises(FimError, match="never runs remote code") as error:
        load_model(resolve_model(str(tmp_path)), Settings(device="cpu", quantization="none"))
    assert error.value.kind is ErrorKind.UNSUPPORTED
    assert not (tmp_path / "REMOTE_CODE_RAN").exists()


# -- the engine suite -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Tiny:
    """An original-format SantaCoder (real config shrunk to 2 × 64), converted by load_model."""
    folder = tmp_path_factory.mktemp("tiny-santacoder")
    write_original(folder, shared, scale=0.05)
    spec = resolve_model(str(folder))
    engine = LocalEngine.load(spec, Settings(device="cpu", quantization="none"))
    assert type(engine.model) is GPTBigCodeForCausalLM
    assert spec.template.name == "santacoder"
    return Tiny("santacoder", spec, load_tokenizer(str(folder)), engine)
