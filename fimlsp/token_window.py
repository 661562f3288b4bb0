"""Cutting a text to a number of tokens exactly, in the model's own tokens, and cheaply.

`prompt.py` gives each side of the cursor a token budget; this module finds the longest tail of
the prefix or head of the suffix within it, at a line boundary when it can. Only a window of
characters near the cursor is ever encoded (`tail_window`, `head_window`), a cut re-encodes only
a short region around it and joins it to the window where the two encodings are back in step,
and the next keystroke's window reuses the last one's tokens (`tail_window_again`), so the cost
depends neither on the file's size nor on how often the user types.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from tokenizers import Tokenizer

_CHARS_PER_TOKEN_GUESS = 4  # before a tokenizer's density is measured (see `_first_guess`)


def encode(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character offsets of `text` as plain text: special-token matching off."""
    if not text:
        return [], []
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets


@dataclass
class Span:
    """The tokens of text[base:end], with absolute start offsets."""

    ids: list[int]
    starts: list[int]
    base: int
    end: int


def _span(tokenizer: Tokenizer, text: str, base: int, end: int) -> Span:
    ids, offsets = encode(tokenizer, text[base:end])
    return Span(ids, [base + o[0] for o in offsets], base, end)


_SYNC = 6  # tokens two encodings must agree on to be in step
_REGION = 512  # characters re-encoded around a cut


def _in_step(a: Span, b: Span) -> tuple[int, int] | None:
    """The first (i, j) from which a.ids[i:] and b.ids[j:] agree, token for token and offset for
    offset, for _SYNC tokens (or to the end of the shorter one).

    Tokenization is local: pre-tokenizers split with a regex, so two encodings of overlapping
    text that agree for a few tokens have resynchronised and agree on everything after.
    """
    for j, start in enumerate(b.starts):
        i = bisect.bisect_left(a.starts, start)  # starts ascend: no index to build
        if i == len(a.starts) or a.starts[i] != start:
            continue
        n = min(_SYNC, len(a.ids) - i, len(b.ids) - j)
        if n > 0 and a.ids[i:i + n] == b.ids[j:j + n] and a.starts[i:i + n] == b.starts[j:j + n]:
            return i, j
    return None


def tail_ids(tokenizer: Tokenizer, text: str, window: Span, cut: int) -> list[int]:
    """The ids of text[cut:] (window.base <= cut): a short region at the cut is encoded afresh
    and joined to the window's tokens where the two agree, instead of encoding it all again."""
    region_end = min(len(text), cut + _REGION)
    head = _span(tokenizer, text, cut, region_end)
    if region_end == len(text):
        return head.ids
    step = _in_step(window, head)
    if step is None:
        return _span(tokenizer, text, cut, len(text)).ids
    return head.ids[:step[1]] + window.ids[step[0]:]


def head_ids(tokenizer: Tokenizer, text: str, window: Span, cut: int) -> list[int]:
    """The ids of text[:cut] (cut <= window.end), the mirror of `tail_ids`."""
    region_start = max(0, cut - _REGION)
    tail = _span(tokenizer, text, region_start, cut)
    if region_start == 0:
        return tail.ids
    step = _in_step(window, tail)
    if step is None:
        return _span(tokenizer, text, 0, cut).ids
    return window.ids[:step[0]] + tail.ids[step[1]:]


_density: dict[int, float] = {}  # characters per token last seen, per tokenizer


def _first_guess(tokenizer: Tokenizer, need: int) -> int:
    """Characters likely to hold `need` tokens: too few costs a second encoding, too many only
    their share, so aim a little high."""
    return int(max(need, 1) * _density.get(id(tokenizer), _CHARS_PER_TOKEN_GUESS) * 1.1) + 64


def _grow(tokenizer: Tokenizer, chars: int, window: Span, need: int) -> int:
    """A window size that should hold `need` tokens, from the density just measured."""
    density = (window.end - window.base) / max(len(window.ids), 1)
    _density[id(tokenizer)] = density
    return max(chars + 256, int(need * density * 1.15))


def tail_window(tokenizer: Tokenizer, text: str, need: int) -> Span:
    """Tokens of a tail of `text` holding more than `need` tokens, or all of it."""
    chars = _first_guess(tokenizer, need)
    while True:
        window = _span(tokenizer, text, max(0, len(text) - chars), len(text))
        if window.base == 0 or len(window.ids) > need:
            if window.ids and window.base > 0:
                _density[id(tokenizer)] = (window.end - window.base) / len(window.ids)
            return window
        chars = _grow(tokenizer, chars, window, need)


def head_window(tokenizer: Tokenizer, text: str, need: int) -> Span:
    chars = _first_guess(tokenizer, need)
    while True:
        window = _span(tokenizer, text, 0, min(len(text), chars))
        if window.end == len(text) or len(window.ids) > need:
            return window
        chars = _grow(tokenizer, chars, window, need)


def _common_length(a: str, b: str) -> int:
    """Length of the common prefix of two strings, by bisection over C-speed comparisons."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def tail_window_again(tokenizer: Tokenizer, text: str, need: int, old: Span | None,
                       old_text: str) -> Span:
    """`tail_window`, reusing the previous keystroke's window: typing changes the prefix only
    near its end, so only the text from a little before the change is encoded again."""
    if old is None or not old.ids:
        return tail_window(tokenizer, text, need)
    same = _common_length(old_text, text)
    if same <= old.base + _REGION:
        return tail_window(tokenizer, text, need)
    keep = next((i for i in range(len(old.starts) - 1, -1, -1)
                 if old.starts[i] <= same - _REGION), None)
    if keep is None:
        return tail_window(tokenizer, text, need)
    fresh = _span(tokenizer, text, old.starts[keep], len(text))
    step = _in_step(old, fresh)
    if step is None:
        return tail_window(tokenizer, text, need)
    i, j = step
    window = Span(old.ids[:i] + fresh.ids[j:], old.starts[:i] + fresh.starts[j:], old.base,
                   len(text))
    if not (window.base == 0 or len(window.ids) > need) or len(window.ids) > 2 * need + 64:
        return tail_window(tokenizer, text, need)  # shrank below need, or grew too long
    return window


def head_window_again(tokenizer: Tokenizer, text: str, need: int, old: Span | None,
                       old_text: str) -> Span:
    """`head_window`, reusing the previous window when the text it covers is unchanged
    (the suffix does not change while the user types before it)."""
    if old is not None and (len(old.ids) > need or old.end == len(text)) and \
            (old.end == len(text) or old.end < len(text)) and text[:old.end] == old_text[:old.end] \
            and (old.end < len(text) or len(old_text) == len(text)):
        return old
    return head_window(tokenizer, text, need)


def cut_tail(tokenizer: Tokenizer, text: str, window: Span, budget: int
              ) -> tuple[list[int], int]:
    """The longest tail within `budget` tokens that starts at a line start when it can."""
    if window.base == 0 and len(window.ids) <= budget:
        return window.ids, 0
    drop = len(window.ids) - budget  # tokens to lose at the front, at least
    while 0 <= drop < len(window.ids):
        cut = window.starts[drop]
        newline = text.find("\n", max(cut - 1, 0))
        if newline != -1 and newline + 1 < len(text):
            cut = newline + 1  # whole lines only, unless the last line alone is too long
        ids = tail_ids(tokenizer, text, window, cut)
        if len(ids) <= budget:
            return ids, cut
        drop += len(ids) - budget
    return [], len(text)


def cut_head(tokenizer: Tokenizer, text: str, window: Span, budget: int
              ) -> tuple[list[int], int]:
    """The longest head within `budget` tokens that ends at a line end when it can."""
    if window.end == len(text) and len(window.ids) <= budget:
        return window.ids, len(text)
    keep = min(budget, len(window.ids))
    while keep > 0:
        cut = window.starts[keep] if keep < len(window.ids) else window.end
        newline = text.rfind("\n", 0, cut)
        if newline != -1:
            cut = newline + 1
        ids = head_ids(tokenizer, text, window, cut)
        if len(ids) <= budget:
            return ids, cut
        keep -= len(ids) - budget
    return [], 0


def fit_tail(tokenizer: Tokenizer, text: str, budget: int) -> tuple[list[int], int]:
    """The longest tail of `text` within `budget` tokens, starting at a line start when it can.

    Returns its ids and its start offset in `text`.
    """
    if budget <= 0 or not text:
        return [], len(text)
    return cut_tail(tokenizer, text, tail_window(tokenizer, text, budget), budget)


def fit_head(tokenizer: Tokenizer, text: str, budget: int) -> tuple[list[int], int]:
    """The longest head of `text` within `budget` tokens, ending at a line end when it can.

    Returns its ids and its length in characters.
    """
    if budget <= 0 or not text:
        return [], 0
    return cut_head(tokenizer, text, head_window(tokenizer, text, budget), budget)
