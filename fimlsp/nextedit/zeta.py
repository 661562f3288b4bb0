"""Zeta's next-edit prompt and the rewrite read from its answer.

**Zeta** (zed-industries/zeta, Zed's open next-edit model: Qwen2.5-Coder-7B fine-tuned;
Apache-2.0). Read from Zed's `crates/zeta` (the excerpt and the edit events its client sends) and
the SFT script its model card points to (the Alpaca-style template the model was trained on,
whose answer starts at the editable-region marker):

    ### Instruction:\n{one sentence}\n\n### User Edits:\n\n{events}\n\n
    ### User Excerpt:\n\n```{path}\n[<|start_of_file|>\n]{context before}
    <|editable_region_start|>\n{region, <|user_cursor_is_here|> at the cursor}\n
    <|editable_region_end|>[\n{context after}]\n```\n\n### Response:\n\n

An event is `User edited "{path}":\n```diff\n{unified diff, 3 lines of context}```` (the
path as Rust's Debug writes it, as Zed's client did when the training data was collected),
oldest first, joined by blank lines, newest kept first within 500 estimated tokens. The model
answers `<|editable_region_start|>\n{the region rewritten}\n<|editable_region_end|>...`;
generation stops at the end marker (seven ordinary tokens, not a special one). The region grows
from the cursor's line by whole lines, one above and one below in turn, until 350 estimated
tokens (bytes / 3, Zed's estimate), and the context by 150 more: Zed's expansion for a buffer
without a syntax tree (with one, Zed first takes the largest syntax node around the cursor that
fits: not done here). The markers are ordinary text, so the prompt is encoded whole (it is a few
hundred tokens, not a file) and exact by construction; what does not fit the window is dropped,
oldest event first, then context lines, never part of the region. A document that spells one of
the markers near the cursor gets no next edit (its rewrite could not be told apart).
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer

from fimlsp.documents import Text
from fimlsp.errors import ErrorKind, FimError
from fimlsp.nextedit.formats import (
    MAX_REGION_LINE_CHARS,
    NextEditFormat,
    NextEditPrompt,
    encode,
    lf,
)
from fimlsp.nextedit.history import HunkLines

# Zeta's prompt, as its SFT template has it (the instruction is part of the format: the model
# was trained on these exact words), and its markers (ordinary text to the tokenizer).
ZETA_HEAD = ("### Instruction:\nYou are a code completion assistant and your task is to analyze "
             "user edits and then rewrite an excerpt that the user provides, suggesting the "
             "appropriate edits within the excerpt, taking into account the cursor location."
             "\n\n### User Edits:\n\n")
ZETA_EXCERPT = "\n\n### User Excerpt:\n\n"
ZETA_RESPONSE = "\n\n### Response:\n\n"
ZETA_CURSOR = "<|user_cursor_is_here|>"
ZETA_START_OF_FILE = "<|start_of_file|>"
ZETA_REGION_START = "<|editable_region_start|>"
ZETA_REGION_END = "<|editable_region_end|>"
ZETA_MARKERS = (ZETA_CURSOR, ZETA_START_OF_FILE, ZETA_REGION_START, ZETA_REGION_END)
ZETA_REWRITE_TOKENS = 350  # Zed's estimates (bytes / 3) for the region,
ZETA_CONTEXT_TOKENS = 150  # the context around it,
ZETA_EVENT_TOKENS = 500  # and the edit events
ZETA_BYTES_PER_TOKEN = 3



def _zeta_guess(text: str) -> int:
    """Zed's token estimate (bytes / 3), which sized the excerpts the model was trained on."""
    return len(text.encode("utf-8")) // ZETA_BYTES_PER_TOKEN


def _zeta_expand(doc: Text, first: int, last: int, budget: int) -> tuple[int, int]:
    """[first, last] (inclusive lines) grown a line above, then a line below, in turn, while the
    estimated budget lasts (a line is taken whole even when it overdraws it), as Zed does."""
    top = doc.line_count - 1
    while True:
        grew = False
        if budget > 0 and first > 0:
            first -= 1
            budget = max(0, budget - _zeta_guess(lf(doc.slice(doc.line_start(first),
                                                                doc.line_end(first)))))
            grew = True
        if budget > 0 and last < top:
            last += 1
            budget = max(0, budget - _zeta_guess(lf(doc.slice(doc.line_start(last),
                                                                doc.line_end(last)))))
            grew = True
        if not grew:
            return first, last


def zeta_event(hunk: HunkLines, path: str) -> str:
    """One edit event as Zed's client wrote it: the path quoted as Rust's Debug does."""
    quoted = json.dumps(path, ensure_ascii=False)
    return f"User edited {quoted}:\n```diff\n{hunk.unified_diff()}\n```"


def build_zeta(tokenizer: Tokenizer, fmt: NextEditFormat, doc: Text, cursor: int, path: str,
               edits: list[HunkLines], window: int, max_new_tokens: int,
               paths: dict[str, str] | None = None) -> NextEditPrompt:
    """Zeta's prompt for the cursor at offset `cursor` of `doc`, at most `window` tokens with
    the rewrite's reservation. `edits`: recent hunks oldest first; `paths`: display paths of
    their documents' keys."""
    line = doc.line_of(cursor)
    first, last = _zeta_expand(doc, line, line, ZETA_REWRITE_TOKENS)
    outer_first, outer_last = _zeta_expand(doc, first, last, ZETA_CONTEXT_TOKENS)
    start, stop = doc.line_start(first), doc.line_end(last)
    region = doc.slice(start, stop)
    if any(len(x) > MAX_REGION_LINE_CHARS for x in region.splitlines()):
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, "a line near the cursor is too long for a "
                       "next edit")
    block = lf(region)
    local = len(lf(doc.slice(start, cursor)))

    def excerpt(ctx_first: int, ctx_last: int) -> str:
        before = lf(doc.slice(doc.line_start(ctx_first), start))
        after = lf(doc.slice(stop, doc.line_end(ctx_last)))
        return (f"```{path}\n" + (f"{ZETA_START_OF_FILE}\n" if ctx_first == 0 else "") + before
                + f"{ZETA_REGION_START}\n{block[:local]}{ZETA_CURSOR}{block[local:]}\n"
                + f"{ZETA_REGION_END}{after}\n```")

    text = excerpt(outer_first, outer_last)
    if any(marker in lf(doc.slice(doc.line_start(outer_first), doc.line_end(outer_last)))
           for marker in ZETA_MARKERS):
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, "the text near the cursor spells one of "
                       "Zeta's markers: no next edit there")
    # The rewrite copies the region (and the markers around it), more or less.
    max_new = min(max_new_tokens, 2 * len(encode(tokenizer, block)) + 32)
    budget = window - max_new
    # Events, newest first, within Zed's estimate; then dropped oldest first until it fits.
    events: list[str] = []
    guessed = 0
    for hunk in reversed(edits[-fmt.max_edits:]):
        event = zeta_event(hunk, (paths or {}).get(hunk.uri, path))
        if guessed + _zeta_guess(event) > ZETA_EVENT_TOKENS:
            break
        guessed += _zeta_guess(event)
        events.insert(0, event)
    ctx_first, ctx_last = outer_first, outer_last

    def prompt_text() -> str:
        return ZETA_HEAD + "\n\n".join(events) + ZETA_EXCERPT + text + ZETA_RESPONSE

    ids = encode(tokenizer, prompt_text())
    while len(ids) > budget and events:
        events.pop(0)
        ids = encode(tokenizer, prompt_text())
    while len(ids) > budget and (ctx_first < first or ctx_last > last):
        # the context line farther from the cursor goes first
        if ctx_first < first and (ctx_last <= last or line - ctx_first >= ctx_last - line):
            ctx_first += 1
        else:
            ctx_last -= 1
        text = excerpt(ctx_first, ctx_last)
        ids = encode(tokenizer, prompt_text())
    if len(ids) > budget:
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, f"the next-edit prompt needs {len(ids)} "
                       f"tokens and the window leaves {budget}")
    return NextEditPrompt(
        ids=ids, text=prompt_text(), region=region, region_start=start, first_line=first,
        prefill="", max_new_tokens=max_new,
        parts={"edits_shown": len(events), "context_lines": (first - ctx_first)
               + (ctx_last - last), "region_lines": last - first + 1})


def zeta_rewrite(output: str) -> str | None:
    """The region Zeta's answer rewrote (\\n line breaks), or None when the answer is not one:
    one start marker, then a line break, the region, a line break and the end marker."""
    output = output.replace(ZETA_CURSOR, "")
    if output.count(ZETA_REGION_START) != 1 or output.count(ZETA_REGION_END) != 1:
        return None
    body = output[output.index(ZETA_REGION_START):]
    if "\n" not in body:
        return None
    body = body[body.index("\n") + 1:]
    end = body.rfind("\n" + ZETA_REGION_END)
    return body[:end] if end >= 0 else None
