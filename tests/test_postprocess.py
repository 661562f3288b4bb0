"""mode_for / wants_stop / clean: table-driven, one row per rule the module states (and per
language quirk). The policy as a whole is measured by `fimlsp bench policy`, not asserted here."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fimlsp.context import Cursor
from fimlsp.models import TEMPLATES
from fimlsp.postprocess import clean, strip_special, wants_stop
from fimlsp.surroundings import is_python, mode_for


def at(prefix: str, suffix: str = "") -> Cursor:
    return Cursor(prefix=prefix, suffix=suffix, line=0, character=0)


# (id, prefix, suffix, policy, expected mode)
MODES = [
    ("mid-line", "x = foo(", "a)\n", "auto", "single"),
    ("mid-line-always", "x = foo(", "a)\n", "always", "single"),
    ("mid-line-after-colon", "def f(x):", " pass\n", "auto", "single"),
    # The body is already below the header: the user edits the header, one line.
    ("eol-after-colon-body-below", "def f(x):", "\n    pass\n", "auto", "single"),
    ("eol-after-colon-sibling-below", "    def f(x):", "\n\n    def g(y):\n", "auto", "block"),
    ("eol-after-colon-dedent-below", "    def f(x):", "\n\nprint(1)\n", "auto", "block"),
    ("eol-after-colon-trailing-space", "def f(x):  ", "\n", "auto", "block"),
    ("eol-after-brace", "if (x) {", "\n}\n", "auto", "block"),
    ("eol-after-brace-body-below", "if (x) {", "\n  a();\n}\n", "auto", "single"),
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
    # A header continued over lines: its indentation is its first line's.
    ("eol-continued-header", "    if (a and\n            b):", "\n    c()\n", "auto", "block"),
    ("eol-continued-header-body-below", "    if (a and\n            b):", "\n        c()\n",
     "auto", "single"),
    ("eol-backslash-header", "    if a and \\\n            b:", "\n    c()\n", "auto", "block"),
    ("empty-line", "def f():\n", "\n", "auto", "block"),
    ("indented-empty-line", "def f():\n    ", "\n", "auto", "block"),
    ("empty-document", "", "", "auto", "block"),
    ("never-after-colon", "def f(x):", "\n", "never", "single"),
    ("never-empty-line", "\n", "", "never", "single"),
    ("always-plain-statement", "x = 1", "\n", "always", "block"),
    ("crlf-after-colon-body-below", "a\r\ndef f(x):", "\r\n    pass", "auto", "single"),
    ("crlf-after-colon", "a\r\ndef f(x):", "\r\n\r\ndef g():", "auto", "block"),
    ("crlf-mid-line", "a\r\nx = foo(", "a)\r\n", "auto", "single"),
    # A trailing comment does not hide the opener (held-out Go: `if x { // why`).
    ("brace-then-comment", "func f() {\n\tif ok { // record it", "\n}\n", "auto", "block"),
    ("colon-then-comment", "def f():\n    if ok:  # record it", "\n", "auto", "block"),
    ("comment-ends-with-opener", "x = 1  // see {", "\n", "auto", "single"),
    ("url-in-string-is-no-comment", 'f("http://x", {', "\n", "auto", "block"),
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
    ("block-without-cursor-never-stops-early", "foo(a)\nbar\n", "block", False),
    ("special-token", "foo(a)<|endoftext|>", "block", True),
    ("special-token-single", "foo(<fim_middle>", "single", True),
]


@pytest.mark.parametrize(("text", "mode", "stop"), [r[1:] for r in STOPS],
                         ids=[r[0] for r in STOPS])
def test_wants_stop(text: str, mode: str, stop: bool) -> None:
    assert wants_stop(text, mode) is stop


# (id, prefix, suffix, text so far, stop?): blocks stop once a complete line has ended them.
BLOCK_STOPS = [
    ("body-going-on", "def f(x):", "\n", "\n    a = 1\n    b = 2\n", False),
    ("dedent-line-incomplete", "def f(x):", "\n", "\n    a = 1\nprint(", False),
    ("dedent-line-complete", "def f(x):", "\n", "\n    a = 1\nprint(1)\n", True),
    # `}` may still become `} else {`: only a finished line decides.
    ("closer-incomplete", "if (x) {", "\n", "\n  a();\n}", False),
    # A complete `}` still waits for the next line: Allman style puts `else` there.
    ("closer-complete", "if (x) {", "\n", "\n  a();\n}\n", False),
    ("closer-then-next-statement", "if (x) {", "\n", "\n  a();\n}\nfoo();\n", True),
    ("closer-else-goes-on", "if (x) {", "\n", "\n  a();\n} else {\n", False),
    ("inserted-statement-done", "def f():\n    a = 1\n    ", "\n    return a\n",
     "b = 2\n    c = 3\n", True),
]


@pytest.mark.parametrize(("prefix", "suffix", "text", "stop"), [r[1:] for r in BLOCK_STOPS],
                         ids=[r[0] for r in BLOCK_STOPS])
def test_wants_stop_ends_blocks_by_structure(prefix: str, suffix: str, text: str,
                                             stop: bool) -> None:
    assert wants_stop(text, "block", at(prefix, suffix)) is stop


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
    # start with the line break (the next line is the suggestion) ...
    ("single-eol-leading-break", "x = 1", "", "\ny = 2\nz = 3", "single", "\ny = 2"),
    # ... but not the line that is already there.
    ("single-next-line-already-there", "x = 1", "\ny = 2\n", "\ny = 2\n", "single", ""),
    # The rest of the line, exactly or ignoring whitespace; closers and quotes it already has.
    ("single-rest-ignoring-whitespace", "call(", "a, b)\n", "x, a,b)", "single", "x, "),
    ("single-closer-the-line-needs", "f(g(", ")\n", "x)", "single", "x)"),
    ("single-quote-the-rest-has", 'print("', '")\n', 'hi")', "single", "hi"),
    ("single-quote-only", "x = '", "'\n", "abc'", "single", "abc"),
    ("single-closer-then-more", "foo(", ") + 1\n", "a)", "single", "a"),
    ("single-closer-lines-below-need", "x = f(g(\n    1,\n    h(2", ")\n)\n", ")",
     "single", ")"),
    ("single-closer-lines-below-have", "x = f(g(\n    1,\n    h(2", "))\n)\n", ")", "single",
     ""),
    ("single-long-rest-repeat", "const f = ((", " }) => {\n", "{ a }) => {", "single", "{ a"),
    # -- special tokens: the first one ends the text; none is ever shown
    ("special-endoftext", "x = ", "\n", "foo(1)<|endoftext|>bar", "single", "foo(1)"),
    ("special-fim-middle", "x = ", "\n", "1<fim_middle>2", "single", "1"),
    ("special-fim-dash", "x = ", "\n", "1<fim-suffix>2", "single", "1"),
    ("special-file-sep-ends-block", "def f():", "",
     "\n    return 1\n<|file_sep|>other.py\nimport os", "block", "\n    return 1"),
    ("special-starcoder-file-sep", "def f():", "", "\n    return 1<file_sep>x", "block",
     "\n    return 1"),
    ("special-im-end", "x = ", "\n", "2<|im_end|>", "single", "2"),
    ("special-deepseek", "x = ", "\n", "3<｜end▁of▁sentence｜>", "single", "3"),
    ("special-cut-off-at-the-end", "x = ", "\n", "foo()<|endo", "single", "foo()"),
    ("special-cut-off-fim", "x = ", "\n", "foo()<fim_mi", "single", "foo()"),
    ("special-only", "x = ", "\n", "<|endoftext|>", "single", ""),
    ("html-is-not-special", "x = ", "\n", "'<s>a</s>'", "single", "'<s>a</s>'"),
    ("comparison-is-not-special", "x = ", "\n", "a <b", "single", "a <b"),
    # -- after a line that opens a block: its body
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
    ("block-tabs", "\tif x:", "",
     "\n\t\ty()\n\t\tz()\n\tw()", "block", "\n\t\ty()\n\t\tz()"),
    ("block-blank-lines-inside-kept", "def f():", "",
     "\n    a = 1\n\n    b = 2\n\n\nc = 3", "block", "\n    a = 1\n\n    b = 2"),
    ("block-else-already-below", "    if a:", "\n    else:\n        c()\n",
     "\n        b()\n    else:\n        c()", "block", "\n        b()"),
    ("block-closer-else-chain", "function f(a) {\n  if (a) {", "\n  return 0;\n}\n",
     "\n    x();\n  } else {\n    y();\n  }\n  return 0;", "block",
     "\n    x();\n  } else {\n    y();\n  }"),
    ("block-wrong-closer-stops", "x = {", "", "\n  a: 1,\n]\n", "block", "\n  a: 1,"),
    ("block-go-case-labels", "\tswitch x {", "\n\t}\n",
     "\n\tcase 1:\n\t\ta()\n\tdefault:\n\t\tb()\n\t}\n", "block",
     "\n\tcase 1:\n\t\ta()\n\tdefault:\n\t\tb()"),
    ("block-no-case-outside-switch", "\tif x {", "\n\t}\n",
     "\n\t\ta()\n\tcase 1:\n\t\tb()\n", "block", "\n\t\ta()"),
    ("block-continued-header", "    if (a and\n            b):", "\n    c()\n",
     "\n        d()\n    c()", "block", "\n        d()"),
    ("block-backslash-header", "    if a and \\\n            b:", "\n    c()\n",
     "\n        d()\n    e()", "block", "\n        d()"),
    ("block-string-content-at-column-0", "def page():", "\n\nx = 1\n",
     "\n    return '''\\\n<html>\n</html>'''\ny = 2", "block",
     "\n    return '''\\\n<html>\n</html>'''"),
    ("block-left-at-once", "def f():\n    ", "", "\nprint(1)", "block", ""),
    # -- a closing line only when the suffix does not already have it
    ("block-suffix-closer-dropped", "if (x) {", "\n}\n",
     "\n  a();\n}", "block", "\n  a();"),
    ("block-suffix-two-closers-dropped", "  if (a) {", "\n  }\n}\n",
     "\n    b();\n  }", "block", "\n    b();"),
    ("block-list-closer-in-suffix", "xs = [", "\n]\n", "\n    1,\n    2,\n]\nys = 3", "block",
     "\n    1,\n    2,"),
    ("block-closer-suffix-lacks", "function f() {", "\n\nfoo();\n",
     "\n  return 1;\n}\nfoo();", "block", "\n  return 1;\n}"),
    # -- an empty line with code below at its indentation: the user inserts one statement
    ("statement-one-line", "def f():\n    a = 1\n    ", "\n    return a\n",
     "b = 2\n    c = 3\n    return a", "block", "b = 2"),
    ("statement-with-body", "def f(y):\n    ", "\n    return 1\n",
     "for x in y:\n        print(x)\n    z = 1", "block", "for x in y:\n        print(x)"),
    ("statement-in-brackets", "def f():\n    ", "\n    return x\n",
     "x = foo(\n        1,\n    )\n    y = 2", "block", "x = foo(\n        1,\n    )"),
    ("statement-if-else", "def f():\n    ", "\n    return 1\n",
     "if a:\n        b()\n    else:\n        c()\n    d()", "block",
     "if a:\n        b()\n    else:\n        c()"),
    ("statement-try-except-finally", "", "\nx = 1\n",
     "try:\n    a()\nexcept E:\n    b()\nfinally:\n    c()\nd()", "block",
     "try:\n    a()\nexcept E:\n    b()\nfinally:\n    c()"),
    ("statement-no-else-after-plain", "def f():\n    ", "\n    return 1\n",
     "x = 1\n    else:\n        y()", "block", "x = 1"),
    ("statement-decorated", "class A:\n    ", "\n    def g(self):\n        pass\n",
     "@property\n    def x(self):\n        return 1\n    y = 2", "block",
     "@property\n    def x(self):\n        return 1"),
    ("statement-docstring", "def f():\n    ", "\n    return 1\n",
     '"""Doc.\n\nMore.\n"""\n    x = 1', "block", '"""Doc.\n\nMore.\n"""'),
    ("statement-js-chain", "function f() {\n  ", "\n  return x;\n}\n",
     "const x = items\n    .map(g)\n    .filter(h);\n  y();", "block",
     "const x = items\n    .map(g)\n    .filter(h);"),
    ("statement-c-if-else", "int f(int a) {\n\t", "\n\treturn 0;\n}\n",
     "if (a) {\n\t\tx();\n\t} else {\n\t\ty();\n\t}\n\tz();", "block",
     "if (a) {\n\t\tx();\n\t} else {\n\t\ty();\n\t}"),
    # -- an empty line at the end of a block: the rest of the block
    ("rest-of-block", "def f():\n    a = 1\n    ", "\n\nprint(f())\n",
     "b = 2\n    return a + b\nprint(3)", "block", "b = 2\n    return a + b"),
    ("rest-of-block-at-eof", "def f(x):\n    ", "\n",
     "y = 1\n    return y\nprint(1)", "block", "y = 1\n    return y"),
    ("rest-of-block-closer-in-suffix", "function f() {\n  a();\n  ", "\n}\n",
     "b();\n  c();\n}\nfoo();", "block", "b();\n  c();"),
    ("rest-of-block-closer-suffix-lacks", "function f() {\n  a();\n  ", "",
     "b();\n}\nfoo();", "block", "b();\n}"),
    # -- repeats of the lines below: ignoring whitespace, but not indentation
    ("block-suffix-lines-dropped", "def f(x):", "\n    return y\n",
     "\n    y = x * 2\n    return y", "block", "\n    y = x * 2"),
    ("block-suffix-not-repeated-kept", "def f(x):", "\n    return z\n",
     "\n    y = x * 2\n    return y", "block", "\n    y = x * 2\n    return y"),
    ("suffix-lines-whitespace-insensitive", "def f(x):", "\n    return  y\n",
     "\n    y = x * 2\n    return y", "block", "\n    y = x * 2"),
    ("suffix-repeat-cut-off", "def f(x):", "\n    a = 1\n    return a + b\n",
     "\n    y = 2\n    a = 1\n    return a", "block", "\n    y = 2"),
    ("suffix-closer-at-other-indent-kept", "\tfor {", "\n\t}\n}\n",
     "\n\t\tif x {\n\t\t\ty()\n\t\t}\n\t}\n}", "block", "\n\t\tif x {\n\t\t\ty()\n\t\t}"),
    # -- no trailing whitespace, no empty suggestion
    ("block-trailing-whitespace", "def f():", "",
     "\n    x = 1   \n    y = 2\t", "block", "\n    x = 1\n    y = 2"),
    ("block-whitespace-only", "def f():", "", "\n   \n\t\n", "block", ""),
    # -- the document's line endings and indentation style
    ("block-crlf-document", "def f():\r\n    pass\r\ndef g():", "\r\n",
     "\n    return 1\n    return 2\n", "block", "\r\n    return 1\r\n    return 2"),
    ("block-crlf-model-text", "a\r\ndef g():", "\r\n",
     "\r\n    return 1\r\nx = 2", "block", "\r\n    return 1"),
    ("block-crlf-suffix-only", "def g():", "\r\n    pass\r\n",
     "\n    x = 1\n", "block", "\r\n    x = 1"),
    ("block-crlf-suffix-only-new-body", "def g():", "\r\n\r\nx = 1\r\n",
     "\n    x = 1\n", "block", "\r\n    x = 1"),
    ("block-lf-document-stays-lf", "def g():", "\n", "\r\n    x = 1\r\n", "block",
     "\n    x = 1"),
    ("indent-spaces-to-tabs", "class A:\n\tdef f(self):", "\n\n\tdef g(self):\n\t\tpass\n",
     "\n        return 1\n\n    def h(self):", "block", "\n\t\treturn 1"),
    ("indent-tabs-to-spaces", "def f():\n    x = 1\n    if x:", "\n    return x\n",
     "\n\t\ty = 2\n\treturn x", "block", "\n        y = 2"),
    ("indent-two-space-document", "function f() {\n  if (a) {", "\n  }\n}\n",
     "\n\t\tb();\n\t}", "block", "\n    b();"),
]


@pytest.mark.parametrize(("prefix", "suffix", "text", "mode", "expected"),
                         [r[1:] for r in CLEANS], ids=[r[0] for r in CLEANS])
def test_clean(prefix: str, suffix: str, text: str, mode: str, expected: str) -> None:
    assert clean(text, at(prefix, suffix), mode) == expected


# (id, file name, prefix, suffix, text, mode, expected): the file's language beats guessing.
WITH_PATH = [
    # Too little text to guess: `&&` continues a JavaScript statement on the deeper line ...
    ("js-continued-expression", "a.js", "", "\n\nexports.x = x\n",
     "const x = (a === 1) &&\n  !b.test(c)\nfoo()", "block",
     "const x = (a === 1) &&\n  !b.test(c)"),
    # ... while Python continues a line only inside brackets or after a backslash.
    ("py-deeper-line-is-not-a-continuation", "a.py", "", "\n\nx = 1\n",
     "y = a and b\n  !c\nfoo()", "block", "y = a and b"),
    ("py-backslash-continuation", "a.py", "", "\n\nx = 1\n",
     "y = a and \\\n    b\nfoo()", "block", "y = a and \\\n    b"),
]


@pytest.mark.parametrize(("path", "prefix", "suffix", "text", "mode", "expected"),
                         [r[1:] for r in WITH_PATH], ids=[r[0] for r in WITH_PATH])
def test_clean_with_the_documents_language(path: str, prefix: str, suffix: str, text: str,
                                           mode: str, expected: str) -> None:
    assert clean(text, at(prefix, suffix), mode, path) == expected


@pytest.mark.parametrize(("path", "python"), [
    ("file:///p/a.py", True), ("/p/a.pyi", True), ("C:/p/A.JS", False), ("x.rs", False),
    ("x.go", False), ("Makefile", None), (None, None)])
def test_is_python_from_the_file_name(path: str | None, python: bool | None) -> None:
    assert is_python(path) is python


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


_TOKENS = sorted({t for template in TEMPLATES.values() for t in template.special_tokens})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(alphabet="ab(){}:\n \t", max_size=8)),
                max_size=12), st.sampled_from(["single", "block"]))
def test_no_special_token_or_empty_suggestion_is_ever_shown(parts: list[str], mode: str) -> None:
    text = "".join(parts)
    assert not any(token in strip_special(text) for token in _TOKENS)
    for cursor in (at("x = "), at("def f():"), at("    ", "\n    y = 1\n"), at("f(", ")\n")):
        result = clean(text, cursor, mode)
        assert not any(token in result for token in _TOKENS), (text, result)
        assert result == "" or result.strip()


GO_HEADER = ("/*\n * Copyright 2024 The Authors.\n * Licensed under the Apache License.\n */\n\n"
             "// Package main prints.\npackage main\n\nimport \"fmt\"\n\nfunc main() {")
FAR_BELOW = "\n}\n" + "// filler comment line without indentation\n" * 150  # > the local look


# (id, file name, prefix, suffix, model text, expected): no indented line near the cursor.
INDENT_STYLE = [
    # A Go file's header: the license comment's ` * ` lines are not the document's indentation,
    # and gofmt mandates tabs, whatever the model wrote.
    ("go-header-tabs-kept", "main.go", GO_HEADER, "\n}\n", "\n\tfmt.Println(1)\n}",
     "\n\tfmt.Println(1)"),
    ("go-header-spaces-become-tabs", "file:///src/main.go", GO_HEADER, "\n}\n",
     "\n    fmt.Println(1)\n    if x {\n        y()\n    }\n}",
     "\n\tfmt.Println(1)\n\tif x {\n\t\ty()\n\t}"),
    ("makefile-recipe-gets-a-tab", "/p/Makefile", "all:", "\n",
     "\n    go build ./...\n    go test ./...", "\n\tgo build ./...\n\tgo test ./..."),
    # The whole document decides before the convention: the functions further down use tabs.
    ("whole-document-tabs", "a.c", "int a(void) {", FAR_BELOW + "int b(void) {\n\treturn 1;\n}\n",
     "\n    return 0;\n}", "\n\treturn 0;"),
    # Go's convention is not outvoted: gofmt rewrites any other indentation to tabs.
    ("go-always-tabs", "a.go", "func a() {",
     FAR_BELOW + "func b() {\n  return\n}\n", "\n  return\n}", "\n\treturn"),
    # Python's convention is four spaces; a language without one keeps what the model wrote.
    ("python-header-spaces", "a.py", "def f():", "\n", "\n\treturn 1", "\n    return 1"),
    ("unknown-language-unchanged", "notes.txt", "items:", "\n", "\n\t- one\n\t- two",
     "\n\t- one\n\t- two"),
]


# 40 space-indented lines of an embedded template, then the code the user is writing in, with
# tabs: the code is what a suggestion continues (issue 21: this voted spaces).
TEMPLATE = "".join(f"    <li>{i}</li>\n" for i in range(40))
TEMPLATE_GO = ("package main\n\nconst page = `\n" + TEMPLATE + "`\n\nfunc main() {\n"
               + "".join(f"\tx{i} := {i}\n" for i in range(5)) + "\tif x0 > 0 {")
TEMPLATE_JS = ("const page = `\n" + TEMPLATE + "`;\n\nfunction main() {\n"
               + "".join(f"\tlet x{i} = {i};\n" for i in range(5)) + "\tif (x0 > 0) {")


@pytest.mark.parametrize("path", ["main.go", "page.js", "file:///w/Makefile.mk"])
def test_the_nearest_code_lines_decide_the_indentation_not_a_template(path: str) -> None:
    prefix = TEMPLATE_JS if path.endswith(".js") else TEMPLATE_GO
    got = clean("\n        run()\n    }\n}", at(prefix, "\n}\n"), "block", path)
    assert got == "\n\t\trun()\n\t}", got


@pytest.mark.parametrize(("path", "prefix", "suffix", "text", "expected"),
                         [r[1:] for r in INDENT_STYLE], ids=[r[0] for r in INDENT_STYLE])
def test_indentation_from_the_whole_document_else_the_languages_convention(
        path: str, prefix: str, suffix: str, text: str, expected: str) -> None:
    assert clean(text, at(prefix, suffix), "block", path) == expected
