"""The pure parts of decoding, over ids and logits only: how much of a cached sequence a prompt
shares, which tokens prompt lookup drafts, which token a distribution gives. Apart from
`LocalEngine` because benchmarks and the completer use them without an engine.
"""

from __future__ import annotations

import torch

MAX_NGRAM = 3  # the longest tail of the text that is looked up in it to draft the next tokens


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def draft_tokens(context: list[int], limit: int, max_ngram: int = MAX_NGRAM) -> list[int]:
    """Prompt lookup: the (up to `limit`) tokens that followed the latest earlier occurrence of
    the context's last n tokens, for n from `max_ngram` down to 1; [] when none recurs.

    Why it pays for code: a completion mostly repeats what is already in the prompt (names,
    call patterns, the rest of a line the suffix also holds), and the model verifies a draft of
    k tokens in one forward for little more than the cost of one.
    """
    end = len(context)
    if limit <= 0:
        return []
    for n in range(min(max_ngram, end - 1), 0, -1):
        tail = context[end - n:]
        first = tail[0]
        for i in range(end - n - 1, -1, -1):  # latest first; the tail itself excluded
            if context[i] == first and context[i:i + n] == tail:
                return context[i + n:i + n + limit]
    return []


def sample(logits: torch.Tensor, temperature: float, top_p: float) -> int:
    """Greedy at temperature 0 (the default: completions should be reproducible)."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)  # [vocab]
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1))
