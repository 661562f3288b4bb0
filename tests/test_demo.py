"""`fimlsp demo` picks the model a newcomer can judge: a real cached one, else the small trained
fixture in shared/models (and says it is a small demo model), else a random one (and says its
text is meaningless)."""

from __future__ import annotations

from pathlib import Path

import pytest

import fimlsp.models
import fimlsp.tools.tiny
from fimlsp.tools.demo import TRAINED_OPTIONS, choose_model


@pytest.fixture
def no_cached_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fimlsp.models, "weights_present", lambda _source: False)


def test_the_trained_fixture_is_the_demo_model_when_it_is_there(
        trained_model: Path, no_cached_weights: None) -> None:
    chosen = choose_model(None)
    assert (Path(chosen.name), chosen.kind) == (trained_model, "trained")
    assert chosen.note and "SMALL" in chosen.note and "trained" in chosen.note
    assert chosen.options == TRAINED_OPTIONS


def test_the_random_model_stays_the_fallback(shared: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             no_cached_weights: None) -> None:
    bare = tmp_path / "shared"
    bare.mkdir()
    (bare / "model-configs").symlink_to(shared / "model-configs", target_is_directory=True)
    (bare / "tokenizers").symlink_to(shared / "tokenizers", target_is_directory=True)
    monkeypatch.setenv("FIMLSP_SHARED", str(bare))
    built: list[Path] = []
    monkeypatch.setattr(fimlsp.tools.tiny, "build_tiny_model",
                        lambda out, _name, **_: built.append(out) or out)
    chosen = choose_model(None)
    assert chosen.kind == "random" and built == [Path(chosen.name)]
    assert chosen.note and "MEANINGLESS" in chosen.note


def test_a_given_model_is_used_as_given() -> None:
    chosen = choose_model("some/model")
    assert (chosen.name, chosen.kind, chosen.note, chosen.options) == ("some/model", "given",
                                                                      None, {})
