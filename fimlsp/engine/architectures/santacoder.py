"""The original bigcode/santacoder checkpoint, converted on load to transformers' GPTBigCode.

That checkpoint predates GPTBigCode: its config says `model_type` "gpt2" with an `auto_map` into
custom modeling code (`modeling_gpt2_mq.py`), and its weights are GPT-2 `Conv1D`s, stored
[in, out], with the query and the one shared key/value head in separate `q_attn` / `kv_attn`.
GPTBigCode (multi_query=True) is the same network with `nn.Linear` weights, stored [out, in],
and one fused `c_attn` whose rows are q | k | v (FACTS.md §2b). So we convert the tensors and the
config and build a `GPTBigCodeForCausalLM`; the custom code is never imported, and the weights are
read with `weights_only=True` (no pickle code runs either).

`bigcode/gpt_bigcode-santacoder` is the same model already converted; prefer it where you can.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fimlsp import hub
from fimlsp.errors import ErrorKind, FimError

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# tanh-approximate GELU under its GPT-2 names; GPTBigCode's fused spelling of the same function.
_ACTIVATIONS = {"gelu_fast": "gelu_pytorch_tanh", "gelu_new": "gelu_pytorch_tanh"}
_GPT2_BUFFERS = ("attn.bias", "attn.masked_bias")  # causal-mask buffers old GPT-2 code saved


def is_original_santacoder(config: dict[str, Any]) -> bool:
    """The custom-code SantaCoder layout: GPT-2 naming plus `attention_head_type` / gpt2_mq code."""
    if config.get("model_type") not in ("gpt2", "santacoder"):
        return False
    code = " ".join(str(ref) for ref in (config.get("auto_map") or {}).values())
    return "attention_head_type" in config or "gpt2_mq" in code


def convert_config(original: dict[str, Any]) -> Any:
    """The original config.json → a `GPTBigCodeConfig` of the same network."""
    from transformers import GPTBigCodeConfig

    head_type = original.get("attention_head_type", "multiquery")
    if head_type != "multiquery":
        raise FimError(ErrorKind.UNSUPPORTED, f"SantaCoder checkpoints with attention_head_type "
                       f"'{head_type}' are not supported; only 'multiquery' (bigcode/santacoder)")
    if original.get("scale_attn_by_inverse_layer_idx") or original.get("add_cross_attention"):
        raise FimError(ErrorKind.UNSUPPORTED, "this SantaCoder variant scales attention by layer "
                       "index or has cross-attention, which GPTBigCode does not implement")
    activation = original.get("activation_function", "gelu_pytorch_tanh")
    return GPTBigCodeConfig(
        vocab_size=original["vocab_size"],
        n_positions=original["n_positions"],
        n_embd=original["n_embd"],
        n_layer=original["n_layer"],
        n_head=original["n_head"],
        n_inner=original.get("n_inner"),
        activation_function=_ACTIVATIONS.get(activation, activation),
        layer_norm_epsilon=original.get("layer_norm_epsilon", 1e-5),
        initializer_range=original.get("initializer_range", 0.02),
        scale_attn_weights=original.get("scale_attn_weights", True),
        resid_pdrop=original.get("resid_pdrop", 0.1),
        embd_pdrop=original.get("embd_pdrop", 0.1),
        attn_pdrop=original.get("attn_pdrop", 0.1),
        bos_token_id=original.get("bos_token_id"),
        eos_token_id=original.get("eos_token_id"),
        use_cache=original.get("use_cache", True),
        multi_query=True,
        attention_softmax_in_fp32=True,
        scale_attention_softmax_in_fp32=True,
        tie_word_embeddings=original.get("tie_word_embeddings", True),
        architectures=["GPTBigCodeForCausalLM"],
    )


def convert_state_dict(original: dict[str, torch.Tensor], n_layer: int,
                       tied: bool = True) -> dict[str, torch.Tensor]:
    """Original tensor names and layouts → GPTBigCode's. Every tensor must be used: an unknown
    or missing name is an error, not a silently random weight."""
    left = dict(original)
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        try:
            return left.pop(name)
        except KeyError:
            raise FimError(ErrorKind.MODEL_UNAVAILABLE, f"the SantaCoder checkpoint has no "
                           f"tensor '{name}'; it is not the original SantaCoder layout") from None

    for name in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
        out[f"transformer.{name}"] = take(f"transformer.{name}")
    for i in range(n_layer):
        layer = f"transformer.h.{i}."
        for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"):
            out[layer + name] = take(layer + name)
        q = take(layer + "attn.q_attn.weight")  # [E, E] Conv1D: [in, out]
        kv = take(layer + "attn.kv_attn.weight")  # [E, 2D]: output columns K | V
        out[layer + "attn.c_attn.weight"] = torch.cat([q, kv], dim=1).t().contiguous()  # [E+2D, E]
        out[layer + "attn.c_attn.bias"] = torch.cat(
            [take(layer + "attn.q_attn.bias"), take(layer + "attn.kv_attn.bias")])  # [E+2D]
        for conv in ("attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            out[f"{layer}{conv}.weight"] = take(f"{layer}{conv}.weight").t().contiguous()
            out[f"{layer}{conv}.bias"] = take(f"{layer}{conv}.bias")
        for buffer in _GPT2_BUFFERS:
            left.pop(layer + buffer, None)
    if tied:  # the original ties too: its lm_head is wte whatever the file holds
        left.pop("lm_head.weight", None)
    else:
        out["lm_head.weight"] = take("lm_head.weight")
    if left:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE, "the SantaCoder checkpoint has tensors the "
                       f"original layout does not: {', '.join(sorted(left)[:5])}")
    return out


def load_original_santacoder(source: str, **from_pretrained: Any) -> torch.nn.Module:
    """A `GPTBigCodeForCausalLM` from the original checkpoint in a local dir or a hub id.

    `from_pretrained` kwargs (dtype, quantization_config, device_map) pass through to
    `GPTBigCodeForCausalLM.from_pretrained`, which gets the converted state dict.
    """
    from transformers import GPTBigCodeForCausalLM

    allow_download = not from_pretrained.pop("local_files_only", True)
    original = json.loads(_fetch(source, CONFIG_FILE, allow_download).read_text(encoding="utf-8"))
    config = convert_config(original)
    state = convert_state_dict(read_weights(source, allow_download), config.n_layer,
                               config.tie_word_embeddings)
    from_pretrained.pop("trust_remote_code", None)
    model, info = GPTBigCodeForCausalLM.from_pretrained(
        None, config=config, state_dict=state, output_loading_info=True, **from_pretrained)
    wrong = [f"{kind} {', '.join(info[kind][:5])}"
             for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)]
    if wrong:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"converting the SantaCoder checkpoint left {'; '.join(wrong)}")
    return model


def read_weights(source: str, allow_download: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint (safetensors or torch zip, one file or sharded)."""
    path = _fetch_weights(source, allow_download)
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        files = [_fetch(source, shard, allow_download) for shard in shards]
    else:
        files = [path]
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(_read_file(file))
    return tensors


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _fetch_weights(source: str, allow_download: bool) -> Path:
    for name in WEIGHT_FILES:
        try:
            return _fetch(source, name, allow_download)
        except FileNotFoundError:
            continue
    raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                   f"no weights ({', '.join(WEIGHT_FILES)}) found for '{source}'")


def _fetch(source: str, name: str, allow_download: bool = False) -> Path:
    """A file of a local dir or a hub repo (the HF cache; the hub only if downloads are on);
    FileNotFoundError if absent."""
    local = Path(source).expanduser()
    if local.is_dir():
        path = local / name
        if not path.is_file():
            raise FileNotFoundError(path)
        return path
    return hub.fetch(source, name, allow_download)
