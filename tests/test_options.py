"""One source for the options: `config.Settings`. The CLI flags, `fimlsp options`, the tables
in README.md and docs/configuration.md are generated from it, and every client's defaults are
read from its own files (as text: no editor needed) and checked against it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from fimlsp import cli, options
from fimlsp.config import _CHOICES, _RANGES, Settings

ROOT = Path(__file__).resolve().parent.parent


def _load_docs_script() -> Any:
    spec = importlib.util.spec_from_file_location("options_docs", ROOT / "scripts/options_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["options_docs"] = module
    spec.loader.exec_module(module)
    return module


docs = _load_docs_script()
DEFAULTS = {o.camel: o.default for o in options.all_options()}


def sample_value(option: options.Option) -> str:
    """A valid value other than the default, as typed on a command line."""
    if option.choices:
        return next(c for c in reversed(option.choices) if c != option.default)
    if option.kind == "int":
        low, high = option.range or (1, 100)
        return str(int(min(max(low, 7), high)))
    if option.kind == "float":
        low, high = option.range or (0.0, 1.0)
        return str(round(low + (high - low) * 0.3, 3))
    return "some_value"  # valid everywhere, apiKeyEnv (a variable name) too


@pytest.mark.parametrize("option", options.all_options(), ids=lambda o: o.name)
def test_every_setting_is_a_flag_of_serve_complete_and_prompt(option: options.Option) -> None:
    parser = cli.build_parser()
    commands = (["serve"], ["complete", "a.py", "--line", "0", "--character", "0"],
                ["prompt", "a.py", "--line", "0", "--character", "0"])
    if option.kind == "bool":  # --x / --no-x
        for command in commands:
            on = parser.parse_args([*command, option.flag])
            off = parser.parse_args([*command, "--no-" + option.flag[2:]])
            assert getattr(cli._settings(on), option.name) is True
            assert getattr(cli._settings(off), option.name) is False
        return
    value = sample_value(option)
    for command in commands:
        args = parser.parse_args([*command, option.flag, value])
        expected = {"int": int, "float": float, "str": str}[option.kind](value)
        assert getattr(cli._settings(args), option.name) == expected


def test_top_p_and_neighbour_share_flags_exist() -> None:
    args = cli.build_parser().parse_args(["serve", "--top-p", "0.9", "--neighbour-share", "0"])
    settings = cli._settings(args)
    assert settings.top_p == 0.9 and settings.neighbour_share == 0.0


def test_every_setting_has_a_sentence_and_the_help_names_its_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert [o.name for o in options.all_options()] == [f.name for f in fields(Settings)]
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for option in options.all_options():
        assert option.help.strip()
        assert option.flag in help_text
        default = re.sub(r"`([^`]*)`", r"\1", option.default_text())
        assert f"(default: {default})" in help_text, option.name


def test_reload_keys_are_one_list_per_engine() -> None:
    local, remote = options.reload_keys("local"), options.reload_keys("openai")
    assert local | remote == options.RELOADS
    assert {"endpoint", "served_model", "retries", "connect_timeout_ms", "tls_verify"} <= \
        remote - local
    assert {"device", "dtype", "quantization", "threads", "speculate"} <= local - remote
    assert {"model", "engine", "tokenizer"} <= local & remote
    assert all(options.reload_keys(kind) == remote for kind in ("llamacpp", "tgi", "ollama"))


def test_fimlsp_options_markdown_is_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["options", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table == options.markdown()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{docs.BEGIN}\n{table}{docs.END}" in readme
    for option in options.all_options():
        assert f"| `{option.camel}` | `{option.flag}` |" in table


def test_committed_docs_equal_the_generated_text() -> None:
    """Fails when Settings, a sentence or a client changed without `scripts/options_docs.py`."""
    for path, text in docs.rendered(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run python scripts/options_docs.py")


def test_options_json_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["options", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [o["camel"] for o in listed] == list(DEFAULTS)
    assert {o["name"]: o["default"] for o in listed} == {
        f.name: f.default for f in fields(Settings)}


# -- the clients' defaults ---------------------------------------------------------------------


def _unset(value: Any) -> bool:
    return value is None or value == ""


def test_vscode_settings_agree_with_the_server() -> None:
    settings = docs.vscode_settings(ROOT)
    server_options = [key for key in settings if key in DEFAULTS]
    assert server_options, "no server option among VS Code's settings?"
    # What the extension sends is exactly the server options it declares.
    assert sorted(docs.vscode_sent(ROOT)) == sorted(server_options)
    for key in server_options:
        declared = settings[key]
        default = declared.get("default")
        assert _unset(default) or default == DEFAULTS[key], (key, default, DEFAULTS[key])
        snake = re.sub(r"([A-Z])", r"_\1", key).lower()
        if "enum" in declared:
            assert tuple(declared["enum"]) == _CHOICES[snake], key
        if "minimum" in declared:
            assert declared["minimum"] == _RANGES[snake][0], key
        if "maximum" in declared:
            assert declared["maximum"] == _RANGES[snake][1], key


def test_vscode_readme_defaults_agree_with_package_json() -> None:
    readme = (ROOT / "editors/vscode/README.md").read_text(encoding="utf-8")
    settings = docs.vscode_settings(ROOT)
    rows = dict(re.findall(r"^\| `fimlsp\.(\w+)` \| ([^|]+) \|", readme, re.M))
    for key in set(rows) & set(DEFAULTS):
        shown = rows[key].strip()
        literal = re.fullmatch(r"`([^`]*)`", shown)
        if literal is None:
            continue  # words such as "server's (`tiny-starcoder`)"
        value = literal.group(1)
        expected = settings[key].get("default")
        expected = DEFAULTS[key] if _unset(expected) else expected
        # As settings.json spells it: `true`, not Python's True.
        shown_default = json.dumps(expected) if isinstance(expected, bool) else str(expected)
        assert value == shown_default, (key, value, expected)


def test_neovim_documented_defaults_agree_with_the_server() -> None:
    found = docs.neovim_server_defaults(ROOT)
    assert {"model", "quantization", "logLevel"} <= set(found)  # maxNewTokens: unset, per device
    for key, value in found.items():
        assert key in DEFAULTS, f"init.lua names an option the server does not have: {key}"
        assert value == DEFAULTS[key], (key, value, DEFAULTS[key])


def test_emacs_defcustoms_agree_with_the_server() -> None:
    found = docs.emacs_options(ROOT)
    assert {"model", "quantization", "maxNewTokens", "logLevel"} <= set(found)
    for key, option in found.items():
        assert key in DEFAULTS, f"fimlsp.el sends an option the server does not have: {key}"
        snake = re.sub(r"([A-Z])", r"_\1", key).lower()
        assert option.variable == "fimlsp-" + snake.replace("_", "-")
        assert option.value == "nil", f"{option.variable}: nil sends nothing; a value overrides"
        if DEFAULTS[key] is not None:
            assert option.claimed == DEFAULTS[key], (option.variable, option.claimed)
        if snake in _CHOICES:
            assert tuple(option.choices or ()) == _CHOICES[snake], option.variable
