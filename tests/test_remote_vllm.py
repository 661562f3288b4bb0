"""The remote engine against a real vLLM (its CPU build, `scripts/install-vllm.sh`).

vLLM serves the small trained model from shared/models in fp32; `fimlsp serve` runs as a
subprocess speaking LSP over stdio with `engine: openai` pointed at it, exactly as an editor
would start it. What vLLM did is read from its Prometheus metrics: tokens generated (a closed
stream must stop them), requests running, prefix-cache hits.

Without vLLM installed the module skips with the command that installs it; with
FIMLSP_REQUIRE_VLLM=1 (CI) it fails instead, so CI cannot go green without running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from test_lsp import REQUEST_CANCELLED, Client, Doc, nothing, position_of, running, uri_for

from fimlsp_bench._vllm import INSTALL, VllmServer, describe, free_port, hit_rate, vllm_python

pytestmark = pytest.mark.slow

HELD_OUT = ("argparse.py", "textwrap.py", "shlex.py", "csv.py")  # never trained on
CURSORS_PER_DOCUMENT = 3
# No snippets of other open documents: each prompt depends on its own document only, so the
# answers do not depend on which client opened which documents.
# fp32 in process (vLLM serves fp32): the CPU's default int8 would be another model; and no
# token healing, which a serving engine does not do here (the prompts would differ).
OPTIONS = {"maxNewTokens": 24, "threads": 1, "neighbourShare": 0, "quantization": "none",
           "tokenHealing": False}
LONG = 800  # tokens a request is allowed, and generates when nobody stops it


@pytest.fixture(scope="module")
def vllm(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    python = vllm_python()
    if python is None:
        message = f"vLLM is not installed: {INSTALL} (or set FIMLSP_VLLM_PYTHON)"
        if os.environ.get("FIMLSP_REQUIRE_VLLM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with VllmServer(trained_model, python, log=log) as server:
        yield server


@functools.cache
def held_out_documents() -> dict[str, str]:
    import argparse

    lib = Path(argparse.__file__).parent
    return {name: (lib / name).read_text() for name in HELD_OUT}


def cursors(text: str, count: int, seed: int) -> list[int]:
    """Indices inside indented code lines, after a '.', '(' or ' ' — where editors ask."""
    rng = random.Random(seed)
    lines, offset, spots = text.splitlines(keepends=True), 0, []
    for line in lines:
        if line.startswith("        ") and len(line.strip()) > 24:
            for i, ch in enumerate(line[:-1]):
                if ch in ".( " and i > 12:
                    spots.append(offset + i + 1)
        offset += len(line)
    return sorted(rng.sample(spots, count))


def at(doc: Doc, index: int) -> t.Position:
    return position_of(doc.text, index)


def text_of(result: Any) -> str | None:
    return None if nothing(result) else result.items[0].insert_text


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote project")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def expected(trained_model: Path, workspace_dir: Path) -> dict[tuple[str, int], str | None]:
    """The in-process engine's answers: the reference the remote ones must equal."""
    answers: dict[tuple[str, int], str | None] = {}
    async with running(trained_model, workspace_dir, OPTIONS) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        for seed, (name, text) in enumerate(held_out_documents().items()):
            doc = Doc(client, uri_for(workspace_dir, name), text)
            for index in cursors(text, CURSORS_PER_DOCUMENT, seed):
                answers[name, index] = text_of(await client.inline(doc.uri, at(doc, index)))
    return answers


@pytest_asyncio.fixture(loop_scope="session")
async def remote(trained_model: Path, workspace_dir: Path, vllm: VllmServer
                 ) -> AsyncIterator[Client]:
    options = {**OPTIONS, "engine": "openai", "endpoint": vllm.endpoint}
    async with running(trained_model, workspace_dir, options) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "ready", client.tail()
        yield client


async def test_same_greedy_completions_as_the_in_process_engine(
        remote: Client, expected: dict[tuple[str, int], str | None], workspace_dir: Path,
        vllm: VllmServer) -> None:
    stats = await remote.stats()
    assert stats["engine"] == "openai" and stats["endpoint_status"] == "ok", stats
    assert stats["endpoint"] == vllm.endpoint
    before = vllm.metrics()
    got: dict[tuple[str, int], str | None] = {}
    for name, text in held_out_documents().items():
        doc = Doc(remote, uri_for(workspace_dir, name), text)
        for (doc_name, index) in expected:
            if doc_name == name:
                got[name, index] = text_of(await remote.inline(doc.uri, at(doc, index)))
    assert got == expected
    assert sum(1 for answer in expected.values() if answer) >= len(expected) // 2, expected
    after = vllm.metrics()
    # Every suggestion came from vLLM: the requests and their tokens are on its counters.
    assert after["vllm:generation_tokens_total"] > before["vllm:generation_tokens_total"]


async def test_typing_hits_vllms_prefix_cache(remote: Client, workspace_dir: Path,
                                             vllm: VllmServer) -> None:
    text = held_out_documents()["textwrap.py"]
    spot = cursors(text, 1, 7)[0]
    line_end = text.index("\n", spot)
    typed = text[spot:line_end]
    doc = Doc(remote, uri_for(workspace_dir, "typing.py"), text[:spot] + text[line_end:])
    remote.configure(typingThrough=False)  # every keystroke asks the engine
    await remote.inline(doc.uri, at(doc, spot))  # the document's first prompt: a cold prefill
    before = vllm.metrics()
    for i, ch in enumerate(typed[:12]):
        doc.change((spot + i, spot + i, ch))
        await remote.inline(doc.uri, at(doc, spot + i + 1))
    rate = hit_rate(before, vllm.metrics())
    # SPM prompts change only their last tokens per keystroke: vLLM finds the rest cached.
    assert rate is not None and rate > 0.8, rate


async def test_cancel_and_supersede_abort_the_engines_generation(
        trained_model: Path, workspace_dir: Path, vllm: VllmServer) -> None:
    options = {**OPTIONS, "engine": "openai", "endpoint": vllm.endpoint, "policy": "raw",
               "multiline": "always", "maxNewTokens": LONG, "timeBudgetMs": 600000,
               "typingThrough": False}
    async with running(trained_model, workspace_dir, options) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        long_ones = long_generations(client, vllm, workspace_dir)
        for how in ("cancel", "supersede"):
            doc, index = await anext(long_ones)
            before = vllm.metrics()
            pending = client.protocol.send_request_async(
                t.TEXT_DOCUMENT_INLINE_COMPLETION, client.inline_params(doc.uri, at(doc, index)),
                msg_id=f"{how}-me")
            started = before["vllm:generation_tokens_total"]
            await wait_metric(client, vllm, lambda m, s=started: m["vllm:num_requests_running"]
                              >= 1 and m["vllm:generation_tokens_total"] > s, "vLLM generating")
            if how == "cancel":
                client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id=f"{how}-me"))
                with pytest.raises(JsonRpcException) as raised:
                    await client.ask(pending)
                assert raised.value.code == REQUEST_CANCELLED
            else:  # a keystroke and its request: the first is superseded
                client.configure(maxNewTokens=4)
                doc.change((index, index, " "))
                newer = await client.inline(doc.uri, at(doc, index + 1))
                assert nothing(await client.ask(pending))
                assert newer is None or isinstance(newer, t.InlineCompletionList)
            after = await wait_metric(client, vllm, lambda m: m["vllm:num_requests_running"] == 0,
                                      "vLLM idle again")
            generated = (after["vllm:generation_tokens_total"]
                         - before["vllm:generation_tokens_total"])
            # Uncancelled, this request generates LONG tokens (long_generations checked that).
            assert generated < LONG // 2, (how, generated)
            client.configure(maxNewTokens=LONG)


async def long_generations(client: Client, vllm: VllmServer, root: Path
                           ) -> AsyncIterator[tuple[Doc, int]]:
    """(document, cursor)s where the server's prompt, sent to vLLM directly, runs to LONG tokens
    without an end: only such a request shows that a cancel cut it short."""
    import http.client
    import json

    def ask(ids: list[int]) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", vllm.port, timeout=600)
        connection.request("POST", "/v1/completions", json.dumps(
            {"prompt": ids, "max_tokens": LONG, "temperature": 0}),
            {"Content-Type": "application/json"})
        answer = json.loads(connection.getresponse().read())
        connection.close()
        return str(answer["choices"][0]["finish_reason"])

    for seed, (name, text) in enumerate(held_out_documents().items()):
        doc = Doc(client, uri_for(root, f"long-{name}"), text)
        for index in cursors(text, 4, 100 + seed):
            prompt = await client.prompt(doc.uri, at(doc, index))
            if await asyncio.to_thread(ask, prompt["ids"]) == "length":
                yield doc, index


async def wait_metric(client: Client, vllm: VllmServer, ready: Any, what: str
                      ) -> dict[str, float]:
    """Polls vLLM's metrics (a status endpoint) until `ready`; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not ready(metrics := await asyncio.to_thread(vllm.metrics)):
        assert loop.time() < deadline, f"never {what}: {metrics}\n{client.tail()}"
        await asyncio.sleep(0.01)  # poll interval, not synchronisation
    return metrics


class Proxy:
    """A TCP relay we can pull: down refuses connections and cuts open ones, like a crashed
    or restarted engine; up listens again on the same port."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


async def test_endpoint_down_is_a_status_and_it_recovers(trained_model: Path, workspace_dir: Path,
                                                         vllm: VllmServer) -> None:
    proxy = Proxy(vllm.port)
    proxy.up()
    options = {**OPTIONS, "engine": "openai", "endpoint": f"http://127.0.0.1:{proxy.port}/v1",
               "retries": 1}
    text = held_out_documents()["shlex.py"]
    spots = cursors(text, 4, 3)
    try:
        async with running(trained_model, workspace_dir, options) as client:
            assert (await client.wait_loaded())["state"] == "ready", client.tail()
            doc = Doc(client, uri_for(workspace_dir, "down.py"), text)
            first = await client.inline(doc.uri, at(doc, spots[0]))
            assert (await client.stats())["endpoint_status"] == "ok"

            proxy.down()
            # What stays local still answers: typing what the suggestion on screen says.
            shown = text_of(first)
            assert shown and len(shown.strip()) > 1, shown
            doc.change((spots[0], spots[0], shown[0]))
            assert text_of(await client.inline(doc.uri, at(doc, spots[0] + 1))) == shown[1:]
            assert (await client.stats())["endpoint_status"] == "ok"  # nothing was asked of it
            spots = [spots[0]] + [s + 1 for s in spots[1:]]  # after the typed character

            assert nothing(await client.inline(doc.uri, at(doc, spots[1])))
            stats = await client.stats()
            assert stats["endpoint_status"].startswith("unreachable: "), stats
            assert "unreachable" in stats["device"], stats  # what the editors' status shows
            told = [m.message for m in client.shown if "unreachable" in m.message]
            assert len(told) == 1 and f"127.0.0.1:{proxy.port}" in told[0], client.shown
            assert nothing(await client.inline(doc.uri, at(doc, spots[2])))
            assert len([m for m in client.shown if "unreachable" in m.message]) == 1

            proxy.up()  # the engine is back: the next request finds it, nothing to restart
            again = await client.inline(doc.uri, at(doc, spots[3]))
            assert again is None or isinstance(again, t.InlineCompletionList)
            stats = await client.stats()
            assert stats["source"] == "model", stats  # not a recent answer: the engine's
            assert stats["endpoint_status"] == "ok" and "unreachable" not in stats["device"]
            # The first position's answer is still known: a recent answer, no request at all.
            doc.change((spots[0], spots[0] + 1, ""))
            assert text_of(await client.inline(doc.uri, at(doc, spots[0]))) == text_of(first)
            assert (await client.stats())["source"] == "cache"
            assert any("answers again" in m.message for m in client.logged), client.logged
            assert stats["errors"] >= 2
    finally:
        proxy.down()


async def test_two_clients_and_several_documents_at_once(
        trained_model: Path, workspace_dir: Path, vllm: VllmServer,
        expected: dict[tuple[str, int], str | None]) -> None:
    options = {**OPTIONS, "engine": "openai", "endpoint": vllm.endpoint}
    names = list(held_out_documents())
    async with running(trained_model, workspace_dir, options) as a, \
            running(trained_model, workspace_dir, options) as b:
        for client in (a, b):
            assert (await client.wait_loaded())["state"] == "ready", client.tail()
        texts = held_out_documents()
        docs = {name: Doc(a if i % 2 == 0 else b, uri_for(workspace_dir, f"both-{name}"),
                          texts[name]) for i, name in enumerate(names)}
        per_doc = {name: [index for (n, index) in expected if n == name] for name in names}
        got: dict[tuple[str, int], str | None] = {}
        for round_ in range(CURSORS_PER_DOCUMENT):
            # One request per document at a time (a newer one would supersede it), all four
            # documents of both clients at once.
            asks = [(name, per_doc[name][round_]) for name in names]
            answers = await asyncio.gather(*(docs[name].client.inline(
                docs[name].uri, at(docs[name], index)) for name, index in asks))
            got.update({ask: text_of(answer) for ask, answer in zip(asks, answers, strict=True)})
        assert got == expected


async def test_a_restarted_engine_is_found_again(
        trained_model: Path, workspace_dir: Path, vllm: VllmServer,
        expected: dict[tuple[str, int], str | None]) -> None:
    """A real restart, not a relay pulled: vLLM's process ends, a new one starts on the same
    port with an empty cache, and the server goes on with it without being restarted itself.
    The failed request is not remembered as an answer, and the user is told once."""
    options = {**OPTIONS, "engine": "openai", "endpoint": vllm.endpoint, "retries": 1}
    name = "csv.py"
    text = held_out_documents()[name]
    spots = [index for (n, index) in expected if n == name]
    assert any(expected[name, index] for index in spots), expected
    async with running(trained_model, workspace_dir, options) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        doc = Doc(client, uri_for(workspace_dir, f"restart-{name}"), text)
        assert text_of(await client.inline(doc.uri, at(doc, spots[0]))) == expected[name, spots[0]]

        await asyncio.to_thread(vllm.stop)
        assert nothing(await client.inline(doc.uri, at(doc, spots[1])))
        stats = await client.stats()
        assert stats["endpoint_status"].startswith("unreachable: "), stats

        await asyncio.to_thread(lambda: vllm.start().wait_ready())
        fresh = vllm.metrics()  # the new process's counters start from nothing
        assert fresh.get("vllm:generation_tokens_total", 0) == 0, describe(fresh)
        for index in spots[1:]:  # the one asked while it was down too: nothing was remembered
            assert text_of(await client.inline(doc.uri, at(doc, index))) == expected[name, index]
        stats = await client.stats()
        assert stats["endpoint_status"] == "ok" and stats["source"] == "model", stats
        assert vllm.metrics()["vllm:generation_tokens_total"] > 0  # the new process answered
        told = [m.message for m in client.shown if "unreachable" in m.message]
        assert len(told) == 1, client.shown


def test_bench_remote_reports_latency_and_hit_rate_per_n(vllm: VllmServer,
                                                         trained_model: Path) -> None:
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "fimlsp", "bench", "remote", "--endpoint", vllm.endpoint,
         "--model", str(trained_model), "--editors", "1,2", "--seconds", "3", "--json"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)
    assert [(r["engine"], r["editors"]) for r in rows] == [("vllm", 1), ("vllm", 2),
                                                            ("in-process", 1)]
    for row in rows:
        assert row["keystrokes"] >= row["editors"] and row["errors"] == 0, row
        assert row["waited_for"] == row["keystrokes"]  # every keystroke's answer measured
        assert row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    for row in rows[:2]:
        assert 0.0 <= row["prefix_cache_hit_rate"] <= 1.0, row
    assert rows[2]["prefix_cache_hit_rate"] is None
