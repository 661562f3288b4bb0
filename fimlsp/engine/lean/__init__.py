"""The lean path: a preallocated KV cache and our own forward over a loaded model's weights.

Why: transformers' forward is general (any cache class, masks built per call, output records,
deprecation wrappers), and its `DynamicCache` appends with `torch.cat`, copying every layer's
keys and values on every step — ~10 % of a keystroke at 2k context in issue 11's profile, and
growing with it. So, as gpt-fast does, we run the network ourselves on the modules of the model
that `load_model` built (`common.py` says how), with `StaticKV` (`cache.py`) as the cache.
Measured: docs/benchmarks.md.

One module per family: `bigcode` (StarCoder, SantaCoder, TinyStarCoder), `neox` (FIM-NeoX),
`llama` (DeepSeek-Coder, Qwen2.5-Coder), `starcoder2`, `refact` — every architecture the presets
name. `lean_for` answers None for any other model, which then runs transformers' forward and its
`DynamicCache`; transformers' forward stays the reference the tests compare against.
Set FIMLSP_LEAN=0 to force the reference path everywhere (tests, benchmarks, a suspected bug).

Not model definitions: an architecture transformers lacks is defined in
`fimlsp.engine.architectures` (the reference); `lean/refact.py` is our forward over it.
"""

from __future__ import annotations

import os

from torch import nn

from fimlsp.engine.lean.cache import GROW_TO, StaticKV
from fimlsp.engine.lean.common import LeanModel

__all__ = ["FAMILIES", "GROW_TO", "LeanModel", "StaticKV", "lean_enabled", "lean_for"]

# The transformers class of a loaded model → "module:class" of its lean forward (imported when
# first asked for: the refact module imports `engine.architectures.refact`, which registers a
# model class with transformers on import).
FAMILIES = {
    "GPTBigCodeForCausalLM": "bigcode:LeanBigCode",
    "GPTNeoXForCausalLM": "neox:LeanNeoX",
    "LlamaForCausalLM": "llama:LeanLlama",
    "Qwen2ForCausalLM": "llama:LeanLlama",
    "Starcoder2ForCausalLM": "starcoder2:LeanStarcoder2",
    "GPTRefactForCausalLM": "refact:LeanRefact",
}


def lean_enabled() -> bool:
    """False when FIMLSP_LEAN is 0/false/no/off: everything on transformers' forward."""
    return os.environ.get("FIMLSP_LEAN", "1").strip().lower() not in ("0", "false", "no", "off")


def lean_for(model: nn.Module) -> LeanModel | None:
    """The lean forward for this model, or None where it has none (the reference path runs)."""
    import importlib

    if getattr(model, "config", None) is None or not lean_enabled():
        return None
    where = FAMILIES.get(type(model).__name__)
    if where is None:
        return None
    module, name = where.split(":")
    family = getattr(importlib.import_module(f"fimlsp.engine.lean.{module}"), name)
    return family(model) if family.supports(model) else None
