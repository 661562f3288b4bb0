"""Typing-aware time budgets (pace.py) and the first lines first: an answer the budget cut shows
its finished lines only, and the rest is generated after it was shown — exactly the answer an
uncut generation gives (fp32, the trained fixture, in process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fimlsp.cache import TypingThrough
from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.engine.local import LocalEngine
from fimlsp.generating import finished_lines
from fimlsp.pace import (
    FIRST_LINES_FACTOR,
    MIN_BUDGET_MS,
    MIN_FIRST_LINES_MS,
    PACE_FACTOR,
    TypingPace,
)
from fimlsp.prompting import MIN_QUICK_WINDOW, QUICK_PREFILL_MS
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


def long_text() -> str:
    """A few hundred tokens of code before the cursor: more than a quick start reads."""
    body = "".join(f"def handler_{i}(request, value):\n    return request.get(value, {i})\n\n\n"
                   for i in range(40))
    return body + "def write_config(path, text):\n    with open(path, "


def test_a_prompt_too_long_to_read_in_time_is_answered_from_a_short_one_first(
        trained_model: Path) -> None:
    """Quick starts (Prompter.quick_prompt): with reading as slow as a loaded CPU reads a
    164M model, an automatic request at a cursor whose prompt is not cached gets a short prompt
    in a session of its own; once the whole prompt is read (the server's warm start), the next
    automatic request is the ordinary one. A request the user asked for always waits."""
    settings = Settings(model=str(trained_model), quantization="none", max_new_tokens=16,
                        time_budget_ms=600000, alternatives=0)
    completer = Completer(settings)
    completer.load()
    engine = completer.engine
    assert isinstance(engine, LocalEngine)
    text = long_text()
    lines = text.split("\n")
    cursor = completer.cursor_for(text, len(lines) - 1, len(lines[-1]))
    full = completer.prompt_for(cursor, "q.py")
    engine.prefill_s_per_token = 0.02  # 20 ms a token: the whole prompt would take seconds
    assert len(full.ids) * 20 > QUICK_PREFILL_MS

    invoked = completer.complete("asked.py", cursor)  # quick=False: the user waits
    assert not invoked.quick and invoked.prompt_tokens == len(full.ids)

    quick = completer.complete("q.py", cursor, quick=True)
    assert quick.quick and quick.prompt_tokens <= MIN_QUICK_WINDOW - settings.max_new_tokens
    assert engine.unread("q.py", full.ids) == len(full.ids)  # the document's session: untouched
    completer.warm("q.py", cursor, CancelToken())  # what the server runs after showing it
    assert engine.unread("q.py", full.ids) <= 1
    whole = completer.complete("q.py", cursor, quick=True)
    assert not whole.quick and whole.text == invoked.text


def test_while_typing_a_block_is_due_after_one_interval_and_after_a_pause_never() -> None:
    pace = TypingPace()
    assert pace.first_lines_ms("a") is None  # no pace known yet
    for i in range(5):
        pace.keystroke("a", now=i * 0.15)
    assert pace.first_lines_ms("a", now=0.7) == pytest.approx(FIRST_LINES_FACTOR * 150)
    assert pace.first_lines_ms("a", now=5.0) is None  # a pause: the whole block
    for i in range(5):
        pace.keystroke("b", now=i * 0.01)
    assert pace.first_lines_ms("b", now=0.05) == MIN_FIRST_LINES_MS


def test_a_block_due_now_answers_with_its_first_finished_line(trained_model: Path) -> None:
    """`lines_by_ms=0`: the first time a line is finished, the block stops there, keeps that
    line, and goes on later to exactly the answer it would have given whole."""
    settings = Settings(model=str(trained_model), quantization="none", max_new_tokens=48,
                        multiline="always", time_budget_ms=600000, alternatives=0)
    completer = Completer(settings)
    completer.load()
    cursor = completer.cursor_for(BLOCK, BLOCK.count("\n"), 0)
    full = completer.complete("whole.py", cursor)
    lines = [line for line in full.text.split("\n") if line.strip()]
    assert len(lines) >= 2, full  # a block of several lines, or the test proves nothing
    due = Completer(settings)  # a completer of its own: the first one remembers the answer
    due.load()
    first = due.complete("due.py", cursor, lines_by_ms=0)
    assert first.stop_reason == "time" and first.unfinished is not None
    assert full.text.startswith(first.text) and first.text.strip() == lines[0].strip()
    assert due.finish("due.py", first.unfinished, CancelToken()) == full.text
    single = Completer(dataclasses.replace(settings, multiline="never"))
    single.load()
    lone = single.complete("line.py", cursor, lines_by_ms=0)
    assert lone.stop_reason != "time"  # one line: never cut in the middle for this
