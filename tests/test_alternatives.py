"""Alternatives: further suggestions at the cursor, computed after the first answer was sent.

The trained fixture in fp32 (its answers are real text, and fp32 logits do not depend on how the
tokens were split into forwards, so an answer computed after other forwards is the same). The
engine runs for real on both paths; where a test needs to know *when* the background work
runs a forward, it wraps the real forward (which still runs) to count and signal.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from lsprotocol import types as t
from test_lsp import Doc, position_of, running, uri_for

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.engine.local import LocalEngine
from fimlsp.scheduler import CancelToken, Scheduler

pytestmark = pytest.mark.slow

CODE = ('import os\n\n\nclass Store:\n    """Keeps items by name."""\n\n'
        "    def __init__(self, root):\n        self.root = root\n        self.items = {}\n\n"
        "    def add(self, name, value):\n        self.items[name] = value\n\n"
        "    def size(self):\n        return len(self.items)\n\n"
        "    def path(self, name):\n        return os.path.join(self.root, name)\n")
# Cursors after these: a mid-word one (token healing on), a word start, a line start.
ANCHORS = ("return len(self.", "        return os.pa", "        self.items[name] = ")


def _completer(model: Path, **options: Any) -> Completer:
    settings = Settings(model=str(model), device="cpu", quantization="none", threads=1,
                        max_new_tokens=16, context_window=384, **options)
    completer = Completer(settings)
    completer.load()
    return completer


def _cursor(anchor: str, test: str, preamble: str = "") -> Cursor:
    """The cursor after `anchor`, in a file of its own per `test` (the completers' recent
    answers would otherwise answer a later test without the model)."""
    code = f"# {test}\n{preamble}{CODE}"
    cut = code.index(anchor) + len(anchor)
    return Cursor(code[:cut], code[cut:], 0, 0)


@pytest.fixture(scope="module")
def completers(trained_model: Path) -> tuple[Completer, Completer]:
    """(alternatives on, off), in process."""
    return _completer(trained_model, alternatives=3), _completer(trained_model, alternatives=0)


def test_alternatives_are_distinct_cleaned_and_leave_the_session_as_it_was(
        completers: tuple[Completer, Completer]) -> None:
    on, off = completers
    assert isinstance(on.engine, LocalEngine)
    found = 0
    for number, anchor in enumerate(ANCHORS):
        key = f"distinct-{number}.py"
        cursor = _cursor(anchor, "distinct")
        first = on.complete(key, cursor)
        assert first.text == off.complete(key, cursor).text  # computed before any branch
        held = on.engine.keep(key, 0)
        on.alternatives(key, cursor, first.text, CancelToken())
        # Put back for the next keystroke: the same ids, the very same keys and values.
        back = on.engine.keep(key, 0)
        assert back.ids == held.ids and back.keys is not None and held.keys is not None
        assert torch.equal(back.keys, held.keys) and torch.equal(back.values, held.values)
        texts = [a.text for a in on.alternatives_for(key, cursor, first.text)]
        assert len(texts) == len(set(texts)) <= 3 and first.text not in texts, texts
        assert all(text.strip() for text in texts), texts
        found += len(texts)
    assert found >= 3, "the fixture gave (almost) no alternatives"
    report = on.stats_report()
    assert report["alternatives_status"] == "on (3)" and report["alternatives"] == found
    assert off.stats_report()["alternatives_status"] == "off (alternatives setting)"
    remote = Completer(Settings(model=str(on.settings.model), engine="openai"))
    assert remote.stats_report()["alternatives_status"].startswith("off (the openai engine")


def test_the_next_keystroke_reuses_as_much_as_without_alternatives(
        completers: tuple[Completer, Completer]) -> None:
    """The user types the first suggestion's start after the alternatives were computed: the
    prompt shares the answer's tokens, and the session must still hold them (had the last
    branch been left there, only the prompt would be reused)."""
    on, off = completers
    checked = 0
    for number, anchor in enumerate(ANCHORS):
        key = f"reuse-{number}.py"
        cursor = _cursor(anchor, "reuse")
        first = on.complete(key, cursor)
        off.complete(key, cursor)
        on.alternatives(key, cursor, first.text, CancelToken())
        if not on.alternatives_for(key, cursor, first.text) or len(first.text) < 4:
            continue  # nothing branched here: nothing to check
        typed = first.text[:len(first.text) - 1]
        after = Cursor(cursor.prefix + typed, cursor.suffix, 0, 0)
        a, b = on.complete(key, after), off.complete(key, after)
        assert (a.source, a.prompt_tokens, a.reused_tokens, a.text) == \
            (b.source, b.prompt_tokens, b.reused_tokens, b.text)
        assert a.reused_tokens > len(on.prompt_for(cursor).ids)  # the answer's tokens too
        checked += 1
    assert checked >= 1


def test_a_real_request_stops_the_alternatives_between_tokens(
        completers: tuple[Completer, Completer]) -> None:
    """The scheduler's background job computing alternatives is cancelled by a real request
    as soon as it is submitted, and stops before its next forward: the request's answer is
    the one a model without alternatives gives, and nothing half-computed is kept."""
    on, off = completers
    engine = on.engine
    assert isinstance(engine, LocalEngine)
    scheduler = Scheduler()
    key, cursor = "interrupt.py", _cursor(ANCHORS[0], "interrupt")
    first = on.complete(key, cursor)
    branching = threading.Event()  # set when the job runs its second forward
    forwards = {"before": 0, "after": 0}
    submitted = threading.Event()
    real_forward = engine._forward

    def counting(session: Any, ids: list[int], all_logits: bool = False) -> Any:
        if threading.current_thread() is job_thread.get("thread"):  # the background job's
            forwards["after" if submitted.is_set() else "before"] += 1
            if forwards["before"] == 2:
                branching.set()
        return real_forward(session, ids, all_logits)

    job_thread: dict[str, threading.Thread] = {}

    def job(token: CancelToken) -> None:
        job_thread["thread"] = threading.current_thread()
        try:
            on.alternatives(key, cursor, first.text, token)
        finally:  # the real request runs on the same thread next: its forwards are its own
            del job_thread["thread"]

    engine._forward = counting  # type: ignore[method-assign]
    try:
        interrupted = on.stats.snapshot().alternatives_interrupted
        background, _ = scheduler.submit_background(job)
        assert branching.wait(120), "the alternatives never started"
        other = Cursor(cursor.prefix + "x", cursor.suffix, 0, 0)
        real, _ = scheduler.submit(key, lambda token: on.complete(key, other, token))
        submitted.set()
        answer = real.result(120)
        background.result(120)
    finally:
        engine._forward = real_forward  # type: ignore[method-assign]
        scheduler.shutdown()
    assert forwards["after"] <= 1, forwards  # the one under way when the request came
    assert on.stats.snapshot().alternatives_interrupted == interrupted + 1
    assert on.alternatives_for(key, cursor, first.text) == []
    assert answer.text == off.complete("interrupt-off.py", other).text


# -- through the server, over stdio ---------------------------------------------------------------


def _texts(result: Any) -> list[str]:
    assert isinstance(result, t.InlineCompletionList), result
    return [item.insert_text for item in result.items]


async def _invoked(client: Any, uri: str, at: t.Position) -> Any:
    """What a client sends when the user cycles: the same position, asked explicitly."""
    params = client.inline_params(uri, at)
    params.context.trigger_kind = t.InlineCompletionTriggerKind.Invoked
    return await client.ask(client.text_document_inline_completion_async(params))


@pytest.mark.parametrize("typing_through", [True, False])
async def test_cycling_gets_the_first_answer_then_its_alternatives(
        trained_model: Path, tmp_path: Path, typing_through: bool) -> None:
    """The first answer is byte-identical with alternatives off; asking again at the same
    place (cycling) gets it first, then the alternatives, distinct, each with its own accept
    command; after typing on, the alternatives that start with what was typed follow it."""
    options = {"contextWindow": 384, "maxNewTokens": 16, "quantization": "none",
               "threads": 1, "timeBudgetMs": 600000, "typingThrough": typing_through}
    cut = CODE.index(ANCHORS[0]) + len(ANCHORS[0])
    firsts: dict[int, str] = {}
    for alternatives in (0, 3):
        async with running(trained_model, tmp_path, {**options, "alternatives": alternatives}
                           ) as client:
            assert (await client.wait_loaded())["state"] == "ready", client.tail()
            doc = Doc(client, uri_for(tmp_path, f"cycle-{alternatives}.py"), CODE)
            at = position_of(doc.text, cut)
            first = _texts(await client.inline(doc.uri, at))
            assert len(first) == 1, first
            firsts[alternatives] = first[0]
            if not alternatives:
                continue
            cycled = await _invoked(client, doc.uri, at)
            texts = _texts(cycled)
            assert texts[0] == first[0] and len(texts) >= 2, texts
            assert len(set(texts)) == len(texts) <= 4, texts
            commands = [item.command.arguments[0] for item in cycled.items]
            assert len(set(commands)) == len(commands), commands
            stats = await client.stats()
            assert stats["alternatives_shown"] == len(texts) - 1, stats
            # An accept of an alternative counts its text, not the first answer's.
            await client.command("fimlsp.accept", commands[1])
            assert (await client.stats())["accepted_chars"] == len(texts[1])
            # The user types the first character of the second alternative.
            typed = texts[1][0]
            doc.change((cut, cut, typed))
            on = [text[1:] for text in texts if text.startswith(typed) and text[1:].strip()]
            again = _texts(await _invoked(client, doc.uri, position_of(doc.text, cut + 1)))
            assert set(on) <= set(again), (on, again)
    assert firsts[0] == firsts[3]


async def test_a_warm_start_where_the_suggestion_shows_leaves_its_alternatives(
        trained_model: Path, tmp_path: Path) -> None:
    """VS Code asks for a warm start wherever the cursor rests, so right after each suggestion
    shows, at its cursor: that must not stop the prefetch and alternatives being computed there
    (the answer has read that prompt already), or cycling finds nothing. A warm start elsewhere
    still runs."""
    options = {"contextWindow": 384, "maxNewTokens": 16, "quantization": "none",
               "threads": 1, "timeBudgetMs": 600000, "alternatives": 3}
    cut = CODE.index(ANCHORS[0]) + len(ANCHORS[0])
    async with running(trained_model, tmp_path, options) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        doc = Doc(client, uri_for(tmp_path, "warm-here.py"), CODE)
        at = position_of(doc.text, cut)
        first = _texts(await client.inline(doc.uri, at))
        assert len(first) == 1, first
        # At once, while the model works ahead there (as VS Code sends it: uri, position).
        assert await client.command("fimlsp.warm", doc.uri,
                                    {"line": at.line, "character": at.character}) is True
        texts = _texts(await _invoked(client, doc.uri, at))
        assert texts[0] == first[0] and len(texts) >= 2, texts
        stats = await client.stats()
        assert stats["alternatives_interrupted"] == 0 and stats["prefetch_interrupted"] == 0
        assert stats["warmed"] + stats["warm_interrupted"] == 0, stats  # not run there
        elsewhere = position_of(doc.text, CODE.index("def size"))
        assert await client.command("fimlsp.warm", doc.uri,
                                    {"line": elsewhere.line, "character": 0}) is True
        await client.poll_stats(lambda s: s["warmed"] >= 1, "the warm start elsewhere")


def test_alternatives_to_a_recent_answer_branch_from_the_prompt_again(
        completers: tuple[Completer, Completer]) -> None:
    """Back at a cursor after a keystroke elsewhere: the answer comes from the recent answers,
    the session holds the other prompt, so the branches start from a forward of the prompt's
    end; the session is still put back exactly."""
    on, _ = completers
    assert isinstance(on.engine, LocalEngine)
    # A prompt over 256 tokens: the session's cache grows (in inference mode) past its first
    # allocation, as in any real file.
    preamble = "".join(f"LIMIT_{i} = {i * 7}  # the {i}th limit\n" for i in range(40))
    key, cursor = "recent.py", _cursor("self.items[name] = ", "recent", preamble)
    assert len(on.prompt_for(cursor).ids) > 256
    first = on.complete(key, cursor)
    on.complete(key, Cursor(cursor.prefix + "x", cursor.suffix, 0, 0))
    again = on.complete(key, cursor)
    assert again.source == "cache" and again.text == first.text and first.text
    held = on.engine.keep(key, 0)
    on.alternatives(key, cursor, again.text, CancelToken())
    back = on.engine.keep(key, 0)
    assert back.ids == held.ids and back.keys is not None and held.keys is not None
    assert torch.equal(back.keys, held.keys) and torch.equal(back.values, held.values)
    assert on.alternatives_for(key, cursor, again.text), "no alternatives"
