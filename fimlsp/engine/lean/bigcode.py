"""GPTBigCode (StarCoder, SantaCoder, TinyStarCoder): multi-query attention, learned positions."""

from __future__ import annotations

import torch
from torch import nn

from fimlsp.engine.lean.cache import StaticKV
from fimlsp.engine.lean.common import LeanModel, Step, attend


class LeanBigCode(LeanModel):
    """GPTBigCode (multi-query) forward over the modules of a loaded `GPTBigCodeForCausalLM`.

    The arithmetic is transformers' (pre-LN blocks, learned positions, tanh-GELU MLP, tied or
    untied head); what is left out is what inference never needs there: dropout, cross-attention,
    masks built for batches and padding, output records, cache objects.
    """

    @staticmethod
    def supports(model: nn.Module) -> bool:
        config = model.config
        return bool(getattr(config, "multi_query", False)) \
            and not getattr(config, "add_cross_attention", False)

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        body = model.transformer
        self.wte, self.wpe, self.ln_f = body.wte, body.wpe, body.ln_f
        self.blocks = list(body.h)
        self.lm_head = model.lm_head
        self.heads = config.num_attention_heads
        self.width = config.hidden_size
        self.layers, self.kv_heads = len(self.blocks), 1
        self.head_dim = self.width // self.heads
        self.scale = self.blocks[0].attn.scaling  # head_dim ** -0.5 unless scale_attn_weights off
        self.positions_limit = self.wpe.num_embeddings  # learned positions: no sequence is longer
        self.device = self.wte.weight.device
        self.dtype = self.wte.weight.dtype

    def run(self, step: Step, kv: StaticKV) -> torch.Tensor:
        x = self.wte(step.input_ids) + self.wpe(step.positions)  # [T, E]
        for layer, block in enumerate(self.blocks):
            x = x + self.attention(layer, block.attn, block.ln_1(x), kv, step)  # [T, E]
            mlp = block.mlp
            x = x + mlp.c_proj(mlp.act(mlp.c_fc(block.ln_2(x))))  # [T, E]
        return x

    def attention(self, layer: int, attn: nn.Module, x: torch.Tensor, kv: StaticKV,
                  step: Step) -> torch.Tensor:
        dim = self.head_dim
        qkv = attn.c_attn(x)  # [T, E + 2D]: rows q | k | v
        q, k, v = qkv.split((self.width, dim, dim), dim=-1)  # [T, E], [T, D], [T, D]
        q = q.view(step.count, self.heads, dim)  # [T, H, D]
        y = attend(q, k[:, None], v[:, None], kv, layer, step, self.scale)  # [T, E]
        return attn.c_proj(y)  # [T, E]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.ln_f(x))  # [T, V]
