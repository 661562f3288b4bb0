"""The quality benchmark's simulated developer: accept rules, partial accept, real-time visibility
(with a scripted editor: no model, no server), the span sampler, the bootstrap; and one tiny run
through the real server with the trained fixture, checking that what the developer took is what
the server counted."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from fimlsp_bench import available
from fimlsp_bench.quality import (
    Answer,
    SpanResult,
    accept_plan,
    held_out_files,
    next_unit,
    paired_difference,
    retype,
    run_once,
    sample,
    spans_in,
    summarize,
    unaided_keys,
    word_step,
)


class Scripted:
    """An editor whose server answers from a script: `answers(typed_so_far)` → Answer."""

    def __init__(self, answers: Any) -> None:
        self.answers = answers
        self.text = ""
        self.log: list[tuple[Any, ...]] = []

    async def insert(self, text: str) -> None:
        self.text += text
        self.log.append(("insert", text))

    async def ask(self, limit_ms: float | None = None) -> Answer:
        self.log.append(("ask", self.text))
        return self.answers(self.text)

    async def command(self, name: str, *args: Any) -> None:
        self.log.append((name, *args))

    async def wait_ms(self, ms: float) -> None:
        pass  # scripted latencies: the clock does not matter


def run(target: str, answers: Any, typing_ms: float | None = None) -> tuple[SpanResult, Scripted]:
    editor = Scripted(answers)
    result = asyncio.run(retype(target, editor, typing_ms))
    assert editor.text == target  # whatever happens, the developer ends with the text
    return result, editor


def test_word_steps_follow_accept_next_word() -> None:
    pieces = []
    text = "self.items[key] = value  # done"
    while text:
        step = word_step(text)
        pieces.append(text[:step])
        text = text[step:]
    assert pieces == ["self", ".", "items", "[", "key", "] ", "= ", "value", "  ", "# ", "done"]
    assert word_step("    return x") == 4  # leading indentation is one step
    assert word_step("\n        y") == 9


def test_accept_plan_whole_partial_or_nothing() -> None:
    assert accept_plan("foo(bar)", "foo(bar)\nmore") == (["foo(bar)"], True)
    assert accept_plan("foo(baz)", "foo(bar)") == (["foo", "("], False)
    assert accept_plan("fool", "foo(bar)") == ([], False)  # a word matches only whole
    assert accept_plan("", "x") == ([], False)


def test_enter_types_the_indentation_with_the_line_break() -> None:
    assert next_unit("a\n    b", 1) == "\n    "
    assert next_unit("a\n    b", 0) == "a"
    assert unaided_keys("a\n    b") == 3


def test_a_right_suggestion_is_accepted_whole_with_the_accept_command() -> None:
    target = "total = price * count"

    def answers(typed: str) -> Answer:
        return Answer(target[len(typed):] if typed == "total = " else "", 7, 10.0)

    result, editor = run(target, answers)
    assert result.accepted_chars == len(target) - len("total = ")
    assert result.typed_units == len("total = ")
    assert (result.shown, result.accepted, result.fully_accepted) == (1, 1, 1)
    assert result.first_line_exact == 1
    assert ("fimlsp.accept", 7) in editor.log
    assert result.accept_actions == 1 and result.unaided_keys == len(target)


def test_a_partly_right_suggestion_is_taken_word_by_word() -> None:
    target = "items.append(value)"

    def answers(typed: str) -> Answer:
        if typed == "":
            return Answer("items.append(other)", 3, 10.0)
        return Answer("", None, 10.0)

    result, editor = run(target, answers)
    assert result.accepted_chars == len("items.append(")
    assert [e for e in editor.log if e[0] == "fimlsp.partialAccept"] == [
        ("fimlsp.partialAccept", 3, 5), ("fimlsp.partialAccept", 3, 6),
        ("fimlsp.partialAccept", 3, 12), ("fimlsp.partialAccept", 3, 13)]
    assert (result.shown, result.accepted, result.fully_accepted) == (1, 1, 0)
    assert result.first_line_exact == 0


def test_the_answer_after_a_first_line_accept_is_counted_with_where_it_came_from() -> None:
    target = "if ok:\n    run()\n"
    block = "if ok:\n    stop()\n"  # the first line is right, the second is not

    def answers(typed: str, after_line: str) -> Answer:
        if typed == "":
            return Answer(block, 1, 30.0)
        if typed == "if ok:\n    ":  # right after the first line was taken
            return Answer(block[len(typed):], 1, 2.0, after_line)
        return Answer("", None, 10.0)

    for source, at_once in (("typed", 1), ("model", 0)):
        result, _ = run(target, lambda typed, s=source: answers(typed, s))
        assert result.accepted_chars == len("if ok:\n    ")
        assert (result.after_line, result.after_line_at_once) == (1, at_once)
        assert result.after_accept == 0  # nothing was taken whole
        assert result.at_once_ms == ([2.0] if at_once else [])


def test_typing_through_a_suggestion_is_one_suggestion_and_wrong_ones_count_as_never() -> None:
    target = "abcd"
    shown = "abXY"

    def answers(typed: str) -> Answer:
        if shown.startswith(typed) and typed != shown:
            return Answer(shown[len(typed):], 1, 1.0, "typed" if typed else "model")
        return Answer("", None, 10.0)

    result, _ = run(target, answers)
    # "abXY" is wrong from its first word on: typed through "a", "b", then abandoned.
    assert (result.shown, result.accepted) == (1, 0)
    assert result.accepted_chars == 0 and result.typed_units == 4


def test_real_time_hides_late_answers_but_not_what_the_server_answers_in_time() -> None:
    target = "value = compute(x)"

    def answers(typed: str) -> Answer:
        rest = target[len(typed):]
        if typed == "":
            return Answer(rest, 1, 400.0)  # right, but too late at 150 ms a key
        if typed == "v":
            return Answer(rest, 2, 200.0)  # late again
        if typed == "va":  # the late generation went on, and this key typed into it
            return Answer(rest, 3, 1.0, "typed")
        return Answer("", None, 5.0)

    plain, _ = run(target, answers)
    assert plain.accepted_chars == len(target) and plain.late == 0
    real, editor = run(target, answers, typing_ms=150)
    assert real.late == 2 and real.model_calls == 0  # late answers are not latencies seen
    assert real.accepted_chars == len(target) - 2 and real.typed_units == 2
    assert ("fimlsp.accept", 3) in editor.log and ("fimlsp.accept", 1) not in editor.log
    assert real.shown == 1


def test_what_is_on_screen_stays_visible_while_typed_through_under_real_time() -> None:
    target = "abc = 1"
    shown = "abc = 2"

    def answers(typed: str) -> Answer:
        if typed == "":
            return Answer(shown, 1, 50.0)
        if shown.startswith(typed):
            return Answer(shown[len(typed):], 2, 1.0, "typed")
        return Answer("", None, 500.0)

    result, _ = run(target, answers, typing_ms=150)
    assert result.shown == 1 and result.accepted == 1  # "abc", " ", "= " were taken
    assert result.accepted_chars == len("abc = ")


def test_spans_are_seeded_and_cut_where_a_developer_types(tmp_path: Path) -> None:
    text = ("import os\n\n\ndef f(a, b):\n    \"\"\"Doc.\"\"\"\n    total = a + b\n"
            "    total *= 2\n    return os.path.join(str(total), 'x')\n")
    spans = spans_in("m.py", text, ["line", "mid-line", "block"], random.Random(1))
    again = spans_in("m.py", text, ["line", "mid-line", "block"], random.Random(1))
    assert spans == again and {s.kind for s in spans} <= {"line", "mid-line", "block"}
    for span in spans:
        assert text[span.start:span.end] == span.target and span.target.strip()
        assert '"""' not in span.target  # docstrings are not retyped
        line_start = text.rfind("\n", 0, span.start) + 1
        if span.kind in ("line", "block"):
            assert not text[line_start:span.start].strip()  # from the indentation on
            assert text[span.end] == "\n"
        else:
            assert text[span.end:text.index("\n", span.end)].strip()  # text after it
    (tmp_path / "m.py").write_text(text)
    picked = sample([tmp_path / "m.py"], 1, 2, seed=0)
    assert sum(len(v) for v in picked.values()) == 2


def test_held_out_modules_are_found_in_the_standard_library() -> None:
    import sysconfig

    files = held_out_files(Path(sysconfig.get_paths()["stdlib"]))
    names = {f.name for f in files}
    assert {"argparse.py", "textwrap.py", "shlex.py"} <= names
    assert all("/test" not in str(f) for f in files)
    assert "quality" in available()


def test_bootstrap_resamples_files_and_brackets_the_value() -> None:
    results = [SpanResult(f"f{k % 4}", "line", 20, 20, accepted_chars=k % 3, shown=3,
                          accepted=k % 2, typed_units=20 - k % 3) for k in range(12)]
    summary = summarize(results, boot=500, seed=0)
    cell = summary["chars_saved"]
    assert cell["low"] <= cell["value"] <= cell["high"]
    assert summary["files"] == 4 and summary["chars"] == 240
    assert summarize(results, boot=500, seed=0) == summary  # seeded


def test_paired_difference_cancels_the_spans_own_difficulty() -> None:
    spans = [{"path": f"f{k % 5}", "accepted_chars": k % 4, "chars": 10} for k in range(20)]
    better = [{**r, "accepted_chars": r["accepted_chars"] + 1} for r in spans]
    runs = {("defaults", "plain"): spans, ("same", "plain"): spans,
            ("better", "plain"): better}
    same = paired_difference(runs, "same", "plain", boot=300)
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}
    up = paired_difference(runs, "better", "plain", boot=300)
    assert up is not None and up["low"] == pytest.approx(0.1) == up["high"]
    assert paired_difference(runs, "defaults", "plain") is None


@pytest.mark.slow
def test_a_tiny_run_through_the_real_server_with_the_trained_model(
        trained_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "code.py"
    source.write_text("import os\n\n\ndef join_all(parts):\n    result = []\n"
                      "    for part in parts:\n        result.append(os.path.join(part, 'x'))\n"
                      "    return result\n")
    picked = sample([source], 1, 2, seed=3)
    results, stats = asyncio.run(run_once(str(trained_model), {"maxNewTokens": 12},
                                          picked, {}, None))
    assert len(results) == 2
    taken = sum(r.accepted_chars for r in results)
    assert stats["accepted_chars"] == taken  # the accept commands reached the server
    for r in results:
        assert r.accepted <= r.shown and r.fully_accepted <= r.accepted
        assert r.model_calls >= 1 and r.late == 0
        assert len(r.fed) == r.model_calls and all(f >= 1 for f in r.fed)
    # Real time, at a key a millisecond: no model answer comes in time, so every one is
    # cancelled by the editor, and only what the server answers in time is seen (whether a
    # cancelled generation ran on for the next key depends on whether it had started: that is
    # tests/test_inflight.py's, deterministically).
    results, stats = asyncio.run(run_once(str(trained_model), {"maxNewTokens": 12}, picked, {},
                                          1e-9))
    assert sum(r.late for r in results) >= 1
    for r in results:
        assert r.model_calls == 0 and r.late <= r.requests
        assert r.accepted <= r.shown and r.typed_units + r.accept_actions >= 1
    assert stats["accepted_chars"] == sum(r.accepted_chars for r in results)


# -- --mid-word (token healing) ----------------------------------------------------------------

MIDWORD_SOURCE = ("import os\n\n\ndef join_all(parts, separator):\n    result = []\n"
                  "    for part in parts:\n        result.append(os.path.join(part, separator))\n"
                  "    return separator.join(result)\n")


def test_mid_word_cursors_sit_inside_identifiers_seen_earlier_in_the_file() -> None:
    from fimlsp_bench.midword import MIN_LENGTH, cursors_in

    picked = cursors_in("code.py", MIDWORD_SOURCE, random.Random(0), limit=50)
    assert picked and picked == cursors_in("code.py", MIDWORD_SOURCE, random.Random(0), 50)
    for c in picked:
        name = MIDWORD_SOURCE[c.start:c.end]
        assert name.isidentifier() and len(name) >= MIN_LENGTH and c.start < c.cut < c.end
        line_start = MIDWORD_SOURCE.rfind("\n", 0, c.start) + 1
        assert name in MIDWORD_SOURCE[:line_start]  # the model has seen it in this file
        assert MIDWORD_SOURCE[c.line_end] == "\n"
    assert "join_all" not in {MIDWORD_SOURCE[c.start:c.end] for c in picked}  # first use


def test_mid_word_scores() -> None:
    from fimlsp_bench.midword import Outcome, summarize

    outcomes = [Outcome("ult", "ult.append(x)", 10, "model"),  # finished
                Outcome("ult", "ultimate", 20, "model"),  # matched 3, not finished
                Outcome("arator", " = 1", 30, "model"),  # does not go on with the word
                Outcome("arts", "", 40, "model", reevaluated=3)]
    s = summarize(outcomes)
    assert s["finished"] == 0.25 and s["goes_on"] == 0.5 and s["empty"] == 0.25
    assert s["chars_matched"] == pytest.approx(6 / 16)
    assert s["reevaluated_mean"] == 3 and s["p50_ms"] == 30


@pytest.mark.slow
def test_a_tiny_mid_word_run_through_two_real_servers(trained_model: Path,
                                                      tmp_path: Path) -> None:
    from fimlsp_bench.midword import VARIANTS, Cursor, run

    source = tmp_path / "code.py"
    source.write_text(MIDWORD_SOURCE)
    at = MIDWORD_SOURCE.index("separator.join")
    line_end = MIDWORD_SOURCE.index("\n", at)
    cursors = [Cursor(str(source), at, at + 3, at + len("separator"), line_end)]
    results = asyncio.run(run(str(trained_model), {"maxNewTokens": 8, "threads": 1}, cursors))
    assert set(results) == set(VARIANTS)  # and `run` checked each server's token_healing
    for (kind, _), outcomes in results.items():
        (outcome,) = outcomes
        assert outcome.rest == ("arator" if kind == "mid-word" else "separator")
        assert outcome.source == "model"
        assert (outcome.reevaluated is not None) == (kind == "mid-word")
    assert source.read_text() == MIDWORD_SOURCE
