"""`fimlsp bench engine` on a shrunk model: the JSON has every field, with sane values.

Timings are measured, never asserted: only that they are positive and that the keystroke case
really reused the cache (all but the one new token) while the fresh session reused nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from fimlsp_bench import engine as bench_engine

pytestmark = pytest.mark.slow  # runs a benchmark

CONTEXT = 48
NEW = 4


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> dict:
    argv = ["--models", "tiny_starcoder_py", "--quantization", "none,int8", "--tiny",
            "--context", str(CONTEXT), "--new-tokens", str(NEW), "--repeats", "2",
            "--threads", "1", "--device", "cpu", "--bandwidth-mb", "32", "--json",
            "--shared", str(shared), "--cache-dir", str(tmp_path_factory.mktemp("bench-cache"))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_engine.main(argv) == 0
    return json.loads(out.getvalue())


def test_machine_and_setup(result: dict) -> None:
    machine = result["machine"]
    for key in ("cpu", "cores", "threads", "torch", "transformers", "device", "date"):
        assert machine[key], key
    assert machine["device"] == "cpu"
    assert result["bandwidth_gbs"] > 0
    assert result["context"] == CONTEXT and result["new_tokens"] == NEW


def test_one_row_per_quantization(result: dict) -> None:
    rows = result["results"]
    assert [(r["model"], r["quantization"]) for r in rows] == [
        ("tiny_starcoder_py", "none"), ("tiny_starcoder_py", "int8")]
    assert rows[0]["geometry"] == {"layers": 2, "width": 64, "heads": 4}
    assert "tiny_starcoder_py int8" in result["int8_decode_vs_fp32"]


@pytest.mark.parametrize("index", [0, 1])
def test_row_values(result: dict, index: int) -> None:
    row = result["results"][index]
    for key in ("weight_bytes", "decode_weight_bytes", "kv_bytes", "params", "load_s",
                "prefill_ms", "prefill_tokens_per_s", "prefill_tokens_per_s_best",
                "decode_ms_per_token", "decode_ms_per_token_median", "floor_ms_per_token",
                "decode_over_floor", "cold_total_ms", "peak_rss_mb", "rss_anon_mb"):
        assert row[key] > 0, key
    assert row["prefill_tokens_per_s_best"] >= row["prefill_tokens_per_s"]
    # cold, the reuse runs and the fresh run each decode NEW − 1 steps after their first token
    assert row["decode_steps"] == (2 + 2) * (NEW - 1)
    assert row["decode_weight_bytes"] <= row["weight_bytes"]
    assert row["prefill_tokens"] == CONTEXT
    keystroke = row["keystroke"]
    assert keystroke["prompt_tokens"] == CONTEXT + 1
    assert keystroke["reused_tokens"] == keystroke["prompt_tokens"] - 1
    assert keystroke["no_reuse_reused_tokens"] == 0
    assert keystroke["new_tokens"] == NEW  # stop ids disabled: always the full count
    for key in ("reuse_ms", "reuse_prefill_ms", "no_reuse_ms", "no_reuse_prefill_ms", "speedup"):
        assert keystroke[key] > 0, key
    assert len(keystroke["reuse_ms_all"]) == 2


def test_int8_weights_are_smaller_to_read(result: dict) -> None:
    fp32, int8 = result["results"]
    assert fp32["dtype"] == "float32"
    assert int8["decode_weight_bytes"] < fp32["decode_weight_bytes"]


def test_table_renders(result: dict) -> None:
    table = bench_engine.render(result)
    assert "| tiny_starcoder_py | float32 |" in table
    assert "| tiny_starcoder_py | int8 |" in table


def test_lean_and_reference_interleaved(tmp_path: Path, shared: Path) -> None:
    """--forward lean,reference: both paths on one loaded model, a row each, and their ratios."""
    argv = ["--models", "tiny_starcoder_py", "--quantization", "none", "--tiny",
            "--forward", "lean,reference", "--context", str(CONTEXT), "--new-tokens", str(NEW),
            "--repeats", "1", "--threads", "1", "--device", "cpu", "--bandwidth-mb", "32",
            "--json", "--in-process", "--shared", str(shared), "--cache-dir", str(tmp_path)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_engine.main(argv) == 0
    result = json.loads(out.getvalue())
    rows = result["results"]
    assert [r["forward"] for r in rows] == ["lean", "transformers"]
    assert all(r["keystroke"]["reused_tokens"] == CONTEXT for r in rows)
    ratios = result["lean_vs_reference"]["tiny_starcoder_py none"]
    assert all(ratios[key] > 0 for key in ("decode", "keystroke", "cold_prefill"))
    assert "lean ÷ transformers" in bench_engine.render(result)


def test_retype_speculation_is_exact_and_counts_forwards(shared: Path) -> None:
    """--retype: the trained model retypes a function body of real code (this repository's
    bench module), plain and speculating; same answers, and tokens per forward reported."""
    model = shared / "models" / "tiny-fim-starcoder"
    if not (model / "config.json").is_file():
        pytest.skip(f"the trained model is not in {model.parent}")
    argv = ["--retype", bench_engine.__file__, "--model-dir", str(model), "--functions", "1",
            "--max-requests", "3", "--new-tokens", "8", "--context", "256", "--threads", "1",
            "--device", "cpu", "--speculate", "4"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_engine.main(argv) == 0
    report = json.loads(out.getvalue())
    assert report["requests"] == 3 and report["differing_answers"] == 0
    plain, fast = report["totals"]["plain"], report["totals"]["speculative"]
    assert plain["tokens"] == fast["tokens"] > 0
    assert plain["tokens_per_forward"] == 1.0 and plain["drafted"] == 0
    assert fast["tokens_per_forward"] >= 1.0 and fast["accepted"] <= fast["drafted"]
