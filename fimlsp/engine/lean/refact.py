"""The lean forward of GPT-Refact (Refact-1.6B): multi-query attention with ALiBi, SwiGLU,
LayerNorm without bias. The model itself (its modules, weights, registration with transformers)
is `fimlsp.engine.architectures.refact`; this runs over what that built."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fimlsp.engine.architectures import refact
from fimlsp.engine.lean.cache import StaticKV
from fimlsp.engine.lean.common import LeanModel, Step


class LeanRefact(LeanModel):
    """Forward over the modules of a loaded `GPTRefactForCausalLM`
    (engine/architectures/refact.py), whose ALiBi attention (`refact.attend`) it calls as it is:
    what changes is the cache (written in place, no `DynamicCache.update`) and everything around
    it (no batch, no padding mask).

    The bias needs only the distances i - j of this forward's queries to the cached keys,
    [T, S] fp32, shared by every layer; each head's `-slope · distance` is added into the
    scores in place. (The reference once built the biases for all heads per prefill chunk:
    134 MB for 256 tokens at 4096 context.)
    """

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return bool(model.config.multi_query)

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        body = model.transformer
        self.wte, self.ln_f, self.lm_head = body.wte, model.ln_f, model.lm_head
        self.blocks = list(body.h)
        first = self.blocks[0].attn
        self.heads = config.n_head
        self.layers, self.kv_heads = len(self.blocks), 1
        self.head_dim = first.head_dim
        self.scale, self.upcast = first.scale, first.upcast
        self.device = self.wte.weight.device
        self.dtype = self.wte.weight.dtype
        self.slopes = refact.alibi_slopes(self.heads).to(self.device)  # [H] fp32
        self.positions_limit = config.n_positions

    def run(self, step: Step, kv: StaticKV) -> torch.Tensor:
        keys = torch.arange(step.end, device=self.device)  # [S]
        distance = step.positions[:, None] - keys[None, :]  # [T, S]: i - j
        hidden = (distance < 0)[None, None] if step.count > 1 else None  # [1, 1, T, S]
        alibi = (self.slopes, distance.float()[None, None], hidden)  # [H], [1, 1, T, S] ×2
        x = self.wte(step.input_ids)  # [T, E]
        for layer, block in enumerate(self.blocks):
            x = x + self.attention(layer, block.attn, block.ln_1(x), kv, step, alibi)  # [T, E]
            mlp = block.mlp
            gate, up = mlp.gate_up_proj(block.ln_2(x)).chunk(2, dim=-1)  # [T, F] each
            x = x + mlp.c_proj(F.silu(gate) * up)  # [T, E]
        return x

    def attention(self, layer: int, attn: nn.Module, x: torch.Tensor, kv: StaticKV, step: Step,
                  alibi: refact.Alibi) -> torch.Tensor:
        count, heads, dim = step.count, self.heads, self.head_dim
        q = attn.q(x).view(count, heads, dim).transpose(0, 1)  # [H, T, D]
        k, v = attn.kv(x).split(dim, dim=-1)  # [T, D] each: the one shared head
        kv.append(layer, k[:, None], v[:, None], step.start)
        keys = kv.keys[layer, :, : step.end]  # [1, S, D]
        values = kv.values[layer, :, : step.end]  # [1, S, D]
        y = refact.attend(q[None], keys[None], values[None], *alibi, self.scale,
                          self.upcast)  # [1, H, T, D]
        return attn.c_proj(y[0].transpose(0, 1).reshape(count, heads * dim))  # [T, E]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.ln_f(x))  # [T, V]
