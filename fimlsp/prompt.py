"""FIM prompts that fit the model's window exactly, counted in the model's own tokens.

The prompt is assembled from token ids, not from a string: each part (prefix, suffix) is
tokenized on its own with special-token matching off, and the template's special tokens are
inserted by id. That makes the count exact (what we count is what the model sees) and makes it
impossible for document text to smuggle in a `<fim_middle>`.

Only a character window around the cursor is ever tokenized, so the cost does not depend on the
size of the file.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from fimlsp.context import Cursor, Snippet
from fimlsp.errors import ErrorKind, FimError
from fimlsp.healing import Heal, back_off
from fimlsp.models import FimTemplate

PREFIX_SHARE = 0.75  # of the budget, when both sides want more than they can have
STICKY_SLACK = 0.125  # of a side's budget, given up when its edge must move
_CHARS_PER_TOKEN_GUESS = 4  # before a tokenizer's density is measured (see `_first_guess`)


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    format: str  # e.g. "starcoder/spm"
    window: int
    reserved: int  # tokens left free for the answer
    prefix_tokens: int
    suffix_tokens: int
    prefix_chars: int  # how much of the document's prefix made it into the prompt
    suffix_chars: int
    neighbour_tokens: int = 0  # snippets of other open documents, before the FIM part
    # Token healing: the tokens backed off the prefix's end, which the answer writes again.
    heal: Heal | None = None
    # Decoding 8k ids costs more than building them; only `fimlsp prompt` and logs want text.
    decode: Callable[[list[int]], str] = field(default=str, repr=False, compare=False)

    @property
    def text(self) -> str:
        """The prompt as the model reads it, special tokens spelled out."""
        return self.decode(self.ids)

    def accounting(self) -> dict[str, object]:
        return {"format": self.format, "window": self.window, "reserved": self.reserved,
                "prompt_tokens": len(self.ids), "prefix_tokens": self.prefix_tokens,
                "suffix_tokens": self.suffix_tokens, "neighbour_tokens": self.neighbour_tokens,
                "healed": self.heal.text if self.heal is not None else ""}


def special_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise FimError(ErrorKind.CONFIG,
                       f"The tokenizer has no '{token}' token: wrong --template for this model?")
    return token_id


def _encode(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not text:
        return [], []
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets


@dataclass
class _Span:
    """The tokens of text[base:end], with absolute start offsets."""

    ids: list[int]
    starts: list[int]
    base: int
    end: int


def _span(tokenizer: Tokenizer, text: str, base: int, end: int) -> _Span:
    ids, offsets = _encode(tokenizer, text[base:end])
    return _Span(ids, [base + o[0] for o in offsets], base, end)


_SYNC = 6  # tokens two encodings must agree on to be in step
_REGION = 512  # characters re-encoded around a cut


def _in_step(a: _Span, b: _Span) -> tuple[int, int] | None:
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


def _tail_ids(tokenizer: Tokenizer, text: str, window: _Span, cut: int) -> list[int]:
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


def _head_ids(tokenizer: Tokenizer, text: str, window: _Span, cut: int) -> list[int]:
    """The ids of text[:cut] (cut <= window.end), the mirror of `_tail_ids`."""
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


def _grow(tokenizer: Tokenizer, chars: int, window: _Span, need: int) -> int:
    """A window size that should hold `need` tokens, from the density just measured."""
    density = (window.end - window.base) / max(len(window.ids), 1)
    _density[id(tokenizer)] = density
    return max(chars + 256, int(need * density * 1.15))


def _tail_window(tokenizer: Tokenizer, text: str, need: int) -> _Span:
    """Tokens of a tail of `text` holding more than `need` tokens, or all of it."""
    chars = _first_guess(tokenizer, need)
    while True:
        window = _span(tokenizer, text, max(0, len(text) - chars), len(text))
        if window.base == 0 or len(window.ids) > need:
            if window.ids and window.base > 0:
                _density[id(tokenizer)] = (window.end - window.base) / len(window.ids)
            return window
        chars = _grow(tokenizer, chars, window, need)


def _head_window(tokenizer: Tokenizer, text: str, need: int) -> _Span:
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


def _tail_window_again(tokenizer: Tokenizer, text: str, need: int, old: _Span | None,
                       old_text: str) -> _Span:
    """`_tail_window`, reusing the previous keystroke's window: typing changes the prefix only
    near its end, so only the text from a little before the change is encoded again."""
    if old is None or not old.ids:
        return _tail_window(tokenizer, text, need)
    same = _common_length(old_text, text)
    if same <= old.base + _REGION:
        return _tail_window(tokenizer, text, need)
    keep = next((i for i in range(len(old.starts) - 1, -1, -1)
                 if old.starts[i] <= same - _REGION), None)
    if keep is None:
        return _tail_window(tokenizer, text, need)
    fresh = _span(tokenizer, text, old.starts[keep], len(text))
    step = _in_step(old, fresh)
    if step is None:
        return _tail_window(tokenizer, text, need)
    i, j = step
    window = _Span(old.ids[:i] + fresh.ids[j:], old.starts[:i] + fresh.starts[j:], old.base,
                   len(text))
    if not (window.base == 0 or len(window.ids) > need) or len(window.ids) > 2 * need + 64:
        return _tail_window(tokenizer, text, need)  # shrank below need, or grew too long
    return window


def _head_window_again(tokenizer: Tokenizer, text: str, need: int, old: _Span | None,
                       old_text: str) -> _Span:
    """`_head_window`, reusing the previous window when the text it covers is unchanged
    (the suffix does not change while the user types before it)."""
    if old is not None and (len(old.ids) > need or old.end == len(text)) and \
            (old.end == len(text) or old.end < len(text)) and text[:old.end] == old_text[:old.end] \
            and (old.end < len(text) or len(old_text) == len(text)):
        return old
    return _head_window(tokenizer, text, need)


def _cut_tail(tokenizer: Tokenizer, text: str, window: _Span, budget: int
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
        ids = _tail_ids(tokenizer, text, window, cut)
        if len(ids) <= budget:
            return ids, cut
        drop += len(ids) - budget
    return [], len(text)


def _cut_head(tokenizer: Tokenizer, text: str, window: _Span, budget: int
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
        ids = _head_ids(tokenizer, text, window, cut)
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
    return _cut_tail(tokenizer, text, _tail_window(tokenizer, text, budget), budget)


def fit_head(tokenizer: Tokenizer, text: str, budget: int) -> tuple[list[int], int]:
    """The longest head of `text` within `budget` tokens, ending at a line end when it can.

    Returns its ids and its length in characters.
    """
    if budget <= 0 or not text:
        return [], 0
    return _cut_head(tokenizer, text, _head_window(tokenizer, text, budget), budget)


def _share(budget: int, prefix_need: int, suffix_need: int) -> tuple[int, int]:
    """Splits the budget 3:1 for the prefix when both sides want more; else a side that needs
    less than its share gives the rest to the other."""
    if prefix_need + suffix_need <= budget:
        return prefix_need, suffix_need
    suffix_share = budget - int(budget * PREFIX_SHARE)
    if suffix_need <= suffix_share:
        return budget - suffix_need, suffix_need
    if prefix_need <= budget - suffix_share:
        return prefix_need, budget - prefix_need
    return budget - suffix_share, suffix_share


@dataclass
class Edges:
    """Where the last prompt for a document cut its prefix and suffix.

    The next prompt cuts at the same places while they still fit, so consecutive prompts share
    their beginning and the KV cache stays valid while the user types; an edge that moved every
    keystroke would force a full re-prefill each time. When an edge must move, it moves by
    `STICKY_SLACK` of the side's budget more than needed, so it can then stay put for a while.
    """

    prefix_start: int = -1  # document offset where the kept prefix began
    prefix_anchor: str = ""  # the text that began there: an edit above the edge changes it
    suffix_end: int = -1  # characters of the suffix kept
    suffix_anchor: str = ""  # the text that ended there
    # The last tokenized windows and their text, so a keystroke re-encodes only what changed.
    prefix_window: _Span | None = None
    prefix_text: str = ""
    suffix_window: _Span | None = None
    suffix_text: str = ""


_ANCHOR = 64  # characters compared to decide that an edge is still where it was


def _sticky_tail(tokenizer: Tokenizer, prefix: str, window: _Span, budget: int,
                 edges: Edges | None) -> tuple[list[int], int]:
    """The prefix tail: from the previous edge if it is intact and fits, else cut anew."""
    if edges is not None and window.base <= edges.prefix_start <= len(prefix) and \
            edges.prefix_start > 0 and prefix.startswith(edges.prefix_anchor, edges.prefix_start):
        ids = _tail_ids(tokenizer, prefix, window, edges.prefix_start)
        if len(ids) <= budget:
            return ids, edges.prefix_start
    ids, start = _cut_tail(tokenizer, prefix, window, budget)
    if start > 0 and edges is not None:
        ids, start = _cut_tail(tokenizer, prefix, window, budget - int(budget * STICKY_SLACK))
    return ids, start


def _sticky_head(tokenizer: Tokenizer, suffix: str, window: _Span, budget: int,
                 edges: Edges | None) -> tuple[list[int], int]:
    """The suffix head: up to the previous edge if it is intact and fits, else cut anew."""
    end = edges.suffix_end if edges is not None else -1
    if edges is not None and 0 < end < len(suffix) and end <= window.end and \
            suffix[:end].endswith(edges.suffix_anchor):
        ids = _head_ids(tokenizer, suffix, window, end)
        if len(ids) <= budget:
            return ids, end
    ids, end = _cut_head(tokenizer, suffix, window, budget)
    if end < len(suffix) and edges is not None:
        ids, end = _cut_head(tokenizer, suffix, window, budget - int(budget * STICKY_SLACK))
    return ids, end


_LINE_COMMENT = {
    "//": ("c", "h", "cc", "cpp", "hpp", "cxx", "cs", "java", "js", "jsx", "mjs", "ts", "tsx",
           "go", "rs", "kt", "kts", "swift", "scala", "dart", "php", "zig", "v", "sv", "proto"),
    "--": ("lua", "sql", "hs", "elm", "ada"),
    ";": ("el", "lisp", "clj", "cljs", "scm", "asm"),
    "%": ("tex", "erl", "m"),
}


def comment_marker(path: str | None) -> str:
    """The line-comment marker of the file's language ('#' when we cannot tell)."""
    extension = (path or "").rsplit(".", 1)[-1].lower() if path and "." in path else ""
    return next((m for m, exts in _LINE_COMMENT.items() if extension in exts), "#")


# Compact (4 bytes an id, not a list's 36) and few: the snippets of one cursor are what repeats
# while the user types; old versions of an edited neighbour must not stay held (test_memory).
_SNIPPET_IDS: weakref.WeakKeyDictionary[Tokenizer, OrderedDict[str, array[int]]] = \
    weakref.WeakKeyDictionary()
_SNIPPET_CACHE = 16  # snippets' ids kept per tokenizer
_SNIPPET_LOCK = threading.Lock()


def _snippet_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """The ids of a snippet block: the same snippets open every prompt while the user types, so
    they are encoded once, not per keystroke."""
    with _SNIPPET_LOCK:  # the model's threads and the event loop (`fimlsp.prompt`)
        cache = _SNIPPET_IDS.setdefault(tokenizer, OrderedDict())
        ids = cache.get(text)
        if ids is not None:
            cache.move_to_end(text)
            return ids.tolist()
    encoded = _encode(tokenizer, text)[0]
    with _SNIPPET_LOCK:
        cache[text] = array("i", encoded)
        while len(cache) > _SNIPPET_CACHE:
            cache.popitem(last=False)
    return encoded


def neighbour_ids(tokenizer: Tokenizer, template: FimTemplate, snippets: Sequence[Snippet],
                  path: str | None, budget: int, repo_name: str | None = None) -> list[int]:
    """Snippets of other files in the family's repository format, within `budget` tokens.

    Families trained on repositories (StarCoder2, Qwen2.5-Coder) get `<file_sep>path\ncode`
    blocks and then the current file's own header; the others get the snippets as comments
    ("Compare this snippet from …", as Copilot does), so the model reads them as context, not as
    code of this file. The most similar snippets are kept first; one that does not fit whole is
    cut at a line end. With `repo_name` (snippets from the workspace index), those families'
    `<repo_name>name` opens the blocks, as in their repository-level training data.
    """
    if not snippets or budget <= 0:
        return []
    lead: list[int] = []
    tail: list[int] = []
    head: list[int] = []
    if template.file_sep:
        lead = [special_id(tokenizer, template.file_sep)]
        tail = [*lead, *_encode(tokenizer, f"{path}\n")[0]] if path else []
        if repo_name and template.repo_name:
            # Qwen2.5-Coder writes `<|repo_name|>name\n`, StarCoder2 `<repo_name>name`.
            newline = "\n" if template.repo_name.startswith("<|") else ""
            head = [special_id(tokenizer, template.repo_name),
                    *_encode(tokenizer, repo_name + newline)[0]]
        texts = [f"{s.path}\n{s.text}" for s in snippets]
    else:
        mark = comment_marker(path)
        texts = [f"{mark} Compare this snippet from {s.path}:\n" + "".join(
            f"{mark} {line}\n" for line in s.text.splitlines()) for s in snippets]
    room = budget - len(tail) - len(head)
    blocks: list[list[int]] = []
    for text in reversed(texts):  # best first
        ids = [*lead, *_snippet_ids(tokenizer, text)]
        if len(ids) > room:
            ids = [*lead, *fit_head(tokenizer, text, room - len(lead))[0]]
            if len(ids) - len(lead) < 16:  # a path and a line or two: not worth it
                break
        blocks.insert(0, ids)  # keep best last
        room -= len(ids)
        if room < 16:
            break
    if not blocks:
        return []
    return head + [i for block in blocks for i in block] + tail


def build_prompt(tokenizer: Tokenizer, template: FimTemplate, order: str, cursor: Cursor,
                 window: int, reserved: int, edges: Edges | None = None,
                 snippets: Sequence[Snippet] = (), path: str | None = None,
                 neighbour_share: float = 0.0, repo_name: str | None = None,
                 heal: bool = False) -> Prompt:
    """The prompt for `cursor`, using at most `window - reserved` tokens.

    With `edges` (kept per document by the caller) the cut points are sticky, and `edges` is
    updated to this prompt's cuts. `snippets` of other documents take at most `neighbour_share`
    of the budget and go first, where they stay cached while the user types. With `heal`, a
    prefix that ends inside a word is backed off to the token boundary before it
    (`healing.back_off`; the prompt's `heal` says what the answer must write again).
    """
    if order not in template.orders:
        raise FimError(ErrorKind.CONFIG,
                       f"{template.name} models were not trained with {order.upper()} prompts")
    pre, suf, mid = (special_id(tokenizer, t) for t in
                     (template.prefix, template.suffix, template.middle))
    bos = [special_id(tokenizer, template.bos)] if template.bos else []
    budget = window - reserved - 3 - len(bos)
    if budget < 8:
        raise FimError(ErrorKind.CONFIG,
                       f"The window ({window} tokens) leaves no room for context after reserving "
                       f"{reserved} for the answer; lower max_new_tokens or raise context_window.")
    context = neighbour_ids(tokenizer, template, snippets, path, int(budget * neighbour_share),
                            repo_name)
    budget -= len(context)
    # One encoding of a bounded window per side; cuts re-encode only a short region.
    if edges is None:
        prefix_window = _tail_window(tokenizer, cursor.prefix, budget)
    else:
        prefix_window = _tail_window_again(tokenizer, cursor.prefix, budget,
                                           edges.prefix_window, edges.prefix_text)
    prefix_need = len(prefix_window.ids) if prefix_window.base == 0 else budget + 1
    suffix_cap = budget - min(prefix_need, int(budget * PREFIX_SHARE))  # the most it can get
    if edges is None:
        suffix_window = _head_window(tokenizer, cursor.suffix, suffix_cap)
    else:
        suffix_window = _head_window_again(tokenizer, cursor.suffix, suffix_cap,
                                           edges.suffix_window, edges.suffix_text)
    covers = suffix_window.end == len(cursor.suffix)
    suffix_need = len(suffix_window.ids) if covers else budget + 1
    prefix_budget, suffix_budget = _share(budget, min(prefix_need, budget),
                                          min(suffix_need, budget))
    prefix_ids, prefix_start = _sticky_tail(tokenizer, cursor.prefix, prefix_window,
                                            prefix_budget, edges)
    suffix_ids, suffix_end = _sticky_head(tokenizer, cursor.suffix, suffix_window,
                                          suffix_budget, edges)
    if edges is not None:
        edges.prefix_start = prefix_start
        edges.prefix_anchor = cursor.prefix[prefix_start:prefix_start + _ANCHOR]
        edges.suffix_end = suffix_end
        edges.suffix_anchor = cursor.suffix[max(0, suffix_end - _ANCHOR):suffix_end]
        edges.prefix_window, edges.prefix_text = prefix_window, cursor.prefix
        edges.suffix_window, edges.suffix_text = suffix_window, cursor.suffix
    healed = back_off(tokenizer, prefix_ids, cursor.prefix) if heal else None
    if healed is not None:
        prefix_ids = prefix_ids[:len(prefix_ids) - len(healed.ids)]
    if order == "psm":
        ids = [*bos, *context, pre, *prefix_ids, suf, *suffix_ids, mid]
    elif template.spm_style == "neox":
        ids = [*bos, *context, suf, *suffix_ids, pre, *prefix_ids, mid]
    else:
        ids = [*bos, *context, pre, suf, *suffix_ids, mid, *prefix_ids]
    return Prompt(
        ids=ids,
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
        format=f"{template.name}/{order}",
        window=window,
        reserved=reserved,
        prefix_tokens=len(prefix_ids),
        suffix_tokens=len(suffix_ids),
        prefix_chars=len(cursor.prefix) - prefix_start,
        suffix_chars=suffix_end,
        neighbour_tokens=len(context),
        heal=healed,
    )
