"""Native GPT-Refact (smallcloudai/Refact-1_6B-fim), so that no remote code ever runs.

The model definition transformers builds (the reference forward); our lean forward over its
modules is `fimlsp.engine.lean.refact`.

The checkpoint's config.json names `model_type` "gpt_refact" and an `auto_map` into its own
modeling code. Importing this module registers our classes for that model type with transformers'
Auto classes; `from_pretrained(..., trust_remote_code=False)` then builds them and never reads the
`auto_map`. The architecture (../shared/model-configs/FACTS.md §4):

- token embedding only: positions enter as ALiBi biases on the attention scores, nothing else;
- pre-LN blocks, two sequential residuals: `h = x + attn(ln_1(x))`, `out = h + mlp(ln_2(h))`;
- LayerNorm (mean-subtracting) with a weight and no bias; no linear layer has a bias;
- multi-query attention: 32 query heads of 64, one shared key/value head (`kv` rows: K | V);
- SwiGLU MLP, `gate_up_proj` rows: gate | up; `c_proj(silu(gate) * up)`;
- final `ln_f` at the top level (not under `transformer.`) and an untied `lm_head`.

ALiBi: the original adds `slope_h · (j + 1)` for key position j; we add `-slope_h · (i - j)` for
query position i, which differs by a constant per row and so gives the same softmax, but stays
small at long contexts. Both positions are absolute (keys sit at 0..S-1 in the cache, queries at
`position_ids`), so a cache that is cropped and extended gives exactly the scores of a forward
over the whole sequence.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, PreTrainedConfig
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import PreTrainedModel

MODEL_TYPE = "gpt_refact"
# transformers renamed the KV cache from `past_key_values` to `cache` (outputs and forward
# keywords); the old spellings warn until they are removed. We speak the installed version's.
CACHE_NAME = ("cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
              else "past_key_values")

# What attention needs for ALiBi: slopes [H], distance i - j and hidden keys [B, 1, T, S] each.
Alibi = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class GPTRefactConfig(PreTrainedConfig):
    """Reads the real checkpoint's config.json; defaults are Refact-1.6B's values."""

    model_type = MODEL_TYPE
    keys_to_ignore_at_inference: ClassVar[list[str]] = [CACHE_NAME]
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    vocab_size: int = 49216
    n_positions: int = 4096
    n_embd: int = 2048
    n_layer: int = 32
    n_head: int = 32
    n_inner: int | None = None  # ignored, as by the original config class: see `mlp_width`
    multi_query: bool = True
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    attention_bias_in_fp32: bool = True
    attention_softmax_in_fp32: bool = True
    scale_attention_softmax_in_fp32: bool = True
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = 0
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False  # the checkpoint has a separate lm_head (FACTS.md §4)


def mlp_width(n_embd: int) -> int:
    """LLaMA's SwiGLU width rule, rounded up to 256: 5632 for n_embd 2048."""
    return 256 * math.ceil(int(2 * 4 * n_embd / 3) / 256)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """[n_head] slopes, head h (0-based) first: BLOOM's / vLLM's `_get_alibi_slopes`.

    With n the largest power of two ≤ n_head: 2^(-8(h+1)/n) for h < n, then 2^(-4/n) raised to
    1, 3, 5, … for the remaining heads.
    """
    closest = 2 ** math.floor(math.log2(n_head))
    base = 2.0 ** (-8.0 / closest)
    slopes = [base ** (h + 1) for h in range(closest)]
    extra_base = 2.0 ** (-4.0 / closest)
    slopes += [extra_base ** (2 * i + 1) for i in range(n_head - closest)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_distance(query_positions: torch.Tensor, kv_len: int,
                   key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What ALiBi needs of the positions, without the heads: the distance i - j from each query
    to each key, fp32 [B, 1, T, S], and which keys are hidden, bool [B, 1, T, S] (later than the
    query, or padding).

    query_positions [B, T] absolute; keys at positions 0..kv_len-1; key_mask [B, kv_len]
    (1 = attend, 0 = padding) or None. Why not the biases themselves: they are per head, so
    [B, H, T, S] fp32 — 134 MB for a 256-token chunk at 4096 context with Refact's 32 heads,
    besides the scores of the same size. `attend` adds `-slope_h · distance` into the scores
    in place instead; this is H times smaller.
    """
    key_positions = torch.arange(kv_len, device=query_positions.device)  # [S]
    distance = query_positions[:, None, :, None] - key_positions  # [B, 1, T, S]
    hidden = distance < 0  # keys after the query
    if key_mask is not None:
        hidden = hidden | (key_mask[:, None, None, :kv_len] == 0)
    return distance.float(), hidden


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor,
           distance: torch.Tensor, hidden: torch.Tensor | None, scale: float,
           upcast: bool) -> torch.Tensor:
    """Multi-query attention with ALiBi: q [B, H, T, D], k and v [B, 1, S, D] (the one shared
    head), slopes [H], distance [B, 1, T, S] and hidden [B, 1, T, S] (or None: nothing hidden)
    from `alibi_distance`; returns [B, H, T, D].

    The heads are folded into the query rows, so the shared key and value are never copied H times.
    Scores, bias and softmax are fp32 when `upcast` (the checkpoint's `attention_*_in_fp32`); the
    bias and the mask go into the scores in place, so the scores are the only [B, H, T, S] tensor.
    """
    batch, heads, length, dim = q.shape
    kv_len = k.shape[2]
    work = torch.float32 if upcast else q.dtype
    rows = q.reshape(batch, heads * length, dim).to(work)  # [B, H*T, D]
    scores = torch.matmul(rows, k[:, 0].to(work).transpose(1, 2))  # [B, H*T, S]
    scores = scores.view(batch, heads, length, kv_len).mul_(scale)  # [B, H, T, S]
    scores.addcmul_(slopes.to(scores)[None, :, None, None], distance.to(work), value=-1)
    if hidden is not None:
        scores.masked_fill_(hidden, torch.finfo(work).min)
    probs = torch.softmax(scores, dim=-1).to(v.dtype)  # [B, H, T, S]
    out = torch.matmul(probs.view(batch, heads * length, kv_len), v[:, 0])  # [B, H*T, D]
    return out.view(batch, heads, length, dim)


class GPTRefactAttention(nn.Module):
    def __init__(self, config: GPTRefactConfig, layer_idx: int) -> None:
        super().__init__()
        if not config.multi_query:
            raise ValueError("GPT-Refact has one shared key/value head: multi_query must be true")
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scale = self.head_dim ** -0.5
        self.upcast = config.attention_softmax_in_fp32 or config.attention_bias_in_fp32
        self.q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.kv = nn.Linear(config.n_embd, 2 * self.head_dim, bias=False)  # rows: K | V
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, alibi: Alibi, cache: DynamicCache | None) -> torch.Tensor:
        batch, length, width = x.shape  # [B, T, E]
        q = self.q(x).view(batch, length, self.n_head, self.head_dim).transpose(1, 2)  # [B,H,T,D]
        k, v = self.kv(x).unsqueeze(1).split(self.head_dim, dim=-1)  # [B, 1, T, D] each
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # [B, 1, S, D]: the past, then these
        y = attend(q, k, v, *alibi, self.scale, self.upcast)  # [B, H, T, D]
        return self.c_proj(y.transpose(1, 2).reshape(batch, length, width))  # [B, T, E]


class GPTRefactMLP(nn.Module):
    def __init__(self, config: GPTRefactConfig) -> None:
        super().__init__()
        width = mlp_width(config.n_embd)
        self.gate_up_proj = nn.Linear(config.n_embd, 2 * width, bias=False)  # rows: gate | up
        self.c_proj = nn.Linear(width, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # [B, T, F] each
        return self.c_proj(F.silu(gate) * up)  # [B, T, E]


class GPTRefactBlock(nn.Module):
    def __init__(self, config: GPTRefactConfig, layer_idx: int) -> None:
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=eps, bias=False)
        self.attn = GPTRefactAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps, bias=False)
        self.mlp = GPTRefactMLP(config)

    def forward(self, x: torch.Tensor, alibi: Alibi, cache: DynamicCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), alibi, cache)  # [B, T, E]
        return x + self.mlp(self.ln_2(x))


class GPTRefactPreTrainedModel(PreTrainedModel):
    config_class = GPTRefactConfig  # an attribute: with postponed annotations `config:` is a str
    base_model_prefix = "transformer"
    _no_split_modules: ClassVar[list[str]] = ["GPTRefactBlock"]
    _skip_keys_device_placement: ClassVar[list[str]] = [CACHE_NAME]


class GPTRefactModel(GPTRefactPreTrainedModel):
    """Embedding and blocks; the final norm lives in the LM (the checkpoint's `ln_f`)."""

    def __init__(self, config: GPTRefactConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.h = nn.ModuleList(GPTRefactBlock(config, i) for i in range(config.n_layer))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                past_key_values: DynamicCache | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] → hidden states [B, T, E] (before `ln_f`)."""
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        batch, length = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=input_ids.device)[None]
        position_ids = position_ids.expand(batch, length)  # [B, T]
        slopes = alibi_slopes(self.config.n_head).to(input_ids.device)  # [H]
        distance, hidden = alibi_distance(position_ids, past + length, attention_mask)
        alibi = (slopes, distance, hidden)  # [H], [B, 1, T, S] ×2
        x = self.wte(input_ids)  # [B, T, E]
        for block in self.h:
            x = block(x, alibi, past_key_values)
        return x


class GPTRefactForCausalLM(GPTRefactPreTrainedModel, GenerationMixin):
    def __init__(self, config: GPTRefactConfig) -> None:
        super().__init__(config)
        self.transformer = GPTRefactModel(config)
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache | None = None,
                position_ids: torch.Tensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0,
                attention_mask: torch.Tensor | None = None,
                past_key_values: DynamicCache | None = None,
                **kwargs: object) -> CausalLMOutputWithPast:
        """The call LocalEngine makes. `logits_to_keep` n > 0 projects only the last n positions
        (0: all); a tensor selects positions. Other generation kwargs are accepted and unused.
        The cache comes as `cache` or, from transformers before the rename, `past_key_values`."""
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = cache if cache is not None else past_key_values
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        cache = cache if use_cache else None
        hidden = self.transformer(input_ids, position_ids, cache, attention_mask)  # [B, T, E]
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(self.ln_f(hidden[:, keep]))  # [B, kept, V]
        return CausalLMOutputWithPast(logits=logits, **{CACHE_NAME: cache})


AutoConfig.register(MODEL_TYPE, GPTRefactConfig, exist_ok=True)
AutoModelForCausalLM.register(GPTRefactConfig, GPTRefactForCausalLM, exist_ok=True)
