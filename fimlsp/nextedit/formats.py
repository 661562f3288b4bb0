"""Next-edit prompts as the open next-edit models were trained on them, exact in tokens: what
a format is (`NextEditFormat`, the known ones in `FORMATS`), the prompt one builds
(`NextEditPrompt`) and what the formats share. Each format's own prompt is its module's:
Sweep Next-Edit's in sweep.py, Zed's Zeta's in zeta.py; service.py picks one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenizers import Tokenizer

from fimlsp.documents import Text

MAX_REGION_LINE_CHARS = 1000  # a longer line in the region (minified code): no next edit


@dataclass(frozen=True)
class NextEditFormat:
    name: str
    file_sep: str  # the separator token, entered by id (Sweep's); "" when the format has none
    stops: tuple[str, ...]
    lines_before: int
    lines_after: int
    max_edits: int  # recent edits shown
    max_viewed: int  # snippets of recently viewed files
    viewed_lines: int  # lines of each
    requires: str = ""  # a token the tokenizer must have (default: file_sep)

    @property
    def required_token(self) -> str:
        return self.requires or self.file_sep


FORMATS: dict[str, NextEditFormat] = {
    f.name: f for f in (
        NextEditFormat("sweep", "<|file_sep|>", ("<|file_sep|>", "<|endoftext|>"),
                       lines_before=2, lines_after=5, max_edits=6, max_viewed=1,
                       viewed_lines=25),
        NextEditFormat("zeta", "", ("<|endoftext|>",), lines_before=0, lines_after=0,
                       max_edits=16, max_viewed=0, viewed_lines=0, requires="<|endoftext|>"),
    )
}

@dataclass(frozen=True)
class Viewed:
    """A range of another open document the user looked at lately."""

    path: str
    text: str


@dataclass
class NextEditPrompt:
    ids: list[int]
    text: str  # for display and tests; the ids are what the model gets
    region: str  # the document's text of the editable region (its own line breaks)
    region_start: int  # offset of the region in the document (always a line start)
    first_line: int  # the region's first line
    prefill: str  # the rewrite's start, already in the prompt (\\n line breaks)
    max_new_tokens: int
    parts: dict[str, int] = field(default_factory=dict)  # tokens per part, for accounting


def lf(text: str) -> str:
    """`text` with \\n line breaks only: what the formats show."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def region_lines(doc: Text, line: int, before: int, after: int) -> tuple[int, int]:
    """[first, last) lines of the editable region around `line`: blank lines at its edges
    dropped (the top one's place going to a line below, as in Sweep's builder), never past the
    cursor's own line."""
    count = doc.line_count
    first, end = max(0, line - before), min(count, line + after + 1)

    def blank(n: int) -> bool:
        return not doc.slice(doc.line_start(n), doc.line_end(n)).strip()

    while first < line and blank(first):
        first += 1
        end = min(count, end + 1)
    while end - 1 > line and blank(end - 1):
        end -= 1
    return first, end


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of `text` as plain text (special-token text is encoded as text)."""
    return tokenizer.encode(text, add_special_tokens=False).ids if text else []
