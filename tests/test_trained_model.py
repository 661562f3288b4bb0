"""Tests that need a trained model's text: the policy on what a real model writes, typing-through
on real suggestions, and the switches `fimlsp bench quality` measures (order, policy,
typingThrough). They use the small trained fixture in shared/models and assert structure only —
never the words it happens to write today, since a stronger build will replace it.

Cursor positions come from a module of the standard library that the fixture never saw in
training (shlex.py, held out), so the text around them is real code.
"""

from __future__ import annotations

import random
import re
import sysconfig
from pathlib import Path

import pytest
from test_lsp import Doc, position_of, running, uri_for

from fimlsp.completer import Completer
from fimlsp.config import Settings, parse_settings
from fimlsp.context import Cursor
from fimlsp.surroundings import mode_for

pytestmark = pytest.mark.slow

HELD_OUT = Path(sysconfig.get_paths()["stdlib"]) / "shlex.py"
OPTIONS = {"contextWindow": 384, "maxNewTokens": 24}  # the fixture's training length
_SPECIAL = re.compile(r"<fim[_-]|<\|endoftext\|>|<file_sep>|<filename>|<reponame>")


def cursors(count: int, seed: int = 0) -> list[tuple[str, Cursor]]:
    """(kind, cursor) in real code: inside a line, at a line's end, on an emptied line."""
    text = HELD_OUT.read_text(encoding="utf-8")
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    rng = random.Random(seed)
    code = [r for r, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("#")
            and len(ln.split()) >= 3 and 40 < r < len(lines) - 5]
    out = []
    for k, row in enumerate(rng.sample(code, count)):
        line = lines[row]
        if k % 3 == 0:  # inside a line: a few tokens removed, the rest of the line after
            words = list(re.finditer(r"\w+|\S", line))
            i = len(words) // 2
            begin, end = starts[row] + words[i].start(), starts[row] + words[i].end()
            out.append(("mid-line", Cursor(text[:begin], text[end:], row, 0)))
        elif k % 3 == 1:  # at the end of a line whose tail was removed
            words = list(re.finditer(r"\w+|\S", line))
            begin = starts[row] + words[len(words) // 2].start()
            end = starts[row] + len(line)
            out.append(("end", Cursor(text[:begin], text[end:], row, 0)))
        else:  # the line emptied down to its indentation
            begin = starts[row] + len(line) - len(line.lstrip())
            end = starts[row] + len(line)
            out.append(("empty", Cursor(text[:begin], text[end:], row, 0)))
    return out


@pytest.fixture(scope="module")
def completer(trained_model: Path) -> Completer:
    parsed = parse_settings({"model": str(trained_model), "threads": 1, **OPTIONS})
    completer = Completer(parsed.settings)
    completer.load()
    return completer


def _nows(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_policy_on_a_trained_models_text(completer: Completer) -> None:
    """No special tokens, one line where the cursor is inside a line, nothing that repeats the
    rest of the line or the line below; and the model does write something most of the time."""
    shown = 0
    for kind, cursor in cursors(18):
        text = completer.complete(HELD_OUT.as_uri(), cursor).text
        if not text:
            continue
        shown += 1
        assert not _SPECIAL.search(text), (kind, text)
        assert text == text.rstrip() or cursor.line_suffix.strip(), repr(text)
        rest = cursor.line_suffix.strip()
        if kind == "mid-line":
            assert mode_for(cursor, "auto", str(HELD_OUT)) == "single"
            assert "\n" not in text, repr(text)
            if len(rest) >= 3:
                assert not text.rstrip().endswith(rest), (text, rest)
        lines = text.split("\n")
        below = next((ln for ln in cursor.suffix.split("\n")[1:] if ln.strip()), None)
        if len(lines) > 1 and below is not None:
            assert _nows(lines[-1]) != _nows(below), (text, below)
    assert shown >= 6  # a trained model is not silent


def test_raw_policy_shows_the_models_text_uncut(trained_model: Path) -> None:
    """`policy: raw` keeps what the policy would cut: at a cursor inside a line it runs on to
    maxNewTokens (or the model's end token) instead of stopping at the line."""
    settings = Settings(model=str(trained_model), threads=1, context_window=384,
                        max_new_tokens=16, policy="raw")
    raw = Completer(settings)
    raw.load()
    structured = Completer(settings.replace(policy="structure"))
    structured.load()
    longer = 0
    for kind, cursor in cursors(9):
        if kind != "mid-line":
            continue
        got = raw.complete(HELD_OUT.as_uri(), cursor)
        cut = structured.complete(HELD_OUT.as_uri(), cursor)
        assert not _SPECIAL.search(got.text)
        assert got.generated_tokens >= cut.generated_tokens
        longer += got.generated_tokens > cut.generated_tokens or len(got.text) > len(cut.text)
    assert longer >= 1


def test_order_setting_switches_the_prompt(trained_model: Path) -> None:
    cursor = cursors(1)[0][1]
    for order, head in (("psm", "<fim_prefix>"), ("spm", "<fim_prefix><fim_suffix>")):
        completer = Completer(Settings(model=str(trained_model), context_window=384,
                                       order=order))
        prompt = completer.prompt_for(cursor)
        assert prompt.format == f"starcoder/{order}"
        assert prompt.text.startswith(head)
    auto = Completer(Settings(model=str(trained_model), context_window=384))
    assert auto.prompt_for(cursor).format == "starcoder/spm"  # the template's own choice


def test_switch_options_parse_with_warnings_for_bad_values() -> None:
    parsed = parse_settings({"order": "PSM", "policy": "raw", "typingThrough": False})
    assert (parsed.settings.order, parsed.settings.policy) == ("psm", "raw")
    assert parsed.settings.typing_through is False and not parsed.warnings
    assert parse_settings({"typing_through": True}).settings.typing_through is True
    bad = parse_settings({"order": "mps", "typingThrough": "maybe", "policy": 3})
    assert bad.settings == Settings() and len(bad.warnings) == 3


async def test_typing_through_a_trained_models_suggestions(trained_model: Path,
                                                          tmp_path: Path) -> None:
    """Typing the first characters of a real suggestion is answered with its rest and no model
    call; with typingThrough off the same keystroke goes to the model."""
    text = HELD_OUT.read_text(encoding="utf-8")
    async with running(trained_model, tmp_path, {**OPTIONS, "threads": 1}) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, uri_for(tmp_path, "shlex_copy.py"), text)
        rounds = 0
        for kind, cursor in cursors(12, seed=5):
            if kind == "mid-line" or rounds >= 3:
                continue
            start, end = len(cursor.prefix), len(text) - len(cursor.suffix)
            doc.change((start, end, ""))
            client.configure(**OPTIONS, threads=1, typingThrough=True)
            answer = await client.inline(doc.uri, position_of(doc.text, start))
            items = answer.items if answer else []
            if items and len(items[0].insert_text.rstrip()) >= 3:
                suggestion = items[0].insert_text
                rounds += 1
                for typed in range(1, 3):
                    doc.change((start + typed - 1, start + typed - 1, suggestion[typed - 1]))
                    again = await client.inline(doc.uri, position_of(doc.text, start + typed))
                    stats = await client.stats()
                    assert again.items[0].insert_text == suggestion[typed:]
                    assert stats["source"] == "cache" and stats["generated_tokens"] == 0
                client.configure(**OPTIONS, threads=1, typingThrough=False)
                doc.change((start + 2, start + 2, suggestion[2]))
                await client.inline(doc.uri, position_of(doc.text, start + 3))
                assert (await client.stats())["source"] == "model"
                doc.change((start, start + 3, ""))
            doc.change((start, start, text[start:end]))
            assert doc.text == text
        assert rounds >= 1, "the trained model showed nothing to type through"
