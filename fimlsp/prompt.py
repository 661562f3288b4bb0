"""FIM prompts that fit the model's window exactly, counted in the model's own tokens.

The prompt is assembled from token ids, not from a string: each part (prefix, suffix) is
tokenized on its own with special-token matching off, and the template's special tokens are
inserted by id. That makes the count exact (what we count is what the model sees) and makes it
impossible for document text to smuggle in a `<fim_middle>`.

Only a character window around the cursor is ever tokenized, so the cost does not depend on the
size of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from fimlsp.context import Cursor, Snippet
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import FimTemplate

PREFIX_SHARE = 0.75  # of the budget, when both sides want more than they can have
STICKY_SLACK = 0.125  # of a side's budget, given up when its edge must move
_CHARS_PER_TOKEN_GUESS = 4  # first character window; doubled until it holds enough tokens


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    text: str
    format: str  # e.g. "starcoder/spm"
    window: int
    reserved: int  # tokens left free for the answer
    prefix_tokens: int
    suffix_tokens: int
    prefix_chars: int  # how much of the document's prefix made it into the prompt
    suffix_chars: int
    neighbour_tokens: int = 0  # snippets of other open documents, before the FIM part

    def accounting(self) -> dict[str, object]:
        return {"format": self.format, "window": self.window, "reserved": self.reserved,
                "prompt_tokens": len(self.ids), "prefix_tokens": self.prefix_tokens,
                "suffix_tokens": self.suffix_tokens, "neighbour_tokens": self.neighbour_tokens}


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


def fit_tail(tokenizer: Tokenizer, text: str, budget: int) -> tuple[list[int], int]:
    """The longest tail of `text` within `budget` tokens, starting at a line start when it can.

    Returns its ids and its start offset in `text`.
    """
    if budget <= 0 or not text:
        return [], len(text)
    chars = budget * _CHARS_PER_TOKEN_GUESS
    while True:
        start = max(0, len(text) - chars)
        ids, offsets = _encode(tokenizer, text[start:])
        if len(ids) <= budget and start == 0:
            return ids, 0
        if len(ids) >= budget or start == 0:
            break
        chars *= 2
    window = text[start:]
    drop = len(ids) - budget  # tokens to lose at the front
    while drop < len(offsets):
        cut = offsets[drop][0]
        newline = window.find("\n", max(cut - 1, 0))
        if newline != -1 and newline + 1 < len(window):
            cut = newline + 1  # whole lines only, unless the last line alone is too long
        kept, _ = _encode(tokenizer, window[cut:])
        if len(kept) <= budget:
            return kept, start + cut
        drop += len(kept) - budget
    return [], len(text)


def fit_head(tokenizer: Tokenizer, text: str, budget: int) -> tuple[list[int], int]:
    """The longest head of `text` within `budget` tokens, ending at a line end when it can.

    Returns its ids and its length in characters.
    """
    if budget <= 0 or not text:
        return [], 0
    chars = budget * _CHARS_PER_TOKEN_GUESS
    while True:
        end = min(len(text), chars)
        ids, offsets = _encode(tokenizer, text[:end])
        if len(ids) <= budget and end == len(text):
            return ids, end
        if len(ids) > budget or end == len(text):
            break
        chars *= 2
    window = text[:end]
    keep = budget
    while keep > 0:
        cut = offsets[keep][0] if keep < len(offsets) else len(window)
        newline = window.rfind("\n", 0, cut)
        if newline != -1:
            cut = newline + 1
        kept, _ = _encode(tokenizer, window[:cut])
        if len(kept) <= budget:
            return kept, cut
        keep -= len(kept) - budget
    return [], 0


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


_ANCHOR = 64  # characters compared to decide that an edge is still where it was


def _sticky_tail(tokenizer: Tokenizer, prefix: str, budget: int, edges: Edges | None
                 ) -> tuple[list[int], int]:
    """The prefix tail: from the previous edge if it is intact and fits, else cut anew."""
    if edges is not None and 0 < edges.prefix_start <= len(prefix) and prefix.startswith(
            edges.prefix_anchor, edges.prefix_start):
        ids, _ = _encode(tokenizer, prefix[edges.prefix_start:])
        if len(ids) <= budget:
            return ids, edges.prefix_start
    ids, start = fit_tail(tokenizer, prefix, budget)
    if start > 0 and edges is not None:
        ids, start = fit_tail(tokenizer, prefix, budget - int(budget * STICKY_SLACK))
    return ids, start


def _sticky_head(tokenizer: Tokenizer, suffix: str, budget: int, edges: Edges | None
                 ) -> tuple[list[int], int]:
    """The suffix head: up to the previous edge if it is intact and fits, else cut anew."""
    end = edges.suffix_end if edges is not None else -1
    if edges is not None and 0 < end < len(suffix) and suffix[:end].endswith(
            edges.suffix_anchor):
        ids, _ = _encode(tokenizer, suffix[:end])
        if len(ids) <= budget:
            return ids, end
    ids, end = fit_head(tokenizer, suffix, budget)
    if end < len(suffix) and edges is not None:
        ids, end = fit_head(tokenizer, suffix, budget - int(budget * STICKY_SLACK))
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


def neighbour_ids(tokenizer: Tokenizer, template: FimTemplate, snippets: Sequence[Snippet],
                  path: str | None, budget: int) -> list[int]:
    """Snippets of other files in the family's repository format, within `budget` tokens.

    Families trained on repositories (StarCoder2, Qwen2.5-Coder) get `<file_sep>path\ncode`
    blocks and then the current file's own header; the others get the snippets as comments
    ("Compare this snippet from …", as Copilot does), so the model reads them as context, not as
    code of this file. The most similar snippets are kept first; one that does not fit whole is
    cut at a line end.
    """
    if not snippets or budget <= 0:
        return []
    lead: list[int] = []
    tail: list[int] = []
    if template.file_sep:
        lead = [special_id(tokenizer, template.file_sep)]
        tail = [*lead, *_encode(tokenizer, f"{path}\n")[0]] if path else []
        texts = [f"{s.path}\n{s.text}" for s in snippets]
    else:
        mark = comment_marker(path)
        texts = [f"{mark} Compare this snippet from {s.path}:\n" + "".join(
            f"{mark} {line}\n" for line in s.text.splitlines()) for s in snippets]
    room = budget - len(tail)
    blocks: list[list[int]] = []
    for text in reversed(texts):  # best first
        ids = [*lead, *_encode(tokenizer, text)[0]]
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
    return [i for block in blocks for i in block] + tail


def build_prompt(tokenizer: Tokenizer, template: FimTemplate, order: str, cursor: Cursor,
                 window: int, reserved: int, edges: Edges | None = None,
                 snippets: Sequence[Snippet] = (), path: str | None = None,
                 neighbour_share: float = 0.0) -> Prompt:
    """The prompt for `cursor`, using at most `window - reserved` tokens.

    With `edges` (kept per document by the caller) the cut points are sticky, and `edges` is
    updated to this prompt's cuts. `snippets` of other documents take at most `neighbour_share`
    of the budget and go first, where they stay cached while the user types.
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
    context = neighbour_ids(tokenizer, template, snippets, path, int(budget * neighbour_share))
    budget -= len(context)
    # How much each side could use, capped at the whole budget (cheap: windows are bounded).
    prefix_need = len(fit_tail(tokenizer, cursor.prefix, budget)[0])
    suffix_need = len(fit_head(tokenizer, cursor.suffix, budget)[0])
    prefix_budget, suffix_budget = _share(budget, prefix_need, suffix_need)
    prefix_ids, prefix_start = _sticky_tail(tokenizer, cursor.prefix, prefix_budget, edges)
    suffix_ids, suffix_end = _sticky_head(tokenizer, cursor.suffix, suffix_budget, edges)
    if edges is not None:
        edges.prefix_start = prefix_start
        edges.prefix_anchor = cursor.prefix[prefix_start:prefix_start + _ANCHOR]
        edges.suffix_end = suffix_end
        edges.suffix_anchor = cursor.suffix[max(0, suffix_end - _ANCHOR):suffix_end]
    if order == "psm":
        ids = [*bos, *context, pre, *prefix_ids, suf, *suffix_ids, mid]
    elif template.spm_style == "neox":
        ids = [*bos, *context, suf, *suffix_ids, pre, *prefix_ids, mid]
    else:
        ids = [*bos, *context, pre, suf, *suffix_ids, mid, *prefix_ids]
    return Prompt(
        ids=ids,
        text=tokenizer.decode(ids, skip_special_tokens=False),
        format=f"{template.name}/{order}",
        window=window,
        reserved=reserved,
        prefix_tokens=len(prefix_ids),
        suffix_tokens=len(suffix_ids),
        prefix_chars=len(cursor.prefix) - prefix_start,
        suffix_chars=suffix_end,
        neighbour_tokens=len(context),
    )
