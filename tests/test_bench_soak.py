"""`fimlsp bench soak`: its typist keeps the document's size, and every keystroke is answered.

The short storm runs the real server over stdio with the tests' tiny random model; it asserts
what must hold at any speed (one answer per request, memory sampled), never a timing.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from fimlsp_bench.soak import keystrokes, slope_mb_per_min, storm, summarize

TEXT = "def f(x):\n    return x + 1\n\n\nclass C:\n    value = 'a string'\n"


def apply(text: str, edit: tuple[int, int, int, int, str]) -> str:
    line, a, line_end, b, new = edit
    lines = text.split("\n")
    assert line == line_end
    lines[line] = lines[line][:a] + new + lines[line][b:]
    return "\n".join(lines)


def test_the_typist_retypes_lines_so_the_document_comes_back() -> None:
    text, seen = TEXT, []
    for edit in itertools.islice(keystrokes(TEXT, seed=3), 400):
        if edit[4] == "" and seen:  # a new line starts: the previous one is fully retyped
            assert text == TEXT
        text = apply(text, edit)
        seen.append(edit)
    assert any(e[4] == "" for e in seen) and any(e[4] for e in seen)


def test_slope_is_read_from_the_second_half() -> None:
    warmup = [(float(s), 100.0 + 10 * s) for s in range(10)]  # steep growth while warming up
    steady = [(float(s), 200.0 + 0.5 * s / 60) for s in range(10, 20)]  # 0.5 MB per minute
    assert slope_mb_per_min(warmup + steady) == pytest.approx(0.5)
    assert slope_mb_per_min([(0.0, 1.0)]) is None


@pytest.mark.slow
def test_a_short_storm_answers_every_keystroke(tiny_model: Path, tmp_path: Path) -> None:
    document = tmp_path / "doc.py"
    document.write_text(TEXT * 20, encoding="utf-8")
    run, stats = asyncio.run(storm(str(tiny_model), document, rate=40, seconds=2.0, seed=0,
                                   options={"maxNewTokens": 8}))
    assert run.sent >= 10
    assert run.answered == run.sent and not run.errors
    assert stats["requests"] >= 1
    assert run.rss and all(mb > 0 for _, mb in run.rss)
    report = summarize(run, 2.0)
    assert report["answered"] == report["sent"]
    assert report["popups"] == 0 and report["distinct_popups"] == []  # nothing went wrong
