"""`python -m fimlsp ...` as a user runs it: a real subprocess, real tokenizer, tiny real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the CLI with a model, as a subprocess

SOURCE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1"}


def one_json_object(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory,
         tiny_model: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every command of this module, run concurrently (each pays Python + torch start-up)."""
    work = tmp_path_factory.mktemp("cli")
    source = work / "add.py"
    source.write_text(SOURCE, encoding="utf-8")
    long = work / "long.py"
    long.write_text("".join(f"value_{i} = compute({i})\n" for i in range(200)), encoding="utf-8")
    latin1 = work / "latin1.py"
    latin1.write_bytes(b'name = "caf\xe9"\nvalue = 1\n')
    bare = work / "tokenizer-and-config-only"
    bare.mkdir()
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(tiny_model / name, bare / name)
    model = str(tiny_model)
    commands = {
        "complete": ["complete", str(source), "--line", "1", "--character", "11",
                     "--model", model, "--max-new-tokens", "8", "--json"],
        "prompt": ["prompt", str(source), "--line", "1", "--character", "11",
                   "--model", model, "--json"],
        "no-weights": ["prompt", str(source), "--line", "4", "--character", "6",
                       "--model", str(bare), "--json"],
        "small-window": ["prompt", str(long), "--line", "100", "--character", "5",
                         "--model", model, "--context-window", "64", "--max-new-tokens", "16",
                         "--json"],
        "bad-line": ["prompt", str(source), "--line", "40", "--character", "0",
                     "--model", model, "--json"],
        "bad-model": ["prompt", str(source), "--line", "0", "--character", "0",
                      "--model", "no-such-model"],
        "latin1": ["prompt", str(latin1), "--line", "1", "--character", "0",
                   "--model", model, "--json"],
        "models-json": ["models", "--json"],
        "models": ["models"],
        "no-line": ["prompt", str(source), "--character", "0"],
        "missing-file": ["complete", str(work / "missing.py"), "--line", "0", "--character", "0",
                         "--model", model],
        "directory": ["prompt", str(work), "--line", "0", "--character", "0", "--model", model],
        "under-a-file": ["prompt", str(source / "child.py"), "--line", "0", "--character", "0",
                         "--model", model],
        "negative-line": ["prompt", str(source), "--line", "-1", "--character", "0",
                          "--model", model],
        "no-weights-complete": ["complete", str(source), "--line", "0", "--character", "0",
                                "--model", str(bare)],
    }

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fimlsp", *args], cwd=work, env=ENV,
                              capture_output=True, text=True, encoding="utf-8", timeout=300)

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:  # ~300 MB each
        futures = {name: pool.submit(run, args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def test_complete_json(runs: dict) -> None:
    run = runs["complete"]
    assert run.returncode == 0, run.stderr
    result = one_json_object(run.stdout)
    assert set(result) == {"text", "prompt_tokens", "reused_tokens", "prefill_ms", "decode_ms",
                           "generated_tokens", "source"}
    assert result["source"] == "model"
    assert isinstance(result["text"], str)
    assert isinstance(result["prompt_tokens"], int) and result["prompt_tokens"] > 0
    assert 0 <= result["generated_tokens"] <= 8
    assert result["reused_tokens"] == 0
    assert result["prefill_ms"] >= 0 and result["decode_ms"] >= 0


def test_prompt_json(runs: dict) -> None:
    run = runs["prompt"]
    assert run.returncode == 0, run.stderr
    result = one_json_object(run.stdout)
    assert {"text", "ids", "format", "window", "reserved", "prefix_tokens",
            "suffix_tokens"} <= set(result)
    assert set(result) <= {"text", "ids", "format", "window", "reserved", "prefix_tokens",
                           "suffix_tokens", "prompt_tokens", "neighbour_tokens", "healed"}
    assert result["format"] == "starcoder/spm"
    assert result["ids"][:2] == [1, 3]  # <fim_prefix><fim_suffix>
    assert result["ids"].count(2) == 1  # one <fim_middle>, between suffix and prefix
    assert result["text"] == ("<fim_prefix><fim_suffix>a + b\n\n\nprint(add(1, 2))\n"
                              "<fim_middle>def add(a, b):\n    return")
    assert result["healed"] == " "  # token healing: the model writes the space again
    assert result["prompt_tokens"] == len(result["ids"])
    assert result["prefix_tokens"] + result["suffix_tokens"] + 3 == len(result["ids"])
    # The model's 8192, or the CPU's default window where no GPU is (engine/choices.py).
    import torch

    from fimlsp.engine.choices import ANSWER_TOKENS, CPU_ANSWER_TOKENS, CPU_WINDOW

    # ... and the answer's room: 32 tokens on the CPU, 64 on a GPU (unset maxNewTokens).
    gpu = torch.cuda.is_available()
    assert result["window"] == (8192 if gpu else CPU_WINDOW)
    assert result["reserved"] == (ANSWER_TOKENS if gpu else CPU_ANSWER_TOKENS)


def test_prompt_needs_no_weights(runs: dict) -> None:
    run = runs["no-weights"]
    assert run.returncode == 0, run.stderr
    result = one_json_object(run.stdout)
    assert result["format"] == "starcoder/spm"
    assert result["ids"][:2] == [1, 3]
    assert result["text"].endswith("<fim_middle>" + SOURCE[: SOURCE.index("print(") + 6])


def test_context_window_and_max_new_tokens_bound_the_prompt(runs: dict) -> None:
    run = runs["small-window"]
    assert run.returncode == 0, run.stderr
    result = one_json_object(run.stdout)
    assert result["window"] == 64 and result["reserved"] == 16
    assert len(result["ids"]) <= 48
    assert result["prefix_tokens"] > 0 and result["suffix_tokens"] > 0


def test_line_outside_the_document_exits_2(runs: dict) -> None:
    run = runs["bad-line"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert "line 40" in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_model_exits_2_and_says_how_to_name_one(runs: dict) -> None:
    run = runs["bad-model"]
    assert run.returncode == 2
    assert "no-such-model" in run.stderr and "--model" in run.stderr
    assert "Traceback" not in run.stderr


def test_file_that_is_not_utf8_does_not_crash(runs: dict) -> None:
    run = runs["latin1"]
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode in (0, 2)
    if run.returncode == 0:
        assert one_json_object(run.stdout)["ids"][:2] == [1, 3]


def test_models_json(runs: dict) -> None:
    run = runs["models-json"]
    assert run.returncode == 0, run.stderr
    result = one_json_object(run.stdout)
    names = {preset["name"] for preset in result["presets"]}
    assert {"starcoderbase-1b", "santacoder", "fim-neox-1.3b", "refact-1.6b", "starcoder-15b",
            "tiny-starcoder"} <= names
    from fimlsp.models import PRESETS, TEMPLATES

    assert names == set(PRESETS)
    assert result["templates"] == list(TEMPLATES)
    for preset in result["presets"]:
        assert {"name", "hub_id", "window", "format", "local"} <= set(preset)
        template, order = preset["format"].split("/")
        assert template in TEMPLATES and order in TEMPLATES[template].orders


def test_models_table(runs: dict) -> None:
    run = runs["models"]
    assert run.returncode == 0, run.stderr
    for name in ("starcoderbase-1b", "santacoder", "fim-neox-1.3b", "refact-1.6b"):
        assert name in run.stdout
    from fimlsp.models import PRESETS

    for preset in PRESETS.values():  # whole: users copy them into `hf download`
        assert f" {preset.hub_id} " in run.stdout, preset.hub_id


def test_readme_lists_the_json_fields_the_cli_prints(runs: dict) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    for name in ("complete", "prompt"):
        listed = text.split(f"`{name} --json` prints `{{", 1)[1].split("}`", 1)[0]
        fields = {field.strip().strip('"') for field in listed.split(",")}
        assert fields == set(one_json_object(runs[name].stdout)), name


def test_missing_required_argument_is_a_usage_error(runs: dict) -> None:
    run = runs["no-line"]
    assert run.returncode == 2
    assert "--line" in run.stderr


@pytest.mark.parametrize("name", ["missing-file", "directory", "under-a-file", "negative-line",
                                  "bad-line", "bad-model", "no-weights-complete"])
def test_every_error_is_one_line_and_a_nonzero_exit(runs: dict, name: str) -> None:
    run = runs[name]
    assert run.returncode != 0
    assert run.stdout == ""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fimlsp: "), run.stderr
    assert ".." not in lines[0]


def test_missing_file_directory_and_path_under_a_file_say_what_is_wrong(runs: dict) -> None:
    assert "missing.py" in runs["missing-file"].stderr
    assert "No such file" in runs["missing-file"].stderr
    assert "is a directory" in runs["directory"].stderr
    assert "Not a directory" in runs["under-a-file"].stderr


def test_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Permissions cannot deny root, so the read itself is made to fail as it would."""
    from fimlsp import cli

    source = tmp_path / "secret.py"
    source.write_text("x = 1\n", encoding="utf-8")

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    code = cli.main(["prompt", str(source), "--line", "0", "--character", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"fimlsp: cannot read {source}: Permission denied\n"


def test_a_bug_is_one_line_unless_a_traceback_is_asked_for(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from fimlsp import cli

    def broken(_args: object) -> int:
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(cli, "cmd_models", broken)
    monkeypatch.delenv("FIMLSP_TRACEBACK", raising=False)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something broke" in err
    monkeypatch.setenv("FIMLSP_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["models"])


def test_bench_outside_a_checkout_says_where_the_benchmarks_live(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wheel has no benchmarks (tests/test_install.py); `fimlsp bench` then says so instead
    of a traceback. `None` in sys.modules makes the import fail as a missing package does."""
    from fimlsp.cli import load_benchmarks
    from fimlsp.errors import FimError

    monkeypatch.setitem(sys.modules, "fimlsp_bench", None)
    with pytest.raises(FimError, match=r"benchmarks are not installed.*fimlsp_bench"):
        load_benchmarks(roots=(tmp_path,))


def test_bench_from_the_checkout_lists_the_benchmarks() -> None:
    from fimlsp.cli import load_benchmarks

    assert {"policy", "quality", "engine", "session"} <= set(load_benchmarks().available())
