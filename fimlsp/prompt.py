"""FIM prompts that fit the model's window exactly, counted in the model's own tokens.

The prompt is assembled from token ids, not from a string: each part (prefix, suffix) is
tokenized on its own with special-token matching off, and the template's special tokens are
inserted by id. That makes the count exact (what we count is what the model sees) and makes it
impossible for document text to smuggle in a `<fim_middle>`.

Only a character window around the cursor is ever tokenized, so the cost does not depend on the
size of the file (token_window.py cuts each side to its budget; this module shares the budget out,
keeps the cuts sticky between keystrokes and lays the prompt out in the family's format).
"""

from __future__ import annotations

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
from fimlsp.token_window import (
    Span,
    cut_head,
    cut_tail,
    encode,
    fit_head,
    head_ids,
    head_window,
    head_window_again,
    tail_ids,
    tail_window,
    tail_window_again,
)

PREFIX_SHARE = 0.75  # of the budget, when both sides want more than they can have
STICKY_SLACK = 0.125  # of a side's budget, given up when its edge must move


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
    prefix_window: Span | None = None
    prefix_text: str = ""
    suffix_window: Span | None = None
    suffix_text: str = ""


_ANCHOR = 64  # characters compared to decide that an edge is still where it was


def _sticky_tail(tokenizer: Tokenizer, prefix: str, window: Span, budget: int,
                 edges: Edges | None) -> tuple[list[int], int]:
    """The prefix tail: from the previous edge if it is intact and fits, else cut anew."""
    if edges is not None and window.base <= edges.prefix_start <= len(prefix) and \
            edges.prefix_start > 0 and prefix.startswith(edges.prefix_anchor, edges.prefix_start):
        ids = tail_ids(tokenizer, prefix, window, edges.prefix_start)
        if len(ids) <= budget:
            return ids, edges.prefix_start
    ids, start = cut_tail(tokenizer, prefix, window, budget)
    if start > 0 and edges is not None:
        ids, start = cut_tail(tokenizer, prefix, window, budget - int(budget * STICKY_SLACK))
    return ids, start


def _sticky_head(tokenizer: Tokenizer, suffix: str, window: Span, budget: int,
                 edges: Edges | None) -> tuple[list[int], int]:
    """The suffix head: up to the previous edge if it is intact and fits, else cut anew."""
    end = edges.suffix_end if edges is not None else -1
    if edges is not None and 0 < end < len(suffix) and end <= window.end and \
            suffix[:end].endswith(edges.suffix_anchor):
        ids = head_ids(tokenizer, suffix, window, end)
        if len(ids) <= budget:
            return ids, end
    ids, end = cut_head(tokenizer, suffix, window, budget)
    if end < len(suffix) and edges is not None:
        ids, end = cut_head(tokenizer, suffix, window, budget - int(budget * STICKY_SLACK))
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
    encoded = encode(tokenizer, text)[0]
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
        tail = [*lead, *encode(tokenizer, f"{path}\n")[0]] if path else []
        if repo_name and template.repo_name:
            # Qwen2.5-Coder writes `<|repo_name|>name\n`, StarCoder2 `<repo_name>name`.
            newline = "\n" if template.repo_name.startswith("<|") else ""
            head = [special_id(tokenizer, template.repo_name),
                    *encode(tokenizer, repo_name + newline)[0]]
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
        prefix_window = tail_window(tokenizer, cursor.prefix, budget)
    else:
        prefix_window = tail_window_again(tokenizer, cursor.prefix, budget,
                                           edges.prefix_window, edges.prefix_text)
    prefix_need = len(prefix_window.ids) if prefix_window.base == 0 else budget + 1
    suffix_cap = budget - min(prefix_need, int(budget * PREFIX_SHARE))  # the most it can get
    if edges is None:
        suffix_window = head_window(tokenizer, cursor.suffix, suffix_cap)
    else:
        suffix_window = head_window_again(tokenizer, cursor.suffix, suffix_cap,
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
