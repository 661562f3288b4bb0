"""`fimlsp bench session`: the replay retypes the body it deleted, and a short session through
the real servers (shipped and reuse-off, over stdio, the tests' tiny model) answers every
keystroke with consistent token accounting. Never a timing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from fimlsp_bench._llamacpp import reused_prefix
from fimlsp_bench.session import (
    after,
    apply,
    cpu_seconds,
    llamacpp_python,
    parse_args,
    retyping,
    run,
    settle,
)

SOURCE = '''import os


def greet(name):
    # say hello
    text = f"héllo {name}"
    return text.upper()


def other():
    return 1
'''


def test_retyping_the_whole_body_gives_the_file_back() -> None:
    replay = retyping(SOURCE, "greet", limit=10_000)
    text = apply(SOURCE, *replay.deletion, "")
    assert "return text.upper()" not in text and "def other" in text
    for key in replay.keys:
        text = apply(text, key[0], key[1], key[0], key[1], key[2])
    assert text == SOURCE
    assert replay.keys[0][:2] == (4, 0)  # the leading comment is part of the body
    assert after(replay.keys[-1]) == (6, len("    return text.upper()"))


def test_turns_wait_for_a_busy_contender_and_not_for_an_idle_one() -> None:
    """A contender still computing (here: a loop that never ends) keeps `settle` waiting to
    its limit; one blocked on its input lets it go at once."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        assert not asyncio.run(settle([busy.pid, idle.pid], limit_s=1.0))
        assert cpu_seconds(busy.pid) > 0
        assert asyncio.run(settle([idle.pid], limit_s=30.0))
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    assert cpu_seconds(busy.pid) == 0.0  # gone: counts nothing


def test_retyping_stops_at_the_limit_and_refuses_unknown_functions() -> None:
    assert len(retyping(SOURCE, "greet", limit=5).keys) == 5
    with pytest.raises(SystemExit):
        retyping(SOURCE, "missing", limit=5)


def test_llamacpp_keeps_one_token_to_feed_when_the_prompt_is_all_cached() -> None:
    assert reused_prefix([1, 2, 3, 4], [1, 2, 9]) == 2
    assert reused_prefix([1, 2, 3], [1, 2, 3]) == 2
    assert reused_prefix([], [5]) == 0


def test_a_missing_llamacpp_is_a_reason_not_an_error(tmp_path: Path) -> None:
    python, why = llamacpp_python(str(tmp_path / "no-such-python"))
    assert python is None and "llama-cpp-python" in why


@pytest.mark.slow
def test_a_short_session_answers_every_keystroke(tiny_model: Path, tmp_path: Path) -> None:
    args = parse_args(["--model", str(tiny_model), "--keystrokes", "6",
                       "--contenders", "shipped,reuse-off,llamacpp", "--threads", "1",
                       "--max-new-tokens", "4", "--quantization", "none",
                       "--llamacpp-python", str(tmp_path / "absent")])
    report = run(args)
    rows = report["results"]
    assert set(rows) == {"shipped", "reuse-off"}
    assert "llama-cpp-python" in report["skipped"]["llama.cpp"]
    for label, row in rows.items():
        samples = report["samples"][label]
        assert row["answered"] == len(samples) == 6, label
        assert row["reused_le_prompt"]
        assert all(s["source"] in ("model", "cache") for s in samples)
        assert row["cold_prompt_tokens"] and row["cold_ms"] is not None
        assert row["server"]["errors"] == 0
    shipped, fresh = rows["shipped"], rows["reuse-off"]
    assert shipped["model_answers"] and fresh["model_answers"]
    # Reuse: the shipped server re-evaluates a few tokens per keystroke, the other everything.
    assert shipped["reevaluated_per_model_keystroke"] < fresh["reevaluated_per_model_keystroke"]
    assert all(s["reused"] == 0 for s in report["samples"]["reuse-off"]
               if s["source"] == "model")
    assert report["machine"]["load_average_before"] is not None
