"""The lean path: a preallocated KV cache and our own forward over a loaded model's weights.

Why: transformers' forward is general (any cache class, masks built per call, output records,
deprecation wrappers), and its `DynamicCache` appends with `torch.cat`, copying every layer's
keys and values on every step — ~10 % of a keystroke at 2k context in issue 11's profile, and
growing with it. So, as gpt-fast does and as `engine/refact.py` does for Refact, we run the
network ourselves on the modules of the model that `load_model` built: each `nn.Linear` (or the
dynamic-int8 / bitsandbytes module that replaced it) is *called*, never unpacked, so weight
formats keep working unchanged (fp32 and dynamic int8 are tested; bitsandbytes on CUDA is not,
no GPU here). Measured: a decode step 12–25 % and a keystroke 14–30 % faster than transformers'
forward at 2048 context (docs/benchmarks.md).

`StaticKV` keeps one session's keys and values in tensors indexed by position: appending writes
in place, cropping sets a length. It grows by doubling when a prompt outruns it (rare: amortised,
and a session's prompt is bounded by the window), so short documents do not pay for a full window.

Only gpt_bigcode with multi-query attention (StarCoder, SantaCoder, TinyStarCoder) has a lean
forward so far; `lean_for` answers None for every other model, which keeps the transformers path
and its `DynamicCache`. transformers' forward stays the reference the tests compare against.
Set FIMLSP_LEAN=0 to force the reference path everywhere (tests, benchmarks, a suspected bug).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

GROW_TO = 256  # capacity is a multiple of this: few reallocations while a prompt grows


def lean_enabled() -> bool:
    """False when FIMLSP_LEAN is 0/false/no/off: everything on transformers' forward."""
    return os.environ.get("FIMLSP_LEAN", "1").strip().lower() not in ("0", "false", "no", "off")


class StaticKV:
    """Keys and values of one session, position by position, for `layers` layers of one shared
    (multi-query) head: `keys[l, :length]` and `values[l, :length]` are valid.

    Speaks the two methods of transformers' cache the engine and its tests use
    (`get_seq_length`, `crop`), so a session does not care which kind it holds.
    """

    def __init__(self, layers: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 capacity: int = GROW_TO, limit: int | None = None) -> None:
        self.length = 0
        self.limit = limit  # the model's position count: growing past it would only waste memory
        self.keys = torch.empty(layers, capacity, head_dim, dtype=dtype, device=device)  # [L,C,D]
        self.values = torch.empty_like(self.keys)  # [L, C, D]

    @property
    def capacity(self) -> int:
        return self.keys.shape[1]

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, keep: int) -> None:
        """`keep` ≥ 0: positions to keep; < 0: positions to drop from the end (DynamicCache's
        convention). Nothing moves: what lies past the length is overwritten by the next append."""
        self.length = keep if keep >= 0 else max(0, self.length + keep)

    def reserve(self, total: int) -> None:
        """Room for `total` positions; copies once when it grows (doubling, so rarely)."""
        if total <= self.capacity:
            return
        capacity = -(-max(total, 2 * self.capacity) // GROW_TO) * GROW_TO
        if self.limit is not None:
            capacity = max(total, min(capacity, self.limit))
        layers, _, dim = self.keys.shape
        keys = self.keys.new_empty(layers, capacity, dim)
        values = self.values.new_empty(layers, capacity, dim)
        keys[:, : self.length] = self.keys[:, : self.length]
        values[:, : self.length] = self.values[:, : self.length]
        self.keys, self.values = keys, values


class LeanBigCode:
    """GPTBigCode (multi-query) forward over the modules of a loaded `GPTBigCodeForCausalLM`.

    The arithmetic is transformers' (pre-LN blocks, learned positions, tanh-GELU MLP, tied or
    untied head); what is left out is what inference never needs there: dropout, cross-attention,
    masks built for batches and padding, output records, cache objects.
    """

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        body = model.transformer
        self.model = model
        self.wte, self.wpe, self.ln_f = body.wte, body.wpe, body.ln_f
        self.blocks = list(body.h)
        self.lm_head = model.lm_head
        self.heads = config.num_attention_heads
        self.width = config.hidden_size
        self.head_dim = self.width // self.heads
        self.scale = self.blocks[0].attn.scaling  # head_dim ** -0.5 unless scale_attn_weights off
        self.positions = self.wpe.num_embeddings  # learned positions: no sequence is longer
        self.device = self.wte.weight.device
        self.dtype = self.wte.weight.dtype  # KV dtype: what c_attn outputs (fp32 under int8 too)

    def new_cache(self) -> StaticKV:
        return StaticKV(len(self.blocks), self.head_dim, self.dtype, self.device,
                        limit=self.positions)

    @torch.inference_mode()
    def forward(self, ids: list[int], kv: StaticKV, all_logits: bool = False) -> torch.Tensor:
        """Runs `ids` at positions kv.length… and appends their keys and values to `kv`.

        Returns fp32 logits [T, vocab] for every fed position when `all_logits` (verifying a
        speculative draft), else [1, vocab] for the last one only (the head is the biggest
        matmul: skipping the other rows is most of a prefill chunk's head cost).
        """
        start, count = kv.length, len(ids)
        end = start + count
        kv.reserve(end)
        heads, dim, width = self.heads, self.head_dim, self.width
        input_ids = torch.tensor(ids, device=self.device)  # [T]
        positions = torch.arange(start, end, device=self.device)  # [T]
        x = self.wte(input_ids) + self.wpe(positions)  # [T, E]
        visible = None  # [T, S] True where a query may see a key (not a later position)
        if count > 1:
            visible = torch.arange(end, device=self.device)[None, :] <= positions[:, None]
        for layer, block in enumerate(self.blocks):
            attn = block.attn
            qkv = attn.c_attn(block.ln_1(x))  # [T, E + 2D]: rows q | k | v
            q, k, v = qkv.split((width, dim, dim), dim=-1)  # [T, E], [T, D], [T, D]
            kv.keys[layer, start:end] = k
            kv.values[layer, start:end] = v
            keys = kv.keys[layer, :end]  # [S, D]
            values = kv.values[layer, :end]  # [S, D]
            if visible is None:
                # One query, multi-query attention: every head attends over the one shared
                # key/value head, so the heads are the rows of one matmul (keys never repeated).
                rows = q.view(heads, dim)  # [H, D]
                scores = torch.matmul(rows, keys.t()).float() * self.scale  # [H, S], fp32
                probs = torch.softmax(scores, dim=-1).to(values.dtype)  # [H, S]
                y = torch.matmul(probs, values).view(1, width)  # [H, D] → [1, E]
            else:
                # A chunk: the fused kernel (flash attention on CPU) beats materialising
                # [T·H, S] scores; enable_gqa shares the one key/value head without a copy.
                y = F.scaled_dot_product_attention(
                    q.view(count, heads, dim).transpose(0, 1)[None],  # [1, H, T, D]
                    keys[None, None], values[None, None],  # [1, 1, S, D]
                    attn_mask=visible, scale=self.scale, enable_gqa=True)  # [1, H, T, D]
                y = y[0].transpose(0, 1).reshape(count, width)  # [T, E]
            x = x + attn.c_proj(y)  # [T, E]
            mlp = block.mlp
            x = x + mlp.c_proj(mlp.act(mlp.c_fc(block.ln_2(x))))  # [T, E]
        kv.length = end
        if not all_logits:
            x = x[-1:]  # [1, E]
        return self.lm_head(self.ln_f(x)).float()  # [T or 1, V]


def lean_for(model: nn.Module) -> LeanBigCode | None:
    """The lean forward for this model, or None where it has none (the reference path runs)."""
    config = getattr(model, "config", None)
    if config is None or not lean_enabled():
        return None
    if config.model_type == "gpt_bigcode" and getattr(config, "multi_query", False) \
            and not getattr(config, "add_cross_attention", False) \
            and type(model).__name__ == "GPTBigCodeForCausalLM":
        return LeanBigCode(model)
    return None

