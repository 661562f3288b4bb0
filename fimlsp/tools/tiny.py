"""Tiny random-weight models built from real configs and real tokenizers.

No model hub is reachable where fimlsp is developed and tested, so tests, the demo and the
benchmarks build checkpoints locally: the real architecture (config.json of the real model, shrunk)
and the real tokenizer, with random weights. Everything about serving them is real — loading with
`from_pretrained`, prompting, caching, timings — only the text they produce is meaningless.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# Which real tokenizer goes with which real config (folder names in shared/).
TOKENIZER_FOR = {
    "tiny_starcoder_py": "starcoder",
    "starcoderbase-1b": "starcoder",
    "starcoder": "starcoder",
    "gpt_bigcode-santacoder": "santacoder",
    "FIM-NeoX-1.3B": "fim-neox-1.3b",
    "Refact-1_6B-fim": "refact-1_6b-fim",
}


def shared_dir() -> Path | None:
    """The shared/ folder with real configs and tokenizers ($FIMLSP_SHARED, beside the repository,
    or made from the Hugging Face cache: `fimlsp.tools.fixtures`), or None."""
    from fimlsp.tools.fixtures import find

    return find().path


def shrink(config: dict, layers: int = 2, width: int = 64, heads: int = 4) -> dict:
    """The same architecture with fewer, narrower layers (vocab and positions kept real)."""
    config = dict(config)
    for key in ("n_layer", "num_hidden_layers"):
        if key in config:
            config[key] = layers
    for key in ("n_embd", "hidden_size"):
        if key in config:
            config[key] = width
    for key in ("n_head", "num_attention_heads"):
        if key in config:
            config[key] = heads
    for key in ("n_inner", "intermediate_size"):
        if key in config:
            config[key] = 4 * width
    config.pop("auto_map", None)
    config.pop("_name_or_path", None)
    return config


def build_tiny_model(out_dir: Path, config_name: str = "tiny_starcoder_py", *, seed: int = 0,
                     layers: int = 2, width: int = 64, heads: int = 4,
                     shared: Path | None = None) -> Path:
    """Writes config.json, model.safetensors and the tokenizer files into `out_dir`.

    Rebuilding is skipped when `out_dir` already holds a model built with the same arguments.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    import fimlsp.engine.architectures.refact  # noqa: F401  (registers gpt_refact, which transformers lacks)

    hf_logging.disable_progress_bar()

    if shared is None:
        from fimlsp.tools.fixtures import find

        found = find()
        if found.path is None:
            raise FileNotFoundError(found.reason())
        shared = found.path
    out_dir = Path(out_dir)
    stamp = json.dumps({"config": config_name, "seed": seed, "layers": layers, "width": width,
                        "heads": heads})
    marker = out_dir / "fimlsp-tiny.json"
    if marker.is_file() and marker.read_text() == stamp:
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = json.loads((shared / "model-configs" / config_name / "config.json").read_text())
    config = AutoConfig.for_model(**shrink(raw, layers, width, heads))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer_dir = shared / "tokenizers" / TOKENIZER_FOR[config_name]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out_dir / name)
    marker.write_text(stamp)
    return out_dir


def default_tiny_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "fimlsp" / "tiny-starcoder-random"


TRAINED = "tiny-fim-starcoder"  # shared/models/<this>: a small FIM model trained for demos


def trained_model_dir(shared: Path | None = None) -> Path | None:
    """The small trained fixture model (shared/models/tiny-fim-starcoder), when it is there:
    its text is a trained model's, unlike the random models above, and the same everywhere."""
    shared = shared or shared_dir()
    if shared is None:
        return None
    path = shared / "models" / TRAINED
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file() and any(
            (path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        return path
    return None
