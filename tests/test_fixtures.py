"""A clone anywhere else: where the real configs and tokenizers come from when there is no
`../shared`, what the tests and the demo do without them, and that nothing is downloaded unasked.

The bare clone is real: the package and a few test modules copied to a temporary folder (so no
`shared/` is beside it), FIMLSP_SHARED pointing at an empty folder and an empty Hugging Face
cache, run in a subprocess. The Hugging Face cache is a real one in the hub library's own layout
(`models--org--name/refs/main`, `snapshots/<commit>/file`), filled with shared/'s real files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fimlsp.tools import demo, fixtures
from fimlsp.tools.fixtures import FETCH_COMMAND, HUB_SOURCES, find

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Quick tests that need the real configs (test_models) and tokenizers (test_prompt).
SAMPLE = ["tests/test_models.py::test_fim_neox_window_is_what_its_config_allows",
          "tests/test_prompt.py::test_load_tokenizer_on_a_folder_matches_from_file"]


def fill_hf_cache(cache: Path, shared: Path, leave_out: frozenset[str] = frozenset()) -> None:
    """What `python -m fimlsp.tools.fixtures fetch` leaves in the cache, from shared/'s files."""
    for folder, (repo, names) in HUB_SOURCES.items():
        if repo in leave_out:
            continue
        home = cache / ("models--" + repo.replace("/", "--"))
        (home / "refs").mkdir(parents=True, exist_ok=True)
        (home / "refs" / "main").write_text(COMMIT)
        snapshot = home / "snapshots" / COMMIT
        snapshot.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (shared / folder / name).is_file():
                shutil.copyfile(shared / folder / name, snapshot / name)


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a bare clone sees it: FIMLSP_SHARED empty, no shared/ beside the package,
    an empty HF cache (the hub library reads its cache path at import: patched there)."""
    import huggingface_hub.constants

    (tmp_path / "empty").mkdir()
    (tmp_path / "clone" / "fimlsp").mkdir(parents=True)
    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("FIMLSP_SHARED", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fixtures, "__file__", str(tmp_path / "clone" / "fimlsp" / "fixtures.py"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_fimlsp_shared_comes_first(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIMLSP_SHARED", str(shared))
    found = find()
    assert found.path == shared and found.source == "FIMLSP_SHARED"


def test_then_shared_beside_the_repository(nowhere: Path, shared: Path) -> None:
    shutil.copytree(shared / "model-configs", nowhere / "shared" / "model-configs")
    shutil.copytree(shared / "tokenizers", nowhere / "shared" / "tokenizers")
    found = find()
    assert found.path == nowhere / "shared" and found.source == "shared/ beside the repository"


def test_then_the_hugging_face_cache(nowhere: Path, shared: Path) -> None:
    fill_hf_cache(nowhere / "hf", shared)
    found = find()
    assert found.source == "Hugging Face cache" and found.path is not None
    assert found.path.is_relative_to(nowhere / "xdg")
    for folder, (_repo, names) in HUB_SOURCES.items():
        for name in names:
            if (shared / folder / name).is_file():
                assert (found.path / folder / name).read_bytes() == \
                    (shared / folder / name).read_bytes()


def test_nowhere_says_what_is_missing_and_the_command_that_fetches_it(
        nowhere: Path, shared: Path) -> None:
    fill_hf_cache(nowhere / "hf", shared, leave_out=frozenset({"bigcode/starcoderbase-1b",
                                                               "Qwen/Qwen2.5-Coder-1.5B"}))
    found = find()
    assert found.path is None
    assert found.missing == ["bigcode/starcoderbase-1b", "Qwen/Qwen2.5-Coder-1.5B"]
    reason = found.reason()
    assert FETCH_COMMAND in reason and "FIMLSP_SHARED" in reason
    assert "bigcode/starcoderbase-1b" in reason and "gated" in reason
    assert str(nowhere / "empty") in reason  # the FIMLSP_SHARED that was looked at


def test_demo_on_a_bare_clone_downloads_tiny_starcoder(
        nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order: no cached model, no fixtures → the real tiny_starcoder_py from the hub (the
    download itself is not run: no hub here)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked: list[str] = []
    chosen = demo.choose_model(None, download=asked.append)
    model, note = chosen.name, chosen.note
    assert asked == ["bigcode/tiny_starcoder_py"]
    assert model == "tiny-starcoder" and note is None


def test_demo_offline_on_a_bare_clone_says_what_to_run(
        nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as stopped:
        demo.choose_model(None, download=pytest.fail)
    message = str(stopped.value.code)
    assert "hf download bigcode/tiny_starcoder_py" in message and "FIMLSP_SHARED" in message


def test_demo_download_failure_is_one_line_with_the_remedy(
        nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(repo: str) -> None:
        raise ConnectionError(f"cannot reach https://huggingface.co/{repo}.\nretrying")

    with pytest.raises(SystemExit) as stopped:
        demo.choose_model(None, download=unreachable)
    message = str(stopped.value.code)
    assert "\n" not in message and "cannot reach" in message and ".." not in message
    assert "hf download bigcode/tiny_starcoder_py" in message


def test_demo_with_fixtures_still_builds_the_tiny_model_offline(
        shared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FIMLSP_SHARED", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(demo, "REAL_MODELS", ())
    monkeypatch.setattr("fimlsp.tools.tiny.trained_model_dir", lambda *_: None)  # none trained
    chosen = demo.choose_model(None, download=pytest.fail)
    model, note = chosen.name, chosen.note
    assert Path(model).is_relative_to(tmp_path) and note and "MEANINGLESS" in note


# -- a bare clone, for real ------------------------------------------------------------------


def bare_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "fimlsp", clone / "fimlsp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "tests").mkdir()
    for name in ("conftest.py", "shared_fixtures.py", "test_models.py", "test_prompt.py"):
        shutil.copy(ROOT / "tests" / name, clone / "tests" / name)
    shutil.copy(ROOT / "pyproject.toml", clone)
    return clone


def run_pytest(clone: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "empty").mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("FIMLSP_REQUIRE_FIXTURES", "HF_HOME", "HF_HUB_CACHE")}
    environment.update({"PYTHONPATH": str(clone), "FIMLSP_SHARED": str(tmp_path / "empty"),
                        "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
                        "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *SAMPLE], cwd=clone, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_bare_clone_skips_the_tests_with_the_reason_and_the_command(tmp_path: Path) -> None:
    clone = bare_clone(tmp_path)
    assert not (clone.parent / "shared").exists()
    run = run_pytest(clone, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 skipped" in run.stdout, run.stdout[-3000:]
    assert FETCH_COMMAND in run.stdout and "FIMLSP_SHARED" in run.stdout
    required = run_pytest(clone, tmp_path, FIMLSP_REQUIRE_FIXTURES="1")  # CI: no quiet skips
    assert required.returncode != 0 and "2 errors" in required.stdout, required.stdout[-3000:]


@pytest.mark.slow
def test_bare_clone_runs_the_tests_from_the_hugging_face_cache(tmp_path: Path,
                                                              shared: Path) -> None:
    clone = bare_clone(tmp_path)
    fill_hf_cache(tmp_path / "hf", shared)
    run = run_pytest(clone, tmp_path)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:]
