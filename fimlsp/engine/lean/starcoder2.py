"""StarCoder2: Llama's block layout with LayerNorm, biases, a GELU MLP, and a sliding window on
every layer."""

from __future__ import annotations

import torch
from torch import nn

from fimlsp.engine.lean.llama import LeanLlama


class LeanStarcoder2(LeanLlama):
    """Forward over the modules of a loaded `Starcoder2ForCausalLM`: `LeanLlama`'s steps (the
    norms are LayerNorm modules, the biases live in the Linear modules), with
    `mlp(x) = c_proj(act(c_fc(x)))`.

    `config.sliding_window` (4096 in the 3B/7B/15B releases, against a 16k window) applies to
    every layer: a query at position i sees keys i - w < j ≤ i. The cache keeps every position
    anyway (a crop may go back past the window), but attention reads only the window, so a long
    prompt costs the window per token, not the context.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.windows = [getattr(model.config, "sliding_window", None)] * self.layers

    @staticmethod
    def mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return mlp.c_proj(mlp.act(mlp.c_fc(x)))  # [T, E]
