"""Typing-aware time budgets (pace.py) and the first lines first: an answer the budget cut shows
its finished lines only, and the rest is generated after it was shown — exactly the answer an
uncut generation gives (fp32, the trained fixture, in process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fimlsp.cache import TypingThrough
from fimlsp.completer import Completer, finished_lines
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.pace import MIN_BUDGET_MS, PACE_FACTOR, TypingPace
from fimlsp.scheduler import CancelToken


def test_a_typist_gets_a_few_keystrokes_and_a_pause_gets_the_setting() -> None:
    pace = TypingPace()
    assert pace.budget_ms("a", 4000, now=0.0) == 4000  # nothing known yet
    for k in range(6):
        pace.keystroke("a", now=k * 0.25)  # 250 ms a key
    assert pace.usual_interval("a") == pytest.approx(0.25)
    typing = pace.budget_ms("a", 4000, now=1.3)
    assert typing == pytest.approx(PACE_FACTOR * 250) and typing < 4000
    assert pace.budget_ms("a", 4000, now=5.0) == 4000  # paused: the block is worth waiting for
    assert pace.budget_ms("a", 500, now=1.3) == 500  # never more than the setting
    for k in range(6):
        pace.keystroke("b", now=k * 0.01)  # a paste or a fast burst
    assert pace.budget_ms("b", 4000, now=0.06) == MIN_BUDGET_MS
    pace.keystroke("a", now=60.0)  # a long gap is a pause, not an interval
    assert pace.usual_interval("a") == pytest.approx(0.25)
    pace.forget("a")
    assert pace.usual_interval("a") is None


def test_pace_is_bounded_in_documents() -> None:
    pace = TypingPace(documents=2)
    for name in "abc":
        for k in range(4):
            pace.keystroke(name, now=k * 0.1)
    assert pace.usual_interval("a") is None and pace.usual_interval("c") is not None


@pytest.mark.parametrize(("text", "kept"), [
    ("x = 1\n    y = 2\n    z", "x = 1\n    y = 2"),
    ("x = 1\n", "x = 1"),
    ("still writing the first", "still writing the first"),
    ("\n    ret", "\n    ret"),  # nothing finished but a line break: what there is
])
def test_finished_lines(text: str, kept: str) -> None:
    assert finished_lines(text) == kept


class After(CancelToken):
    """Says "time" from the `n`-th check on: a budget that ends after n tokens, deterministic."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def __call__(self) -> str | None:
        self.left -= 1
        return "time" if self.left < 0 else None


BLOCK = ("import os\n\n\ndef read_config(path):\n    with open(path) as handle:\n"
         "        return handle.read()\n\n\ndef write_config(path, text):\n")


def test_a_cut_block_shows_its_finished_lines_and_the_rest_comes_after(
        trained_model: Path) -> None:
    settings = Settings(model=str(trained_model), quantization="none", max_new_tokens=48,
                        multiline="always")
    whole = Completer(settings)
    whole.load()
    cursor = whole.cursor_for(BLOCK, BLOCK.count("\n"), 0)
    full = whole.complete("whole.py", cursor)
    assert "\n" in full.text, full  # a block of several lines, or the test proves nothing
    completer = Completer(settings)
    completer.load()
    for budget in range(max(2, full.generated_tokens // 2), full.generated_tokens):
        completer.engine.drop_session("cut.py")  # type: ignore[union-attr]
        shown = completer.complete("cut.py", cursor, After(budget))
        if shown.unfinished is not None and shown.text != full.text:
            break
    else:
        pytest.skip("no budget cut this answer inside a line")
    assert shown.stop_reason == "time"
    assert full.text.startswith(shown.text) and shown.text != full.text
    assert full.text[len(shown.text)] == "\n"  # what was shown ends where a line ends
    assert shown.unfinished is not None and shown.unfinished.cursor == cursor
    rest = completer.finish("cut.py", shown.unfinished, CancelToken())
    assert rest == full.text

    # The suggestion on screen grows to the whole answer, also after the user typed some of it.
    typing = TypingThrough()
    typing.remember("cut.py", cursor, shown.text, shown.request_id, "s")
    typed = shown.text[:3]
    typing.advance(shown.request_id, len(typed))
    assert typing.extend("cut.py", shown.request_id, cursor.prefix, rest)
    moved = Cursor(cursor.prefix + typed, cursor.suffix, cursor.line, 3)
    assert typing.lookup("cut.py", moved, "s") == full.text[len(typed):]
    assert not typing.extend("cut.py", shown.request_id + 1, cursor.prefix, rest)
