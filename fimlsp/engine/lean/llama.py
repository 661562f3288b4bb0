"""Llama (DeepSeek-Coder) and Qwen2 (Qwen2.5-Coder): RoPE, grouped-query attention, RMSNorm,
SwiGLU; Qwen2 adds biases to q/k/v (inside its Linear modules: nothing to do here) and may
slide a window on some layers."""

from __future__ import annotations

import torch
from torch import nn

from fimlsp.engine.lean.cache import StaticKV
from fimlsp.engine.lean.common import LeanModel, Step, attend, rope, rope_tables


class LeanLlama(LeanModel):
    """Forward over the modules of a loaded `LlamaForCausalLM` or `Qwen2ForCausalLM`.

    transformers' arithmetic: `x + attn(norm(x))`, then `x + mlp(norm(x))`, with
    `mlp(x) = down(act(gate(x)) * up(x))`; the head after a final norm (tied or not: the same
    `lm_head` module either way). A layer whose attention module has a `sliding_window`
    (Qwen2's layers past `max_window_layers` with `use_sliding_window`) sees only that many
    keys back, as transformers' sliding mask does.
    """

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return True

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        body = model.model
        self.embed, self.norm, self.rotary = body.embed_tokens, body.norm, body.rotary_emb
        self.blocks = list(body.layers)
        self.lm_head = model.lm_head
        first = self.blocks[0].self_attn
        self.heads = config.num_attention_heads
        self.layers, self.kv_heads = len(self.blocks), config.num_key_value_heads
        self.head_dim = first.head_dim
        self.scale = first.scaling
        self.windows = [getattr(block.self_attn, "sliding_window", None)
                        for block in self.blocks]
        self.device = self.embed.weight.device
        self.dtype = self.embed.weight.dtype

    def run(self, step: Step, kv: StaticKV) -> torch.Tensor:
        x = self.embed(step.input_ids)  # [T, E]
        cos, sin = rope_tables(self.rotary, x, step)  # [T, 1, D] each
        for layer, block in enumerate(self.blocks):
            x = x + self.attention(layer, block.self_attn, block.input_layernorm(x), kv, step,
                                   cos, sin)  # [T, E]
            x = x + self.mlp(block.mlp, block.post_attention_layernorm(x))  # [T, E]
        return x

    def attention(self, layer: int, attn: nn.Module, x: torch.Tensor, kv: StaticKV, step: Step,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        count, dim = step.count, self.head_dim
        q = rope(attn.q_proj(x).view(count, self.heads, dim), cos, sin)  # [T, H, D]
        k = rope(attn.k_proj(x).view(count, self.kv_heads, dim), cos, sin)  # [T, KV, D]
        v = attn.v_proj(x).view(count, self.kv_heads, dim)  # [T, KV, D]
        y = attend(q, k, v, kv, layer, step, self.scale, self.windows[layer])  # [T, H·D]
        return attn.o_proj(y)  # [T, E]

    @staticmethod
    def mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))  # SwiGLU: [T, E]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(x))  # [T, V]
