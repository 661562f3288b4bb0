"""Model resolution: presets, windows from the loaded config, quantization per device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fimlsp.engine.local import resolve_quantization
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
    ("auto", "starcoder-15b", "cpu", "none"),
    ("auto", "starcoderbase-1b", "cuda", "none"),
    ("int8", "starcoderbase-1b", "cpu", "int8"),  # an explicit choice is kept
    ("none", "starcoder-15b", "cuda", "none"),
])
def test_quantization_auto_follows_the_preset(setting: str, name: str, device: str,
                                              expected: str) -> None:
    spec = resolve_model(name)
    assert resolve_quantization(setting, spec, torch.device(device)) == expected


def test_unknown_directory_model_gets_no_quantization(tiny_model: Path) -> None:
    assert resolve_quantization("auto", resolve_model(str(tiny_model)),
                                torch.device("cuda")) == "none"


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
