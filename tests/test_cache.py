"""Answers without the model: typing-through (per document, the suggestion on screen) and the
LRU of recent completions; and the completer's glue, which counts them. No model is loaded: none
of this may need one."""

from __future__ import annotations

import pytest

from fimlsp.cache import RecentCompletions, TypingThrough
from fimlsp.completer import Completer
from fimlsp.completion import Completion
from fimlsp.config import Settings
from fimlsp.context import Cursor

SETTINGS = Settings()
PREFIX, SUFFIX = "def area(r):\n    return ", "\n\nprint(area(2))\n"
SHOWN = "math.pi * r ** 2"


def at(prefix: str, suffix: str = SUFFIX) -> Cursor:
    return Cursor(prefix=prefix, suffix=suffix, line=0, character=0)


def showing(text: str = SHOWN, key: str = "a.py", request_id: int = 7) -> TypingThrough:
    typing = TypingThrough()
    typing.remember(key, at(PREFIX), text, request_id, SETTINGS)
    return typing


# (id, prefix of the new request, its suffix, document, settings, expected answer)
LOOKUPS = [
    ("asked-again-in-place", PREFIX, SUFFIX, "a.py", SETTINGS, SHOWN),
    ("typed-one-character", PREFIX + "m", SUFFIX, "a.py", SETTINGS, SHOWN[1:]),
    ("typed-a-word", PREFIX + "math.", SUFFIX, "a.py", SETTINGS, "pi * r ** 2"),
    ("typed-up-to-a-space", PREFIX + "math.pi ", SUFFIX, "a.py", SETTINGS, "* r ** 2"),
    ("typed-all-of-it", PREFIX + SHOWN, SUFFIX, "a.py", SETTINGS, None),
    ("typed-all-but-spaces", PREFIX + SHOWN[:-1], SUFFIX, "a.py", SETTINGS, "2"),
    ("typed-something-else", PREFIX + "x", SUFFIX, "a.py", SETTINGS, None),
    ("typed-past-it", PREFIX + SHOWN + "+", SUFFIX, "a.py", SETTINGS, None),
    ("backspace", PREFIX[:-1], SUFFIX, "a.py", SETTINGS, None),
    ("edited-above", "#\n" + PREFIX + "m", SUFFIX, "a.py", SETTINGS, None),
    ("suffix-changed", PREFIX + "m", SUFFIX + "x = 1\n", "a.py", SETTINGS, None),
    ("auto-closed-bracket", PREFIX + "m", ")" + SUFFIX, "a.py", SETTINGS, None),
    ("other-document", PREFIX + "m", SUFFIX, "b.py", SETTINGS, None),
    ("other-settings", PREFIX + "m", SUFFIX, "a.py", SETTINGS.replace(max_new_tokens=1), None),
]


@pytest.mark.parametrize(("prefix", "suffix", "key", "settings", "expected"),
                         [r[1:] for r in LOOKUPS], ids=[r[0] for r in LOOKUPS])
def test_lookup_answers_only_what_the_user_typed_into(prefix: str, suffix: str, key: str,
                                                      settings: Settings,
                                                      expected: str | None) -> None:
    assert showing().lookup(key, at(prefix, suffix), settings) == expected


def test_typing_through_a_block_with_the_editors_line_breaks() -> None:
    shown = "\r\n    y = x + 1\r\n    return y"
    typing = TypingThrough()
    typing.remember("a.py", at("def f(x):", "\r\n"), shown, 1, SETTINGS)
    # Enter (the editor indents the new line as the suggestion does), then a character.
    assert typing.lookup("a.py", at("def f(x):\r\n    ", "\r\n"), SETTINGS) == \
        "y = x + 1\r\n    return y"
    assert typing.lookup("a.py", at("def f(x):\r\n    y", "\r\n"), SETTINGS) == \
        " = x + 1\r\n    return y"
    # An editor that indents with a tab is not typing this suggestion.
    assert typing.lookup("a.py", at("def f(x):\r\n\t", "\r\n"), SETTINGS) is None


def test_remembering_nothing_forgets_what_was_shown() -> None:
    typing = showing()
    typing.remember("a.py", at(PREFIX + "m"), "", 8, SETTINGS)
    assert typing.lookup("a.py", at(PREFIX + "m"), SETTINGS) is None


def test_a_new_suggestion_replaces_the_old_one() -> None:
    typing = showing()
    typing.remember("a.py", at(PREFIX), "radius", 8, SETTINGS)
    assert typing.lookup("a.py", at(PREFIX + "r"), SETTINGS) == "adius"
    assert typing.lookup("a.py", at(PREFIX + "m"), SETTINGS) is None


def test_partial_accept_advances_the_suggestion() -> None:
    typing = showing()
    typing.advance(7, len("math."))
    # The editor inserted the accepted word: the rest is still on screen, then typing goes on.
    assert typing.lookup("a.py", at(PREFIX + "math."), SETTINGS) == "pi * r ** 2"
    assert typing.lookup("a.py", at(PREFIX + "math.p"), SETTINGS) == "i * r ** 2"
    typing.advance(7, len("pi "))
    assert typing.lookup("a.py", at(PREFIX + "math.pi "), SETTINGS) == "* r ** 2"
    # A position before what was accepted no longer holds the suggestion.
    assert typing.lookup("a.py", at(PREFIX), SETTINGS) is None


def test_accepting_all_of_it_leaves_nothing_on_screen() -> None:
    typing = showing()
    typing.advance(7, len(SHOWN))
    assert typing.lookup("a.py", at(PREFIX + SHOWN), SETTINGS) is None
    typing.advance(7, 1)  # accepted again (the client sends both commands): nothing to do
    assert typing.lookup("a.py", at(PREFIX + SHOWN), SETTINGS) is None


def test_advancing_another_suggestion_changes_nothing() -> None:
    typing = showing()
    typing.advance(99, 5)
    assert typing.lookup("a.py", at(PREFIX), SETTINGS) == SHOWN


def test_documents_beyond_the_limit_are_forgotten_oldest_first() -> None:
    typing = TypingThrough(documents=2)
    for key in ("a.py", "b.py", "c.py"):
        typing.remember(key, at(PREFIX), SHOWN, 1, SETTINGS)
    assert typing.lookup("a.py", at(PREFIX), SETTINGS) is None
    assert typing.lookup("b.py", at(PREFIX), SETTINGS) == SHOWN
    assert typing.lookup("c.py", at(PREFIX), SETTINGS) == SHOWN
    typing.forget("c.py")
    assert typing.lookup("c.py", at(PREFIX), SETTINGS) is None


def test_recent_completions_are_an_lru() -> None:
    recent = RecentCompletions(size=2)
    recent.put("p1", "one")
    recent.put("p2", "two")
    assert recent.get("p1") == "one"  # p1 is now the most recent
    recent.put("p3", "three")
    assert "p2" not in recent and recent.get("p2") is None
    assert recent.get("p1") == "one" and recent.get("p3") == "three"
    assert len(recent) == 2


def test_completer_answers_typing_through_without_a_model_and_counts_it() -> None:
    completer = Completer(SETTINGS)
    assert completer.engine is None and completer.tokenizer is None  # nothing loaded
    cursor = at(PREFIX)
    completer.shown("a.py", cursor, Completion(SHOWN, 3))
    completer.stats.requests = 1  # the model answer above

    assert completer.typed_through("a.py", at(PREFIX + "x")) is None
    first = completer.typed_through("a.py", at(PREFIX + "m"))
    second = completer.typed_through("a.py", at(PREFIX + "ma"))
    assert first is not None and second is not None
    assert (first.text, first.source) == (SHOWN[1:], "cache")
    assert (second.text, second.source) == (SHOWN[2:], "cache")
    assert len({3, first.request_id, second.request_id}) == 3
    stats = completer.stats_report()
    assert stats["requests"] == 3 and stats["answered_from_cache"] == 2
    assert stats["cache_share"] == pytest.approx(2 / 3, abs=1e-3)
    assert stats["source"] == "cache" and stats["generated_tokens"] == 0
    assert "source=cache" in second.log_line("a.py", completer.stats.cache_share)
    assert second.log_line("a.py", completer.stats.cache_share).endswith("cache_share=0.67")

    # The answer given is what is on screen now: accepting part of it advances from there.
    completer.typing.advance(second.request_id, 3)
    third = completer.typed_through("a.py", at(PREFIX + "ma" + SHOWN[2:5]))
    assert third is not None and third.text == SHOWN[5:]

    # Nothing shown at a new place: nothing to type through.
    completer.shown("a.py", at(PREFIX + "q"), None)
    assert completer.typed_through("a.py", at(PREFIX + "ma" + SHOWN[2:6])) is None


@pytest.mark.parametrize(("change", "still_shown"), [
    ({"max_new_tokens": 1}, False), ({"temperature": 0.5}, False), ({"multiline": "never"}, False),
    ({"time_budget_ms": 100}, True), ({"log_level": "debug"}, True)])
def test_settings_that_change_answers_end_typing_through(change: dict[str, object],
                                                        still_shown: bool) -> None:
    completer = Completer(SETTINGS)
    completer.shown("a.py", at(PREFIX), Completion(SHOWN, 3))
    completer.settings = SETTINGS.replace(**change)
    answer = completer.typed_through("a.py", at(PREFIX + "m"))
    assert (answer is not None) is still_shown
