"""`fimlsp bench profile`: operators are put into the right kinds, the kinds and the time outside
them add up to the wall time, and a tiny run through the real engine profiles what a keystroke
does (one forward per new token, each with every layer's int8 linears and the head)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fimlsp_bench.profile import OTHER, PYTHON, breakdown, kind_of, main


def test_operators_go_to_their_kind() -> None:
    assert kind_of("quantized::linear_dynamic").startswith("int8 linears")
    assert kind_of("aten::bmm") == "attention"
    assert kind_of("aten::_softmax") == "attention"
    assert kind_of("aten::addmm").startswith("float matmuls")
    assert kind_of("aten::native_layer_norm") == "norms"
    assert kind_of("aten::as_strided") == OTHER


def test_the_kinds_and_the_python_between_them_add_up_to_the_wall_time() -> None:
    kinds = breakdown([("quantized::linear_dynamic", 6.0, 9), ("aten::bmm", 1.0, 4),
                       ("aten::_softmax", 0.5, 2), ("aten::view", 0.5, 30)], wall_ms=10.0)
    assert kinds[PYTHON]["ms"] == pytest.approx(2.0)
    assert sum(cell["ms"] for cell in kinds.values()) == pytest.approx(10.0)
    assert kinds["attention"]["ms"] == pytest.approx(1.5) and kinds["attention"]["calls"] == 6
    assert next(iter(kinds)).startswith("int8 linears")  # the largest first


def test_a_tiny_profile_through_the_real_engine(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    assert main(["--tiny", "--context", "64", "--keystrokes", "2", "--new-tokens", "4",
                 "--threads", "1", "--cache-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_tokens"] == 4 and report["lean"]
    int8 = next(cell for kind, cell in report["kinds"].items() if kind.startswith("int8"))
    # 4 forwards per keystroke (one token of prefill, three decode steps), each with the two
    # layers' four linears and the output head.
    assert int8["calls_per_keystroke"] == 4 * (2 * 4 + 1)
    assert sum(c["share"] for c in report["kinds"].values()) == pytest.approx(1.0)
    assert report["floor_ms_per_token"] > 0 and report["decode_weight_mb"] > 0
