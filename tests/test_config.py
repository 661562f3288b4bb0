"""parse_settings: every spelling clients send, and a bad value never stops the server."""

from __future__ import annotations

import dataclasses

import pytest

from fimlsp.config import Settings, parse_settings


def test_defaults_when_nothing_is_sent() -> None:
    parsed = parse_settings({})
    assert parsed.settings == Settings()
    assert parsed.warnings == []
    s = parsed.settings
    assert (s.model, s.max_new_tokens, s.temperature, s.multiline) == (
        "tiny-starcoder", None, 0.0, "auto")  # maxNewTokens unset: engine/choices.py decides
    assert s.context_window is None and s.template is None and s.threads is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"maxNewTokens": 32}, {"max_new_tokens": 32}),
        ({"max_new_tokens": 32}, {"max_new_tokens": 32}),
        ({"max-new-tokens": 32}, {"max_new_tokens": 32}),
        ({"contextWindow": 1024}, {"context_window": 1024}),
        ({"context_window": 1024}, {"context_window": 1024}),
        ({"timeBudgetMs": 250}, {"time_budget_ms": 250}),
        ({"topP": 0.5, "temperature": 0.2}, {"top_p": 0.5, "temperature": 0.2}),
        ({"logLevel": "DEBUG"}, {"log_level": "debug"}),
        ({"multiline": " Never "}, {"multiline": "never"}),
        ({"model": "santacoder", "template": "santacoder"},
         {"model": "santacoder", "template": "santacoder"}),
        ({"maxTokens": 10}, {"max_new_tokens": 10}),
        ({"quantize": "int8"}, {"quantization": "int8"}),
        ({"window": 512}, {"context_window": 512}),
        ({"threads": "4"}, {"threads": 4}),
        ({"maxNewTokens": 16.0}, {"max_new_tokens": 16}),
        ({"temperature": "0.7"}, {"temperature": 0.7}),
        ({"contextWindow": None}, {"context_window": None}),
        ({"template": ""}, {"template": None}),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_keys_in_any_spelling(options: dict, expected: dict) -> None:
    parsed = parse_settings(options)
    assert parsed.warnings == []
    for name, value in expected.items():
        assert getattr(parsed.settings, name) == value, name
    # Nothing else changed.
    others = {f.name for f in dataclasses.fields(Settings)} - set(expected)
    for name in others:
        assert getattr(parsed.settings, name) == getattr(Settings(), name), name


def test_fimlsp_wrapper_is_unwrapped() -> None:
    parsed = parse_settings({"fimlsp": {"maxNewTokens": 20, "device": "cpu"}})
    assert parsed.warnings == []
    assert parsed.settings.max_new_tokens == 20
    assert parsed.settings.device == "cpu"


def test_unknown_key_warns_by_name_and_the_rest_applies() -> None:
    parsed = parse_settings({"maxNewTokens": 12, "colour": "blue", "dtype": "float32"})
    assert parsed.settings.max_new_tokens == 12
    assert parsed.settings.dtype == "float32"
    assert len(parsed.warnings) == 1
    assert "colour" in parsed.warnings[0]


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("maxNewTokens", "lots", "max_new_tokens"),
        ("maxNewTokens", 0, "max_new_tokens"),
        ("maxNewTokens", 10_000, "max_new_tokens"),
        ("maxNewTokens", 2.5, "max_new_tokens"),
        ("maxNewTokens", True, "max_new_tokens"),
        ("maxNewTokens", [64], "max_new_tokens"),
        ("contextWindow", 10, "context_window"),
        ("contextWindow", "big", "context_window"),
        ("temperature", -1, "temperature"),
        ("temperature", 9.0, "temperature"),
        ("temperature", "hot", "temperature"),
        ("temperature", False, "temperature"),
        ("topP", 1.5, "top_p"),
        ("threads", 0, "threads"),
        ("timeBudgetMs", -5, "time_budget_ms"),
        ("device", "tpu", "device"),
        ("dtype", "float8", "dtype"),
        ("quantization", "2bit", "quantization"),
        ("multiline", "sometimes", "multiline"),
        ("logLevel", "loud", "log_level"),
        ("model", 42, "model"),
        ("model", None, "model"),
    ],
    ids=lambda v: repr(v),
)
def test_bad_value_warns_by_key_and_keeps_default(key: str, value: object, field: str) -> None:
    parsed = parse_settings({key: value, "device": "cpu"} if key != "device"
                            else {key: value, "dtype": "float32"})
    assert getattr(parsed.settings, field) == getattr(Settings(), field)
    assert len(parsed.warnings) == 1, parsed.warnings
    assert key in parsed.warnings[0]
    # The other, valid key still applies.
    if key != "device":
        assert parsed.settings.device == "cpu"
    else:
        assert parsed.settings.dtype == "float32"


def test_bad_choice_warning_lists_the_choices() -> None:
    (warning,) = parse_settings({"device": "tpu"}).warnings
    assert "tpu" in warning
    for choice in ("auto", "cpu", "cuda", "mps"):
        assert choice in warning


def test_none_options_give_the_base() -> None:
    assert parse_settings(None).settings == Settings()
    assert parse_settings(None).warnings == []
    base = Settings(model="santacoder", max_new_tokens=8)
    assert parse_settings(None, base).settings == base


@pytest.mark.parametrize("options", [[1, 2], "maxNewTokens=5", 7, 1.5, True],
                         ids=lambda v: type(v).__name__)
def test_non_dict_options_warn_and_keep_base(options: object) -> None:
    base = Settings(max_new_tokens=8)
    parsed = parse_settings(options, base)
    assert parsed.settings == base
    assert len(parsed.warnings) == 1
    assert type(options).__name__ in parsed.warnings[0]


def test_merging_over_a_base_keeps_base_values() -> None:
    base = parse_settings({"model": "santacoder", "maxNewTokens": 8, "device": "cpu"}).settings
    parsed = parse_settings({"temperature": 0.3}, base)
    assert parsed.warnings == []
    s = parsed.settings
    assert (s.model, s.max_new_tokens, s.device, s.temperature) == ("santacoder", 8, "cpu", 0.3)


def test_bad_value_over_a_base_keeps_the_base_value() -> None:
    base = Settings(max_new_tokens=8)
    parsed = parse_settings({"maxNewTokens": -1}, base)
    assert parsed.settings.max_new_tokens == 8
    (warning,) = parsed.warnings
    assert "maxNewTokens" in warning and "8" in warning


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().model = "x"  # type: ignore[misc]


def test_allow_download_is_off_by_default_and_takes_only_booleans() -> None:
    assert Settings().allow_download is False
    assert parse_settings({"allowDownload": True}).settings.allow_download is True
    assert parse_settings({"allow_download": False}).settings.allow_download is False
    for value in ("true", 1, None):  # no coercion: a typo must not start a download
        parsed = parse_settings({"allowDownload": value})
        assert parsed.settings.allow_download is False
        assert any("allowDownload" in w for w in parsed.warnings), parsed.warnings
