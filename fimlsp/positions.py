"""Lines and positions as LSP counts them: the one codec between LSP positions and str offsets.

A line ends at \\r\\n, \\r or \\n and nowhere else (not at the form feed, U+2028 or the other
breaks `str.splitlines` knows). A character offset counts code units of the position encoding
negotiated at initialize: UTF-16 unless the client offered another (UTF-8 bytes, which Neovim
prefers, or UTF-32 code points). Python strings index code points, so every position the client
sends or receives passes through here: `documents.Text` for positions in a document, the server
for the ranges it answers with.
"""

from __future__ import annotations

import re

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_breaks(text: str) -> int:
    """LSP line breaks in `text` (\\r\\n counts once)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def units_len(text: str, encoding: str = "utf-16") -> int:
    """Code units of `text` in a position encoding (lone surrogates count as one UTF-16 unit,
    three UTF-8 bytes, as an editor holding them in a UTF-16 string counts them)."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-16":
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


def index_of_units(text: str, units: int, encoding: str = "utf-16") -> int:
    """The largest index i with units_len(text[:i]) <= units: an offset inside a character (a
    surrogate pair, a UTF-8 sequence) moves back to that character's start, never splitting it.
    Bisection over C-speed encodes of prefixes, so O(len(text) · log) in C, no Python loop."""
    low, high = 0, min(len(text), units)
    while low < high:
        middle = (low + high + 1) // 2
        if units_len(text[:middle], encoding) <= units:
            low = middle
        else:
            high = middle - 1
    return low
