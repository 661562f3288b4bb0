"""GPT-NeoX (FIM-NeoX-1.3B): rotary positions on part of each head, parallel residual."""

from __future__ import annotations

import torch
from torch import nn

from fimlsp.engine.lean.cache import StaticKV
from fimlsp.engine.lean.common import LeanModel, Step, attend, rope, rope_tables


class LeanNeoX(LeanModel):
    """GPT-NeoX forward over the modules of a loaded `GPTNeoXForCausalLM`.

    transformers' arithmetic: LayerNorm before attention and MLP; one fused `query_key_value`
    whose rows are grouped by head (q | k | v of head 0, then head 1, …); RoPE on the first
    `rotary_pct` of each head's dims; with `use_parallel_residual` (FIM-NeoX) attention and MLP
    both read the block's input and are added together, else one after the other.
    """

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return True

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        body = model.gpt_neox
        self.embed_in, self.final_norm, self.rotary = body.embed_in, body.final_layer_norm, \
            body.rotary_emb
        self.blocks = list(body.layers)
        self.lm_head = model.get_output_embeddings()  # `embed_out` before transformers 5
        self.heads = config.num_attention_heads
        self.layers, self.kv_heads = len(self.blocks), self.heads
        self.head_dim = config.hidden_size // self.heads
        self.scale = self.blocks[0].attention.scaling
        self.parallel = config.use_parallel_residual
        self.device = self.embed_in.weight.device
        self.dtype = self.embed_in.weight.dtype

    def run(self, step: Step, kv: StaticKV) -> torch.Tensor:
        x = self.embed_in(step.input_ids)  # [T, E]
        cos, sin = rope_tables(self.rotary, x, step)  # [T, 1, R] each
        for layer, block in enumerate(self.blocks):
            attention = self.attention(layer, block.attention, block.input_layernorm(x), kv,
                                       step, cos, sin)  # [T, E]
            if self.parallel:
                x = self.mlp(block.mlp, block.post_attention_layernorm(x)) + attention + x
            else:
                x = attention + x
                x = self.mlp(block.mlp, block.post_attention_layernorm(x)) + x
        return x

    def attention(self, layer: int, attn: nn.Module, x: torch.Tensor, kv: StaticKV, step: Step,
                  cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        qkv = attn.query_key_value(x).view(step.count, self.heads, 3 * self.head_dim)  # [T,H,3D]
        q, k, v = qkv.chunk(3, dim=-1)  # [T, H, D] each
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = attend(q, k, v, kv, layer, step, self.scale)  # [T, E]
        return attn.dense(y)  # [T, E]

    @staticmethod
    def mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return mlp.dense_4h_to_h(mlp.act(mlp.dense_h_to_4h(x)))  # [T, E]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(x))  # [T, V]
