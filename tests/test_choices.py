"""What `auto` resolves to, and that the user can read why: the load log line and
`fimlsp.stats` `choices` (quantization, dtype, threads, window, speculation), through the real
server; speculation's automatic choice on a real (tiny) model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_lsp import running

from fimlsp.config import Settings
from fimlsp.engine import choices
from fimlsp.engine.local import SPECULATE, SPECULATE_PAYS_BELOW, LocalEngine
from fimlsp.models import resolve_model


@pytest.mark.slow
async def test_a_user_who_sets_nothing_gets_the_fast_cpu_defaults_and_their_reasons(
        tiny_model: Path, tmp_path: Path) -> None:
    async with running(tiny_model, tmp_path, {"device": "cpu"}) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "ready", client.tail()
        made = stats["choices"]
        assert made["quantization"]["value"] == "int8" and stats["quantization"] == "int8"
        assert made["quantization"]["why"].startswith("auto: dynamic int8 on the CPU")
        assert made["dtype"] == {"value": "float32", "why": "auto: fp32 on cpu"}
        assert made["window"]["value"] == choices.CPU_WINDOW == stats["window"]
        assert "CPU default" in made["window"]["why"]
        assert made["threads"]["value"] == stats["threads"] >= 1
        assert made["speculate"]["value"] in (0, SPECULATE)
        assert "forward costs" in made["speculate"]["why"]
        # The load's log line (stderr) says the same, once.
        await client.wait_for(lambda: "ready in" in client.tail(), "the load's log line")
        ready = [line for line in client.tail().splitlines() if "ready in" in line]
        assert len(ready) == 1 and "quantization int8 (auto: dynamic int8" in ready[0], ready
        assert f"window {choices.CPU_WINDOW} (the CPU default" in ready[0]


@pytest.mark.slow
async def test_what_the_user_set_is_kept_and_said_to_be_set(tiny_model: Path,
                                                              tmp_path: Path) -> None:
    options = {"device": "cpu", "quantization": "none", "contextWindow": 4096, "threads": 1,
               "speculate": 0}
    async with running(tiny_model, tmp_path, options) as client:
        stats = await client.wait_loaded()
        made = stats["choices"]
        assert stats["quantization"] == "none" and stats["window"] == 4096, stats
        assert {k: made[k] for k in ("quantization", "threads", "speculate")} == {
            "quantization": {"value": "none", "why": "set"},
            "threads": {"value": 1, "why": "set"}, "speculate": {"value": 0, "why": "set"}}
        assert made["window"] == {"value": 4096, "why": "context_window option"}


def test_speculation_auto_follows_the_measured_verify_cost(
        tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drafts where a (1 + k)-token forward costs at most SPECULATE_PAYS_BELOW × one token;
    off where it costs more (a compute-bound CPU step)."""
    monkeypatch.delenv("FIMLSP_SPECULATE", raising=False)
    spec = resolve_model(str(tiny_model))
    engine = LocalEngine.load(spec, Settings(device="cpu", quantization="none"))
    ratio = engine.measure_verify_cost(rounds=2)
    assert ratio > 0 and engine.session_count == 0  # the measuring session is gone
    for cost, expected in ((SPECULATE_PAYS_BELOW - 0.2, SPECULATE),
                           (SPECULATE_PAYS_BELOW + 0.9, 0)):
        monkeypatch.setattr(engine, "measure_verify_cost", lambda cost=cost: cost)
        chosen = engine.choose_speculation()
        assert chosen.value == engine.speculate == expected
        assert f"{cost:.2f}×" in chosen.why
    explicit = LocalEngine.load(spec, Settings(device="cpu", quantization="none", speculate=3))
    assert explicit.speculate == 3 and explicit.choices["speculate"].why == "set"


def test_threads_auto_keeps_the_faster_of_the_cores_and_one(tiny_model: Path) -> None:
    """Measured at load: for a small model, one thread can decode faster than two."""
    import torch

    engine = LocalEngine.load(resolve_model(str(tiny_model)),
                              Settings(device="cpu", quantization="none", threads=1, speculate=0))
    chosen = engine.choose_threads(choices.Choice(2, "auto: torch's default"), rounds=2)
    assert chosen.value in (1, 2) and torch.get_num_threads() == chosen.value
    assert "on 2 threads" in chosen.why and chosen.why.startswith("auto: torch's default")
    one = choices.Choice(1, "auto: the 1 CPUs this process may run on")
    assert engine.choose_threads(one) is one  # nothing to choose between
    assert engine.session_count == 0


def test_a_model_loaded_again_counts_the_machines_cores_not_its_predecessors_choice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine may settle on one thread (torch.set_num_threads(1)); a reload after a setting
    changed must still see the cores, not that one."""
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(choices, "TORCH_DEFAULT_THREADS", 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert choices.threads(None, Path("/nonexistent")).value == 4
    finally:
        torch.set_num_threads(before)


def test_answer_length_is_shorter_on_the_cpu_unless_set() -> None:
    """An answer in time at a typing pace on the CPU (docs/benchmarks.md: 32 tokens saved as many
    characters in real time as 64, with 5 % of answers late instead of 29 %); a GPU or a
    serving engine keeps 64; a setting always wins."""
    assert choices.answer_tokens(None, "local", "cpu").value == choices.CPU_ANSWER_TOKENS == 32
    assert "CPU default" in choices.answer_tokens(None, "local", "cpu").why
    assert choices.answer_tokens(None, "local", "cuda").value == choices.ANSWER_TOKENS == 64
    assert choices.answer_tokens(None, "openai", "cpu").value == 64
    assert choices.answer_tokens(48, "local", "cpu") == choices.Choice(48, "set")


def test_the_completer_reads_a_number_and_reports_why() -> None:
    from fimlsp.completer import Completer

    local = Completer(Settings(device="cpu"))
    assert local.settings.max_new_tokens == 32
    assert local.choices()["max_new_tokens"].value == 32
    remote = Completer(Settings(engine="openai", endpoint="http://127.0.0.1:9/v1"))
    assert remote.settings.max_new_tokens == 64
    local.update_settings(Settings(device="cpu", max_new_tokens=80))
    assert local.settings.max_new_tokens == 80 and local.choices()["max_new_tokens"].why == "set"
