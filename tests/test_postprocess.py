"""mode_for / wants_stop / clean: table-driven, one row per rule the module states."""

from __future__ import annotations

import pytest

from fimlsp.context import Cursor
from fimlsp.postprocess import clean, mode_for, wants_stop


def at(prefix: str, suffix: str = "") -> Cursor:
    return Cursor(prefix=prefix, suffix=suffix, line=0, character=0)


# (id, prefix, suffix, policy, expected mode)
MODES = [
    ("mid-line", "x = foo(", "a)\n", "auto", "single"),
    ("mid-line-always", "x = foo(", "a)\n", "always", "single"),
    ("mid-line-after-colon", "def f(x):", " pass\n", "auto", "single"),
    ("eol-after-colon", "def f(x):", "\n    pass\n", "auto", "block"),
    ("eol-after-colon-trailing-space", "def f(x):  ", "\n", "auto", "block"),
    ("eol-after-brace", "if (x) {", "\n}\n", "auto", "block"),
    ("eol-after-bracket", "items = [", "\n]\n", "auto", "block"),
    ("eol-after-paren", "call(", "", "auto", "block"),
    ("eol-after-arrow", "const f = (x) =>", "", "auto", "block"),
    ("eol-after-ruby-do", "items.each do", "\nend\n", "auto", "block"),
    ("eol-after-then", "if x then", "", "auto", "block"),
    ("eol-after-assign", "x =", "", "auto", "block"),
    ("eol-plain-statement", "x = 1", "\n", "auto", "single"),
    ("eol-comparison", "ok = a == b", "\n", "auto", "single"),
    ("eol-redo-is-not-do", "x.redo", "\n", "auto", "single"),
    ("eol-line-suffix-only-spaces", "x = 1", "   \n", "auto", "single"),
    ("empty-line", "def f():\n", "\n", "auto", "block"),
    ("indented-empty-line", "def f():\n    ", "\n", "auto", "block"),
    ("empty-document", "", "", "auto", "block"),
    ("never-after-colon", "def f(x):", "\n", "never", "single"),
    ("never-empty-line", "\n", "", "never", "single"),
    ("always-plain-statement", "x = 1", "\n", "always", "block"),
    ("crlf-after-colon", "a\r\ndef f(x):", "\r\n    pass", "auto", "block"),
    ("crlf-mid-line", "a\r\nx = foo(", "a)\r\n", "auto", "single"),
]


@pytest.mark.parametrize(("prefix", "suffix", "policy", "mode"), [r[1:] for r in MODES],
                         ids=[r[0] for r in MODES])
def test_mode_for(prefix: str, suffix: str, policy: str, mode: str) -> None:
    assert mode_for(at(prefix, suffix), policy) == mode


# (id, text so far, mode, stop?)
STOPS = [
    ("no-break", "foo(a", "single", False),
    ("break-after-text", "foo(a)\n", "single", True),
    ("break-after-text-more", "foo(a)\nbar", "single", True),
    ("only-break", "\n", "single", False),
    ("only-blank-lines", " \n  \n", "single", False),
    ("block-never-stops-early", "foo(a)\nbar\n", "block", False),
]


@pytest.mark.parametrize(("text", "mode", "stop"), [r[1:] for r in STOPS],
                         ids=[r[0] for r in STOPS])
def test_wants_stop(text: str, mode: str, stop: bool) -> None:
    assert wants_stop(text, mode) is stop


# (id, prefix, suffix, generated text, mode, expected suggestion)
CLEANS = [
    # -- single line
    ("single-cut-at-newline", "x = ", "\n", "foo(1)\nbar(2)\n", "single", "foo(1)"),
    ("single-drops-rest-of-line", "print(", ")\n", "x)", "single", "x"),
    ("single-drops-rest-of-line-with-spaces", "call(", "a, b)\n", "x, a, b)  \n", "single", "x, "),
    ("single-whole-text-duplicates", "foo(", "a, b)\n", "a, b)", "single", ""),
    ("single-keeps-partial-closer", "f(g(", ")\n", "x))", "single", "x)"),
    ("single-no-duplicate", "x = foo(", ")\n", "a, b", "single", "a, b"),
    ("single-trailing-whitespace", "x = ", "\n", "1   \t", "single", "1"),
    ("single-whitespace-only", "x = ", "\n", "   ", "single", ""),
    ("single-empty", "x = ", "\n", "", "single", ""),
    ("single-crlf-model-text", "a = 1\r\nx = ", "\r\n", "2\r\nb", "single", "2"),
    ("single-mid-line-leading-break", "foo(", "a)\n", "\nbar", "single", ""),
    # The module's own comment: at a line's end with nothing after it, a single-line answer may
    # start with the line break (the next line is the suggestion).
    ("single-eol-leading-break", "x = 1", "", "\ny = 2\nz = 3", "single", "\ny = 2"),
    # -- blocks
    ("block-python-body-stops-at-dedent", "def f(x):", "\n",
     "\n    y = x + 1\n    return y\n\nprint(f(2))\n", "block", "\n    y = x + 1\n    return y"),
    ("block-python-nested", "def f(x):", "\n",
     "\n    if x:\n        return 1\n    return 2\nf(1)", "block",
     "\n    if x:\n        return 1\n    return 2"),
    ("block-keeps-closing-brace", "function f(x) {", "",
     "\n  return x;\n}\nf(1);\n", "block", "\n  return x;\n}"),
    ("block-keeps-closing-bracket", "xs = [", "",
     "\n    1,\n    2,\n]\nprint(xs)", "block", "\n    1,\n    2,\n]"),
    ("block-keeps-ruby-end", "items.each do", "",
     "\n  puts 1\nend\nputs 2", "block", "\n  puts 1\nend"),
    ("block-nested-brace-stops-at-outer", "  if (a) {", "",
     "\n    b();\n  }\n}\nmore();", "block", "\n    b();\n  }"),
    ("block-not-a-closer-at-opener-level", "  if (a) {", "",
     "\n    b();\n  c();\n", "block", "\n    b();"),
    ("block-empty-line-keeps-its-indent", "def f(x):\n    ", "\n",
     "y = 1\n    return y\nprint(1)", "block", "y = 1\n    return y"),
    ("block-tabs", "\tif x:", "",
     "\n\t\ty()\n\t\tz()\n\tw()", "block", "\n\t\ty()\n\t\tz()"),
    ("block-blank-lines-inside-kept", "def f():", "",
     "\n    a = 1\n\n    b = 2\n\n\nc = 3", "block", "\n    a = 1\n\n    b = 2"),
    ("block-suffix-closer-dropped", "if (x) {", "\n}\n",
     "\n  a();\n}", "block", "\n  a();"),
    ("block-suffix-two-closers-dropped", "  if (a) {", "\n  }\n}\n",
     "\n    b();\n  }", "block", "\n    b();"),
    ("block-suffix-lines-dropped", "def f(x):", "\n    return y\n",
     "\n    y = x * 2\n    return y", "block", "\n    y = x * 2"),
    ("block-suffix-not-repeated-kept", "def f(x):", "\n    return z\n",
     "\n    y = x * 2\n    return y", "block", "\n    y = x * 2\n    return y"),
    ("block-trailing-whitespace", "def f():", "",
     "\n    x = 1   \n    y = 2\t", "block", "\n    x = 1\n    y = 2"),
    ("block-whitespace-only", "def f():", "", "\n   \n\t\n", "block", ""),
    ("block-crlf-document", "def f():\r\n    pass\r\ndef g():", "\r\n",
     "\n    return 1\n    return 2\n", "block", "\r\n    return 1\r\n    return 2"),
    ("block-crlf-model-text", "a\r\ndef g():", "\r\n",
     "\r\n    return 1\r\nx = 2", "block", "\r\n    return 1"),
    ("block-crlf-suffix-only", "def g():", "\r\n    pass\r\n",
     "\n    x = 1\n", "block", "\r\n    x = 1"),
    ("block-lf-document-stays-lf", "def g():", "\n", "\r\n    x = 1\r\n", "block",
     "\n    x = 1"),
]


@pytest.mark.parametrize(("prefix", "suffix", "text", "mode", "expected"),
                         [r[1:] for r in CLEANS], ids=[r[0] for r in CLEANS])
def test_clean(prefix: str, suffix: str, text: str, mode: str, expected: str) -> None:
    assert clean(text, at(prefix, suffix), mode) == expected


@pytest.mark.parametrize(("prefix", "suffix", "text", "mode"),
                         [r[1:5] for r in CLEANS], ids=[r[0] for r in CLEANS])
def test_clean_never_leaves_trailing_whitespace(prefix: str, suffix: str, text: str,
                                                mode: str) -> None:
    result = clean(text, at(prefix, suffix), mode)
    for line in result.replace("\r\n", "\n").split("\n"):
        # Mid-line single answers may end in a space that separates them from the rest of the line.
        if mode == "single" and at(prefix, suffix).line_suffix.strip():
            continue
        assert line == line.rstrip()
    assert result == "" or result.strip()
