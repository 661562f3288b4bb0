"""Model resolution: presets, windows from the loaded config, quantization per device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fimlsp.engine import choices
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import PRESETS, effective_window, resolve_model


def test_fim_neox_window_is_what_its_config_allows(shared: Path) -> None:
    """The card says 2048, the shipped config says 1024: the config wins, and says why."""
    config = json.loads((shared / "model-configs" / "FIM-NeoX-1.3B" / "config.json").read_text())
    spec = resolve_model("fim-neox-1.3b")
    assert PRESETS["fim-neox-1.3b"].window == 2048
    assert effective_window(spec, config, None) == (1024, "model config")
    assert effective_window(spec, config, 512) == (512, "context_window option")
    assert effective_window(spec, None, None) == (2048, "preset fim-neox-1.3b")


@pytest.mark.parametrize(("name", "config_dir", "window"), [
    ("starcoderbase-1b", "starcoderbase-1b", 8192),
    ("santacoder", "gpt_bigcode-santacoder", 2048),
    ("refact-1.6b", "Refact-1_6B-fim", 4096),
    ("starcoder-15b", "starcoder", 8192),
    ("tiny-starcoder", "tiny_starcoder_py", 8192),
])
def test_seed_windows_from_their_real_configs(name: str, config_dir: str, window: int,
                                              shared: Path) -> None:
    config = json.loads((shared / "model-configs" / config_dir / "config.json").read_text())
    assert effective_window(resolve_model(name), config, None)[0] == window


@pytest.mark.parametrize(("setting", "name", "device", "expected"), [
    ("auto", "starcoder-15b", "cuda", "4bit"),  # 15.5B only fits a consumer GPU in 4-bit
    ("auto", "starcoder-15b", "cpu", "int8"),
    ("auto", "tiny-starcoder", "cpu", "int8"),  # the default model on a laptop: fast
    ("auto", "qwen2.5-coder-1.5b", "cpu", "int8"),
    ("auto", "starcoderbase-1b", "cuda", "none"),
    ("none", "starcoderbase-1b", "cpu", "none"),  # an explicit choice is kept
    ("int8", "starcoderbase-1b", "cpu", "int8"),
    ("none", "starcoder-15b", "cuda", "none"),
])
def test_quantization_auto_follows_the_preset(setting: str, name: str, device: str,
                                              expected: str) -> None:
    spec = resolve_model(name)
    chosen = choices.quantization(setting, spec, torch.device(device))
    assert chosen.value == expected
    assert chosen.why == "set" if setting != "auto" else chosen.why.startswith("auto:")


def test_unknown_directory_model_gets_int8_on_cpu_only(tiny_model: Path) -> None:
    spec = resolve_model(str(tiny_model))
    assert choices.quantization("auto", spec, torch.device("cuda")).value == "none"
    cpu = choices.quantization("auto", spec, torch.device("cpu"))
    assert cpu.value == "int8" and "fp32" in cpu.why  # the reason quotes the agreement


def test_cpu_window_is_the_keystroke_budget_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the in-process engine fills 2048 tokens, not the model's 8192; a window the
    user set, a GPU and a serving engine keep theirs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = resolve_model("tiny-starcoder")
    cap = choices.window_cap(None, "local", "auto")
    assert cap is not None
    assert effective_window(spec, None, None, cap) == (choices.CPU_WINDOW, cap[1])
    assert choices.window_cap(4096, "local", "auto") is None
    assert choices.window_cap(None, "openai", "auto") is None
    assert choices.window_cap(None, "local", "cuda") is None
    # Never more than the model's own window: FIM-NeoX's config allows 1024.
    neox = resolve_model("fim-neox-1.3b")
    assert effective_window(neox, {"max_position_embeddings": 1024}, None, cap)[0] == 1024


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs → 2 threads
    ({"cpu.max": "max 100000\n"}, None),  # no quota
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_threads_follow_a_container_quota(tmp_path: Path, files: dict[str, str],
                                          expected: int | None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """torch counts the host's cores; under a CPU quota that many threads would be throttled."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(choices, "TORCH_DEFAULT_THREADS", 16)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(16)))
    chosen = choices.threads(None, tmp_path)
    if expected is None:
        assert chosen == choices.Choice(16, "auto: torch's default (physical cores)")
    else:
        assert chosen.value == expected and "quota" in chosen.why
    assert choices.threads(3, tmp_path) == choices.Choice(3, "set")


def test_threads_follow_the_cpus_this_process_may_use(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choices, "TORCH_DEFAULT_THREADS", 8)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
    assert choices.threads(None, tmp_path).value == 2


def test_unknown_names_say_how_to_fix() -> None:
    with pytest.raises(FimError) as caught:
        resolve_model("no-such-model")
    assert caught.value.kind is ErrorKind.MODEL_UNAVAILABLE
    assert "--model" in caught.value.message
    with pytest.raises(FimError) as caught:
        resolve_model("starcoderbase-1b", template="nonsense")
    assert caught.value.kind is ErrorKind.CONFIG and "starcoder" in caught.value.message


def test_hub_id_of_a_preset_resolves_to_the_preset() -> None:
    spec = resolve_model("bigcode/starcoderbase-1b")
    assert spec.preset is PRESETS["starcoderbase-1b"] and spec.order == "spm"
