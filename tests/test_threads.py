"""Threads per forward, picked from how fast the last forwards ran (fimlsp/engine/threads.py).

The picker's rules with given timings (no clock): each count tried once, then the fastest; the
other tried now and then only in work nobody waits for; a change of load moves the choice. Then
the real engine: every forward goes through the picker, and greedy output does not depend on
which count ran it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.engine.threads import PROBE_EVERY, ThreadPicker, kind_of


def test_kinds_of_forward() -> None:
    assert [kind_of(n) for n in (1, 2, 16, 17, 256)] == [
        "decode", "verify", "verify", "prefill", "prefill"]


def test_each_count_once_then_the_fastest() -> None:
    picker = ThreadPicker([2, 1])
    assert picker.pick("prefill") == 2  # untried, the most first
    picker.record("prefill", 2, 256, 2.56)  # 10 ms a token
    assert picker.pick("prefill") == 1
    picker.record("prefill", 1, 256, 1.024)  # 4 ms a token: one thread wins (a loaded machine)
    assert [picker.pick("prefill") for _ in range(3 * PROBE_EVERY)] == [1] * (3 * PROBE_EVERY)
    assert picker.favoured() == {"prefill": 1}


def test_the_other_count_is_tried_only_in_idle_work() -> None:
    picker = ThreadPicker([1, 2])
    for n, seconds in ((2, 0.3), (1, 0.03)):
        picker.record("decode", n, 1, seconds)
    assert 2 not in [picker.pick("decode") for _ in range(4 * PROBE_EVERY)]  # a user waits
    with picker.idle_work():
        picks = [picker.pick("decode") for _ in range(4 * PROBE_EVERY)]
    assert picks.count(2) == 4 and picks.count(1) == 4 * PROBE_EVERY - 4
    assert not picker.probing


def test_a_change_of_load_moves_the_choice() -> None:
    picker = ThreadPicker([1, 2])
    picker.record("decode", 2, 1, 0.300)  # loaded: two threads wait on each other
    picker.record("decode", 1, 1, 0.030)
    assert picker.favoured() == {"decode": 1}
    for _ in range(8):  # the load went away: probes in idle time see two threads at 15 ms
        picker.record("decode", 2, 1, 0.015)
    assert picker.favoured() == {"decode": 2}


def test_every_forward_of_the_engine_goes_through_the_picker(trained_model: Path) -> None:
    """Two threads allowed (the engine sets them per forward): the answer is the one a
    single-thread engine gives, and the picker has measured every kind the answer used."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing to pick between")
    settings = Settings(model=str(trained_model), quantization="none", max_new_tokens=12,
                        time_budget_ms=600000)
    text = "import os\n\n\ndef read_config(path):\n    with open(path) as handle:\n        "
    adaptive = Completer(settings)
    adaptive.load()
    engine = adaptive.engine
    assert engine is not None and engine.picker is not None  # type: ignore[union-attr]
    single = Completer(dataclasses.replace(settings, threads=1))
    single.load()
    assert single.engine.picker is None  # type: ignore[union-attr]  # a set count is kept
    cursor = adaptive.cursor_for(text, 5, 8)
    for key in ("a", "b", "c"):  # several, so that probes and switches happen in between
        with engine.idle_work():  # type: ignore[union-attr]
            got = adaptive.complete(key, cursor).text
        assert got == single.complete(key, cursor).text
    measured = engine.picker._per_token_s  # type: ignore[union-attr]
    assert set(measured) >= {"decode", "verify"} and all(len(m) == 2 for m in measured.values())
