"""`StaticKV`: one session's keys and values, preallocated and indexed by position.

Why not transformers' `DynamicCache`: it appends with `torch.cat`, copying every layer's keys and
values on every decode step (issue 11's profile: ~10 % of a keystroke at 2k context, growing with
it). Here appending writes in place and cropping sets a length. The tensors grow by doubling when
a prompt outruns them (rare: amortised, and a session's prompt is bounded by the window), so short
documents do not pay for a full window.
"""

from __future__ import annotations

import torch

GROW_TO = 256  # capacity is a multiple of this: few reallocations while a prompt grows


class StaticKV:
    """Keys and values for `layers` layers of `heads` key/value heads (1: multi-query):
    `keys[l, :, :length]` and `values[l, :, :length]` are valid, [heads, length, head_dim] each,
    so one head's keys are contiguous rows for the attention matmul.

    Speaks the two methods of transformers' cache the engine and its tests use
    (`get_seq_length`, `crop`), so a session does not care which kind it holds.
    """

    def __init__(self, layers: int, heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, capacity: int = GROW_TO, limit: int | None = None) -> None:
        self.length = 0
        self.limit = limit  # the model's position count: growing past it would only waste memory
        self.keys = torch.empty(layers, heads, capacity, head_dim, dtype=dtype,
                                device=device)  # [L, KV, C, D]
        self.values = torch.empty_like(self.keys)  # [L, KV, C, D]

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

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
        layers, heads, _, dim = self.keys.shape
        keys = self.keys.new_empty(layers, heads, capacity, dim)  # [L, KV, C', D]
        values = self.values.new_empty(layers, heads, capacity, dim)
        keys[:, :, : self.length] = self.keys[:, :, : self.length]
        values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor, start: int) -> None:
        """Writes `keys`, `values` [T, KV, D] (the projection's layout) at positions start…;
        the length moves once per forward, after the last layer (`LeanModel.finish`)."""
        end = start + keys.shape[0]
        self.keys[layer, :, start:end] = keys.transpose(0, 1)  # [KV, T, D]
        self.values[layer, :, start:end] = values.transpose(0, 1)
