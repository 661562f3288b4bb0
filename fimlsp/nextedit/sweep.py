"""Sweep Next-Edit's next-edit prompt, exact in tokens.

**Sweep Next-Edit** (sweepai/sweep-next-edit-0.5B, -1.5B; Qwen2.5-Coder based; Apache-2.0). Read
from the authors' own prompt builder (PyPI `sweep-autocomplete` 0.1.1,
`autocomplete/next_edit_autocomplete.py`, which their VS Code extension's local mode runs) and
their post "Open sourcing a 1.5B parameter Next-Edit Autocomplete Model". Qwen2.5-Coder's own
`<|file_sep|>` pretraining token separates every part; no chat template, no instructions:

    <|file_sep|>{other file}\\n{a range of it}\\n          (recently viewed; one for a local model)
    <|file_sep|>{path}\\n{file before the recent edits}\\n
    <|file_sep|>{path}:{s}:{e}\\noriginal:\\n{old}\\nupdated:\\n{new}\\n      (last 6 edits)
    \\n                                                     (only when there are no edits)
    <|file_sep|>original/{path}:{s}:{e}\\n{region before the edits}\\n
    <|file_sep|>current/{path}:{s}:{e}\\n{region, <|cursor|> at the cursor}\\n
    <|file_sep|>updated/{path}:{s}:{e}\\n{prefill}

The model writes the updated region and ends with `<|file_sep|>` or `<|endoftext|>`. The region
is the cursor's line, 2 lines above and 5 below (blank lines at its edges skipped, as theirs
does); an edit shows one line of context each side; `s` is the cursor's line in the region, 1-based,
and `e` = s + the region's line count (their numbering, kept as trained). `prefill` is the
region's first line when the cursor is below it (their `changes_above_cursor`, which their
extension sets), else the first line up to the cursor: the model's rewrite starts from it.

The file part is theirs (the whole file up to 800 lines, else the 300-line chunk at a multiple
of 150 lines nearest the cursor); where the window has no room for it, it is cut by tokens around
the cursor on whole lines (theirs: a character estimate), so the prompt fits the window exactly.
Differences from theirs, all at the edges: leading blank lines are not skipped past the
cursor's own line (theirs could leave the cursor outside the region); CRLF files are shown with
\\n (the rewrite gets the file's line breaks back, `edits.match_line_breaks`).

Exact in tokens: text is encoded in pieces between the `<|file_sep|>` tokens, which enter by id
(a document can never spell a control token: the tokenizer encodes special-token text as text).
Special tokens are hard boundaries for Qwen2's pre-tokenizer, so the pieces' sum is the whole
prompt's encoding (tests/test_nextedit_history.py checks it against the tokenizer itself), and
each optional piece can be dropped or cut knowing its exact cost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from tokenizers import Tokenizer

from fimlsp.documents import Text
from fimlsp.errors import ErrorKind, FimError
from fimlsp.nextedit.formats import (
    MAX_REGION_LINE_CHARS,
    NextEditFormat,
    NextEditPrompt,
    Viewed,
    encode,
    lf,
    region_lines,
)
from fimlsp.nextedit.history import HunkLines

CURSOR = "<|cursor|>"
# The file part of recent prompts, by (version, place, budget, ...): a 3,000-line file costs tens
# of milliseconds to encode, and it is the same from one request to the next. Versions are
# immutable, so a key never goes stale; a few are kept, then they and their versions are freed.
_FILE_PARTS: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
_FILE_PARTS_KEPT = 8
_FILE_PARTS_LOCK = threading.Lock()
WHOLE_FILE_LINES = 800  # Sweep's builder shows a file this long whole,
FILE_CHUNK_LINES = 300  # else this many lines around the cursor, at a multiple of half that


def build_sweep(tokenizer: Tokenizer, fmt: NextEditFormat, doc: Text, cursor: int, uri: str,
                path: str,
                edits: list[HunkLines], original: Text | None, viewed: list[Viewed],
                window: int, max_new_tokens: int, paths: dict[str, str] | None = None
                ) -> NextEditPrompt:
    """The prompt for the cursor at offset `cursor` of `doc`, at most `window` tokens including
    the rewrite's `max_new_tokens` (the rewrite is capped at what the region needs, so the
    reservation is only that). `edits`: recent hunks oldest first; `original`: the document
    before them; `uri`: the document's key (as history keys it); `paths`: display paths of the
    other documents' keys."""
    sep = tokenizer.token_to_id(fmt.file_sep)
    if sep is None:
        raise FimError(ErrorKind.UNSUPPORTED, f"the tokenizer has no {fmt.file_sep} token: the "
                       f"{fmt.name} next-edit format needs a Qwen2.5-Coder tokenizer")
    line = doc.line_of(cursor)
    first, end = region_lines(doc, line, fmt.lines_before, fmt.lines_after)
    start, stop = doc.line_start(first), doc.line_start(end) if end < doc.line_count \
        else len(doc)
    region = doc.slice(start, stop)
    if any(len(x) > MAX_REGION_LINE_CHARS for x in region.splitlines()):
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, "a line near the cursor is too long for a "
                       "next edit")
    local = len(lf(doc.slice(start, cursor)))  # the cursor in the \n-only region
    block = lf(region)
    current = block[:local] + CURSOR + block[local:]
    previous = block
    # The region before the recent edits of this file, newest reverted first (as theirs does).
    for hunk in reversed([h for h in edits if h.uri == uri]):
        old_ctx, new_ctx = _with_context(hunk, 1)
        old, new = lf(hunk.old), lf(hunk.new)
        if new_ctx.strip() and new_ctx in previous:
            previous = previous.replace(new_ctx, old_ctx, 1)
        elif new.strip() and new in previous:
            previous = previous.replace(new, old, 1)
        else:
            break
    if current.endswith("\n") and previous.endswith("\n"):
        current, previous = current[:-1], previous[:-1]
    cursor_line = block[:local].count("\n")
    s = cursor_line + 1
    e = cursor_line + len(current.splitlines()) + 1
    head = block[:local].split("\n")
    prefill = head[0] + "\n" if len(head) > 1 else head[0]
    if len(head) > 1:  # and the blank lines after the first line
        for rest in head[1:-1]:
            if rest:
                break
            prefill += "\n"

    def piece(text: str) -> list[int]:
        return encode(tokenizer, text)

    tail_ids = [sep, *piece(f"original/{path}:{s}:{e}\n{previous}\n"),
                sep, *piece(f"current/{path}:{s}:{e}\n{current}\n"),
                sep, *piece(f"updated/{path}:{s}:{e}\n{prefill}")]
    rewrite_tokens = len(piece(block)) + 16  # the rewrite copies the region, more or less
    max_new = min(max_new_tokens, rewrite_tokens * 2)
    budget = window - max_new
    least = 1 + len(piece(f"{path}\n\n\n"))  # the file part with no lines and no edits
    if len(tail_ids) + least > budget:
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, f"the next-edit prompt needs "
                       f"{len(tail_ids) + least} tokens and the window leaves {budget}")
    # Recent edits, newest first, within half of what the region and the file part leave.
    shown: list[list[int]] = []
    spent = 0
    for hunk in reversed(edits[-fmt.max_edits:]):
        old_ctx, new_ctx = _with_context(hunk, 1)
        hunk_path = (paths or {}).get(hunk.uri, path)
        hunk_first = hunk.line + (0 if hunk.above is None else -1) + 1
        body = (f"{hunk_path}:{hunk_first}:{hunk_first + _count_lines(old_ctx, new_ctx) - 1}\n"
                f"original:\n{old_ctx.strip(chr(10))}\nupdated:\n{new_ctx.strip(chr(10))}\n")
        ids = [sep, *piece(body)]
        if spent + len(ids) > (budget - len(tail_ids) - least) // 2:
            break
        shown.append(ids)
        spent += len(ids)
    shown.reverse()
    # The file before the edits: whole lines around the cursor, as many as fit.
    source = original if original is not None else doc
    around = min(source.line_of(cursor), source.line_count - 1)
    file_ids = [sep, *_fit_lines(tokenizer, source, around, budget - len(tail_ids) - spent - 1,
                                 path, "" if shown else "\n")]
    left = budget - len(tail_ids) - spent - len(file_ids)
    viewed_ids: list[int] = []
    for snippet in viewed[:fmt.max_viewed]:
        ids = [sep, *piece(f"{snippet.path}\n{lf(snippet.text)}\n")]
        if len(ids) <= left:
            viewed_ids += ids
            left -= len(ids)
    ids = viewed_ids + file_ids + [i for chunk in shown for i in chunk] + tail_ids
    if len(ids) + max_new > window:  # the accounting above is exact: this is a bug if it fires
        raise AssertionError(f"next-edit prompt of {len(ids)} tokens overflows {window}")
    return NextEditPrompt(
        ids=ids, text=tokenizer.decode(ids, skip_special_tokens=False), region=region,
        region_start=start, first_line=first, prefill=prefill, max_new_tokens=max_new,
        parts={"viewed": len(viewed_ids), "file": len(file_ids), "edits": spent,
               "region": len(tail_ids), "edits_shown": len(shown)})


def _with_context(hunk: HunkLines, lines: int) -> tuple[str, str]:
    """old and new with the unchanged line above and below (\\n line breaks)."""
    above = lf(hunk.above) + "\n" if hunk.above is not None and lines else ""
    below = "\n" + lf(hunk.below) if hunk.below is not None and lines else ""
    return above + lf(hunk.old) + below, above + lf(hunk.new) + below


def _count_lines(old: str, new: str) -> int:
    """Lines of the hunk as a unified diff counts them: context once, old and new lines."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    common = 0
    while common < min(len(old_lines), len(new_lines)) and old_lines[common] == new_lines[common]:
        common += 1
    tail = 0
    while tail < min(len(old_lines), len(new_lines)) - common and \
            old_lines[-1 - tail] == new_lines[-1 - tail]:
        tail += 1
    return common + tail + (len(old_lines) - common - tail) + (len(new_lines) - common - tail)


def _fit_lines(tokenizer: Tokenizer, doc: Text, line: int, budget: int, path: str,
               trailer: str) -> list[int]:
    """The encoding of "{path}\\n{lines}\\n{trailer}": the lines Sweep's builder shows (the
    whole file up to `WHOLE_FILE_LINES` lines, else the `FILE_CHUNK_LINES`-line chunk at a
    multiple of half that whose centre is nearest the cursor), or, when those do not fit
    `budget` tokens, the most whole lines around `line` that do. The span starts at a multiple of
    32 lines, so the next request's prompt starts the same and the engine's cache keeps it."""
    total = doc.line_count
    top, bottom = 0, total
    if total > WHOLE_FILE_LINES:
        stride = FILE_CHUNK_LINES // 2
        top = max(0, round((line - stride) / stride)) * stride
        bottom = min(total, top + FILE_CHUNK_LINES)
    centre = line // 32 * 32 + 16  # where a cut span is centred moves in 32-line steps
    key = (doc, top, centre, budget, path, trailer, id(tokenizer))
    with _FILE_PARTS_LOCK:  # a serving engine's requests build prompts on several threads
        cached = _FILE_PARTS.get(key)
        if cached is not None:
            _FILE_PARTS.move_to_end(key)
            return cached
    lines = bottom - top  # the most lines shown

    def encode_span(span: int) -> list[int]:
        first = top if span >= lines else \
            top + max(0, min(centre - top - span // 2, lines - span)) // 32 * 32
        last = min(bottom, first + span)
        end = len(doc) if last == total else doc.line_end(last - 1)  # the file's own end
        text = lf(doc.slice(doc.line_start(first), end)) if span else ""
        return encode(tokenizer, f"{path}\n{text}\n{trailer}")

    fits, fails = 0, lines + 1  # spans known to fit / not to fit
    span, best = lines, None
    for _ in range(24):  # density guesses, then bisection: a few encodings of the window
        ids = encode_span(span)
        if len(ids) <= budget:
            fits, best = span, ids
        else:
            fails = span
        if fails - fits <= max(1, fits // 64):
            break
        guess = span * budget // max(1, len(ids))
        span = guess if fits < guess < fails else (fits + fails) // 2
    ids = best if best is not None else encode_span(0)
    with _FILE_PARTS_LOCK:
        _FILE_PARTS[key] = ids  # the same original and place next time: no encoding at all
        while len(_FILE_PARTS) > _FILE_PARTS_KEPT:
            _FILE_PARTS.popitem(last=False)
    return ids
