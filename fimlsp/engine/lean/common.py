"""What every lean forward shares: the step being run, attention over a `StaticKV`, RoPE.

A forward is top-down small steps, as in gpt-fast: `LeanModel.begin` (room in the cache, the
positions of the fed tokens), the family's blocks, `LeanModel.finish` (the cache's new length,
the head over the rows asked for). Each family module (bigcode, neox, llama, starcoder2, refact)
writes its blocks out by hand over the modules of the loaded model: every `nn.Linear` (or the
dynamic-int8 / bitsandbytes module that replaced it) and every norm is *called*, never unpacked,
so weight formats keep working unchanged and no weight is copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fimlsp.engine.lean.cache import StaticKV


@dataclass
class Step:
    """One forward: tokens at positions start…end-1, appended to a cache that holds 0…start-1."""

    start: int
    end: int
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T] absolute
    # window (None: full causal attention) → (first visible key, visible [T, S] or None)
    spans: dict[int | None, tuple[int, torch.Tensor | None]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.end - self.start

    def span(self, window: int | None) -> tuple[int, torch.Tensor | None]:
        """The keys the fed queries may see, as (first, visible): keys first…end-1, and which of
        them each query sees — None when every query sees all of them (one token, and a full
        or sliding window alike: its keys start where the window does).

        A sliding window of w (StarCoder2, Qwen2's sliding layers) lets the query at position i
        see keys j with i - w < j ≤ i, transformers' `sliding_window_overlay`. Keys before the
        first query's window are never read: a long context costs the window, not the context.
        """
        if window not in self.spans:
            first = 0 if window is None else max(0, self.start + 1 - window)
            visible = None
            if self.count > 1:
                keys = torch.arange(first, self.end, device=self.positions.device)  # [S]
                distance = self.positions[:, None] - keys[None, :]  # [T, S]: i - j
                visible = distance >= 0
                if window is not None:
                    visible &= distance < window
            self.spans[window] = (first, visible)
        return self.spans[window]


class LeanModel:
    """The engine's side of a lean forward: `new_cache` and `forward`; families fill in
    `layers`, `kv_heads`, `head_dim`, `run` (embedding → blocks, hidden states [T, E]) and
    `head` (final norm and LM head)."""

    layers: int
    kv_heads: int
    head_dim: int
    device: torch.device
    dtype: torch.dtype  # of keys and values: what the projections output (fp32 under int8 too)
    positions_limit: int | None = None  # the longest sequence the model has positions for

    def new_cache(self) -> StaticKV:
        return StaticKV(self.layers, self.kv_heads, self.head_dim, self.dtype, self.device,
                        limit=self.positions_limit)

    @torch.inference_mode()
    def forward(self, ids: list[int], kv: StaticKV, all_logits: bool = False) -> torch.Tensor:
        """Runs `ids` at positions kv.length… and appends their keys and values to `kv`.

        Returns fp32 logits [T, vocab] for every fed position when `all_logits` (verifying a
        speculative draft), else [1, vocab] for the last one only (the head is the biggest
        matmul: skipping the other rows is most of a prefill chunk's head cost).
        """
        step = self.begin(ids, kv)
        x = self.run(step, kv)  # [T, E]
        kv.length = step.end
        if not all_logits:
            x = x[-1:]  # [1, E]
        return self.head(x).float()  # [T or 1, V]

    def begin(self, ids: list[int], kv: StaticKV) -> Step:
        start = kv.length
        end = start + len(ids)
        kv.reserve(end)
        return Step(start, end, torch.tensor(ids, device=self.device),
                    torch.arange(start, end, device=self.device))

    def run(self, step: Step, kv: StaticKV) -> torch.Tensor:
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv: StaticKV, layer: int,
           step: Step, scale: float, window: int | None = None) -> torch.Tensor:
    """Appends k, v [T, KV, D] to the cache and attends q [T, H, D] over the visible keys;
    returns [T, H·D]. Query head h reads key/value head h // (H / KV), as transformers'
    `repeat_kv` does: 1 key/value head is multi-query, KV = H plain multi-head."""
    kv.append(layer, k, v, step.start)
    first, visible = step.span(window)
    keys = kv.keys[layer, :, first:step.end]  # [KV, S, D]
    values = kv.values[layer, :, first:step.end]  # [KV, S, D]
    count, heads, dim = q.shape
    groups = keys.shape[0]
    if count == 1:
        # One query: the heads that share a key/value head are the rows of one matmul, so the
        # keys are never repeated per head (transformers' repeat_kv copies them every step).
        rows = q.view(groups, heads // groups, dim)  # [KV, G, D]
        scores = torch.matmul(rows, keys.transpose(1, 2)).float() * scale  # [KV, G, S] fp32
        probs = torch.softmax(scores, dim=-1).to(values.dtype)  # [KV, G, S]
        return torch.matmul(probs, values).view(1, heads * dim)  # [KV, G, D] → [1, H·D]
    # A chunk: the fused kernel (flash attention on CPU) beats materialising [H, T, S] scores;
    # enable_gqa shares the key/value heads without a copy.
    y = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], keys[None], values[None],  # [1, H, T, D], [1, KV, S, D] ×2
        attn_mask=visible, scale=scale, enable_gqa=groups != heads)  # [1, H, T, D]
    return y[0].transpose(0, 1).reshape(count, heads * dim)  # [T, H·D]


def rope_tables(rotary: nn.Module, x: torch.Tensor, step: Step
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, 1, R] for the fed positions, from the model's own rotary module: its base,
    scaling (linear, dynamic, YaRN…) and partial dimension R are the checkpoint's, by
    construction. Computed once per forward, shared by every layer."""
    cos, sin = rotary(x[None], step.positions[None])  # [1, T, R] each
    return cos[0, :, None], sin[0, :, None]


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates the first R dims of x [T, N, D] by position (transformers' "rotate half" layout:
    dim d pairs with d + R/2); the other D - R dims pass (GPT-NeoX rotates a quarter)."""
    rotated = cos.shape[-1]
    half = rotated // 2
    part = x[..., :rotated]  # [T, N, R]
    turned = torch.cat((-part[..., half:], part[..., :half]), dim=-1)  # [T, N, R]
    out = part * cos + turned * sin  # [T, N, R]
    if rotated == x.shape[-1]:
        return out
    return torch.cat((out, x[..., rotated:]), dim=-1)  # [T, N, D]
