"""The remote engine against TGI, Ollama and llama.cpp server, as their APIs are documented.

None of these engines runs in CI (llama.cpp has its own test with the real server when its binary
is present: tests/test_remote_llamacpp.py; vLLM's are the lead's tests with the real server). So
each is replaced here by a stand-in HTTP server on loopback that replays request/response
fixtures written from the engines' documented APIs:

- TGI `POST /generate_stream`: SSE `data:{...}` events, one per token, `token` = {id, text,
  logprob, special}; the last one carries `generated_text` and `details.finish_reason`
  (`length` | `eos_token` | `stop_sequence`); a failure mid-stream is
  `data:{"error", "error_type"}`; a refused request is HTTP 422 `{"error", "error_type":
  "validation"}`. `GET /info` has `model_id` and `max_input_tokens`.
- Ollama `POST /api/generate` with `raw: true`: NDJSON lines `{"model", "created_at",
  "response", "done": false}`, the last with `done: true`, `done_reason` (`stop` | `length`) and
  counts; a failure is a line `{"error": "..."}`, an unknown model HTTP 404 `{"error"}`.
  `GET /api/tags` lists `{"models": [{"name", ...}]}`.
- llama.cpp server `POST /completion` with a token-array prompt: SSE `data: {...}` events with
  `content`, `tokens` (with `return_tokens`), `stop`; the last has `stop: true`, `stop_type`
  (`eos` | `limit` | `word`), `id_slot` and `timings.cache_n` (prompt tokens reused from the
  slot's cache); a failure mid-stream is an `error: {code, message, type}` line; 503 while the
  model loads. `GET /props` has `total_slots` and `default_generation_settings.n_ctx`.

What is asserted is what fimlsp owns: the request each engine receives (token ids or the decoded
text, limits, greedy settings, stop strings, one llama.cpp slot per document, the Bearer key),
the ids and stop reasons it makes of the answers, that stopping early closes the connection
before the engine has sent everything, and how failures read (errors, retries, health, TLS).
The stand-in waits on events, never on the clock.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from fimlsp.config import Settings
from fimlsp.engine.remote import Endpoint, RemoteEngine, generation
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import TEMPLATES, load_tokenizer

HOLD_S = 10.0  # longest a stand-in waits for the client to close: a failing test, not a hang
Reply = Callable[["_Handler"], None]


# -- the stand-in engine --------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the engine received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        stand_in = self.server.stand_in
        stand_in.record(Seen(self.command, self.path, dict(self.headers.items()),
                             json.loads(raw) if raw else None))
        stand_in.reply_for(self.path)(self)

    do_GET = do_POST = _serve

    # What replies are made of.

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")  # as all four engines stream
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def wait_closed(self) -> bool:
        """Blocks until the client closes its end (True), or HOLD_S passes (False). The client
        never sends anything after its request, so the next read returning nothing is the
        close."""
        self.connection.settimeout(HOLD_S)
        try:
            return self.connection.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:  # reset: closed as well
            return True
        finally:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    stand_in: StandIn


class StandIn:
    """A loopback HTTP server that answers each path with scripted replies (the last repeats)
    and records what it received and whether a client left a stream early."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1") -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.closed_early = threading.Event()  # a client closed a stream before its end
        self.streaming = threading.Event()  # headers of a stalled stream went out
        self._lock = threading.Lock()
        self.host = host
        self.server = _Server((host, port), _Handler)
        self.server.stand_in = self
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def on(self, path: str, *replies: Reply) -> StandIn:
        self.routes[path] = list(replies)
        return self

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def reply_for(self, path: str) -> Reply:
        with self._lock:
            replies = self.routes.get(path.split("?")[0])
            if not replies:
                return json_reply(404, {"error": f"no route {path}"})
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def posts(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "POST"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.stop()


def json_reply(status: int, answer: Any) -> Reply:
    def reply(handler: _Handler) -> None:
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return reply


def stream_reply(content_type: str, lines: list[bytes], hold_after: int | None = None) -> Reply:
    """Streams `lines` one chunk each; with `hold_after`, stops after that many and waits for
    the client to close before it sent the rest (recorded in `closed_early`)."""
    def reply(handler: _Handler) -> None:
        handler.start_stream(content_type)
        for index, line in enumerate(lines):
            if index == hold_after:
                if handler.wait_closed():
                    handler.server.stand_in.closed_early.set()
                return
            handler.chunk(line)
        handler.end_stream()
    return reply


def stalled_reply(content_type: str) -> Reply:
    """Headers, then nothing (an engine still prefilling, or hung) until the client closes."""
    def reply(handler: _Handler) -> None:
        handler.start_stream(content_type)
        handler.server.stand_in.streaming.set()
        if handler.wait_closed():
            handler.server.stand_in.closed_early.set()
    return reply


# -- the real tokenizer and a FIM prompt --------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(shared: Path) -> Tokenizer:
    """StarCoder's tokenizer as the server loads it (template tokens never parsed in text)."""
    return load_tokenizer(str(shared / "tokenizers" / "starcoder"))


TEMPLATE = TEMPLATES["starcoder"]
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\n\nprint(add(1, 2))\n"
MIDDLE = "return a + b"


def stop_texts(tokenizer: Tokenizer) -> list[str]:
    return [t for t in TEMPLATE.stop if tokenizer.token_to_id(t) is not None]


def stop_ids(tokenizer: Tokenizer) -> set[int]:
    return {i for t in TEMPLATE.stop if (i := tokenizer.token_to_id(t)) is not None}


def spm_prompt(tokenizer: Tokenizer, prefix: str = PREFIX, suffix: str = SUFFIX) -> list[int]:
    """StarCoder's SPM order, as prompt.py builds it: `<pre><suf>S<mid>P`."""
    special = tokenizer.token_to_id
    return [special(TEMPLATE.prefix), special(TEMPLATE.suffix),
            *tokenizer.encode(suffix, add_special_tokens=False).ids, special(TEMPLATE.middle),
            *tokenizer.encode(prefix, add_special_tokens=False).ids]


def middle_ids(tokenizer: Tokenizer) -> list[int]:
    return tokenizer.encode(MIDDLE, add_special_tokens=False).ids


def make_engine(kind: str, url: str, tokenizer: Tokenizer, **settings: Any) -> RemoteEngine:
    return RemoteEngine(Settings(engine=kind, endpoint=url, **settings), tokenizer,
                        stop_texts(tokenizer))


def generate(engine: RemoteEngine, tokenizer: Tokenizer, key: str = "file:///a.py",
             max_new_tokens: int = 16, **kwargs: Any) -> Any:
    return engine.generate(key, spm_prompt(tokenizer), max_new_tokens=max_new_tokens,
                           stop_ids=stop_ids(tokenizer), **kwargs)


# -- each engine's answers, as its documentation shows them ------------------------------------

EOS = 0  # <|endoftext|> in StarCoder's vocabulary


def sse(event: Any, field_name: str = "data", space: bool = True) -> bytes:
    return f"{field_name}:{' ' if space else ''}{json.dumps(event)}\n\n".encode()


def tgi_events(tokenizer: Tokenizer, ids: list[int], finish: str, prompt_len: int = 20
               ) -> list[bytes]:
    """TGI writes `data:` without a space."""
    events = []
    text = ""
    for index, token in enumerate(ids, start=1):
        piece = "" if token == EOS else tokenizer.decode([token])
        text += piece
        last = index == len(ids)
        events.append(sse({
            "index": index,
            "token": {"id": token, "text": piece, "logprob": -0.25, "special": token == EOS},
            "top_tokens": None,
            "generated_text": text if last else None,
            "details": {"finish_reason": finish, "generated_tokens": len(ids),
                        "input_length": prompt_len, "seed": None} if last else None,
        }, space=False))
    return events


def llamacpp_events(tokenizer: Tokenizer, ids: list[int], stop_type: str, slot: int = 0,
                    cache_n: int = 0, prompt_n: int = 20, per_token: bool = False
                    ) -> list[bytes]:
    """With `per_token` (the request's `timings_per_token`), every event has its timings."""
    timings = {"cache_n": cache_n, "prompt_n": prompt_n - cache_n, "prompt_ms": 3.5,
               "predicted_n": 1, "predicted_ms": 1.5}
    events = [sse({"index": 0, "content": tokenizer.decode([t]), "tokens": [t], "stop": False,
                   "id_slot": slot, "tokens_predicted": n, "tokens_evaluated": prompt_n,
                   **({"timings": timings} if per_token else {})})
              for n, t in enumerate(ids, start=1)]
    events.append(sse({
        "index": 0, "content": "", "tokens": [], "id_slot": slot, "stop": True,
        "model": "tiny-fim-starcoder", "tokens_predicted": len(ids),
        "tokens_evaluated": prompt_n, "truncated": False, "stop_type": stop_type,
        "stopping_word": "", "tokens_cached": prompt_n + len(ids) - 1,
        "timings": {"cache_n": cache_n, "prompt_n": prompt_n - cache_n, "prompt_ms": 3.5,
                    "prompt_per_token_ms": 0.2, "prompt_per_second": 5000.0,
                    "predicted_n": len(ids), "predicted_ms": 12.0,
                    "predicted_per_token_ms": 1.5, "predicted_per_second": 660.0},
    }))
    return events


def ollama_lines(pieces: list[str], done_reason: str, model: str = "tiny-fim") -> list[bytes]:
    created = "2026-11-30T03:00:00.000000Z"
    lines = [json.dumps({"model": model, "created_at": created, "response": piece,
                         "done": False}).encode() + b"\n" for piece in pieces]
    lines.append(json.dumps({
        "model": model, "created_at": created, "response": "", "done": True,
        "done_reason": done_reason, "context": [1, 2, 3], "total_duration": 5_000_000,
        "load_duration": 1_000_000, "prompt_eval_count": 20, "prompt_eval_duration": 2_000_000,
        "eval_count": len(pieces), "eval_duration": 2_000_000}).encode() + b"\n")
    return lines


def llamacpp_props(slots: int = 2, n_ctx: int = 2048) -> Reply:
    return json_reply(200, {
        "default_generation_settings": {"id": 0, "n_ctx": n_ctx, "params": {"top_k": 40}},
        "total_slots": slots, "model_path": "/models/tiny-fim-starcoder-f32.gguf",
        "build_info": "b0-standin"})


def tgi_info() -> Reply:
    return json_reply(200, {"model_id": "tiny-fim-starcoder", "max_input_tokens": 1024,
                            "max_total_tokens": 2048, "max_stop_sequences": 4,
                            "version": "3.0.0"})


def ollama_tags(*names: str) -> Reply:
    return json_reply(200, {"models": [{"name": n, "model": n, "size": 1234,
                                        "digest": "0" * 64, "details": {"format": "gguf"}}
                                       for n in names]})


SSE, NDJSON = "text/event-stream", "application/x-ndjson"


def answer(kind: str, tokenizer: Tokenizer, ids: list[int], finish: str = "eos",
           hold_after: int | None = None) -> Reply:
    """A streamed answer of `ids` in `kind`'s format; `finish` in our words (eos | limit)."""
    if kind == "tgi":
        wire = [*ids, EOS] if finish == "eos" else ids
        return stream_reply(SSE, tgi_events(tokenizer, wire,
                                            "eos_token" if finish == "eos" else "length"),
                            hold_after)
    if kind == "llamacpp":
        return stream_reply(SSE, llamacpp_events(tokenizer, ids, finish), hold_after)
    pieces = [tokenizer.decode([t]) for t in ids]
    return stream_reply(NDJSON, ollama_lines(pieces, "stop" if finish == "eos" else "length"),
                        hold_after)


PATHS = {"tgi": "/generate_stream", "llamacpp": "/completion", "ollama": "/api/generate"}
CONTENT = {"tgi": SSE, "llamacpp": SSE, "ollama": NDJSON}
KINDS = ("tgi", "llamacpp", "ollama")


# -- Endpoint.parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "engine", "expected"), [
    ("http://127.0.0.1:8000", "openai", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/", "openai", "http://127.0.0.1:8000/v1"),
    ("https://gpu.example.com/proxy/v1", "openai", "https://gpu.example.com:443/proxy/v1"),
    ("http://gpu-box:8080", "llamacpp", "http://gpu-box:8080"),
    ("http://gpu-box", "tgi", "http://gpu-box:80"),
    ("  http://127.0.0.1:11434/  ", "ollama", "http://127.0.0.1:11434"),
])
def test_endpoint_parse_adds_v1_only_for_openai(url: str, engine: str, expected: str) -> None:
    assert str(Endpoint.parse(url, engine)) == expected


@pytest.mark.parametrize(("url", "words"), [
    ("http://user:s3cret-pw@gpu-box:8000/v1", "apiKeyEnv"),
    ("ftp://gpu-box/v1", "http:// or https://"),
    ("gpu-box:8000", "http:// or https://"),
    ("http:///v1", "with a host"),
    ("http://gpu-box:99999/v1", "invalid port"),
])
def test_endpoint_parse_refuses(url: str, words: str) -> None:
    with pytest.raises(FimError) as error:
        Endpoint.parse(url, "openai")
    assert error.value.kind is ErrorKind.CONFIG
    assert words in error.value.message
    assert "s3cret" not in error.value.message


# -- what each engine receives ------------------------------------------------------------------


def test_llamacpp_gets_token_ids_greedy_settings_and_cache_prompt(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    ids = middle_ids(tokenizer)
    stand_in.on("/props", llamacpp_props())
    stand_in.on("/completion", stream_reply(SSE, llamacpp_events(
        tokenizer, ids, "eos", cache_n=17, prompt_n=len(spm_prompt(tokenizer)))))
    engine = make_engine("llamacpp", stand_in.url, tokenizer)
    engine.probe()
    assert engine.slot_count == 2 and engine.max_context == 2048

    result = generate(engine, tokenizer, max_new_tokens=24)

    body = stand_in.posts()[0].body
    assert body["prompt"] == spm_prompt(tokenizer)  # the exact window, never re-tokenized
    assert body["n_predict"] == 24
    assert body["temperature"] == 0 and body["top_k"] == 1  # greedy
    assert body["repeat_penalty"] == 1.0 and body["min_p"] == 0.0  # nothing but the model's
    assert body["stop"] == stop_texts(tokenizer) and "<fim_prefix>" in body["stop"]
    assert body["cache_prompt"] is True and body["return_tokens"] is True
    assert body["stream"] is True and body["id_slot"] in (0, 1)
    assert body["timings_per_token"] is True  # cache_n before the policy closes the stream
    assert result.ids == ids
    assert result.stop_reason == "eos"
    assert result.reused_tokens == 17  # timings.cache_n: the slot's cache, not ours
    assert result.prompt_tokens == len(spm_prompt(tokenizer))


def test_llamacpp_cache_reuse_is_known_when_the_policy_stops_early(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    """The last event, with its timings, never comes when the policy stops first (the usual
    case): the per-token timings tell the reuse anyway."""
    stand_in.on("/completion", stream_reply(SSE, llamacpp_events(
        tokenizer, middle_ids(tokenizer), "eos", cache_n=19, prompt_n=23, per_token=True),
        hold_after=2))
    result = generate(make_engine("llamacpp", stand_in.url, tokenizer), tokenizer,
                      on_token=lambda token: True)
    assert result.stop_reason == "callback"
    assert result.reused_tokens == 19


def test_llamacpp_one_slot_per_document_distinct_and_stable(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    stand_in.on("/props", llamacpp_props(slots=2))
    stand_in.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("llamacpp", stand_in.url, tokenizer)
    engine.probe()

    for key in ("file:///a.py", "file:///b.py", "file:///a.py", "file:///b.py"):
        generate(engine, tokenizer, key=key)
    slots = [s.body["id_slot"] for s in stand_in.posts()]
    assert slots[0] != slots[1]  # two documents, two slots: neither evicts the other's cache
    assert slots[2:] == slots[:2]  # each keeps its own

    generate(engine, tokenizer, key="file:///c.py")  # a third takes the least recently used
    assert stand_in.posts()[-1].body["id_slot"] == slots[0]
    engine.drop_session("file:///b.py")  # closed: its slot is free for the next document
    generate(engine, tokenizer, key="file:///d.py")
    assert stand_in.posts()[-1].body["id_slot"] == slots[1]
    assert engine.session_count == 2


def test_llamacpp_without_props_sends_no_slot(stand_in: StandIn, tokenizer: Tokenizer) -> None:
    """A server that does not say how many slots it has picks one itself."""
    stand_in.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("llamacpp", stand_in.url, tokenizer)
    engine.probe()  # 404 here
    generate(engine, tokenizer)
    assert "id_slot" not in stand_in.posts()[0].body


def test_tgi_gets_the_decoded_prompt_and_gives_token_ids(
        stand_in: StandIn, tokenizer: Tokenizer, shared: Path) -> None:
    ids = middle_ids(tokenizer)
    stand_in.on("/info", tgi_info())
    stand_in.on("/generate_stream", answer("tgi", tokenizer, ids))
    engine = make_engine("tgi", stand_in.url, tokenizer)
    engine.probe()
    assert engine.max_context == 1024

    result = generate(engine, tokenizer, max_new_tokens=20)

    body = stand_in.posts()[0].body
    prompt = body["inputs"]
    assert prompt == tokenizer.decode(spm_prompt(tokenizer), skip_special_tokens=False)
    assert prompt.startswith("<fim_prefix><fim_suffix>") and PREFIX in prompt
    # What the engine must do with it: parse the template tokens as special. A tokenizer that
    # does so gives our ids back for this prompt (docs/deploy.md: what text prompts cost).
    engine_side = Tokenizer.from_file(str(shared / "tokenizers" / "starcoder" / "tokenizer.json"))
    assert engine_side.encode(prompt, add_special_tokens=False).ids == spm_prompt(tokenizer)
    parameters = body["parameters"]
    assert parameters["max_new_tokens"] == 20
    assert parameters["do_sample"] is False and "temperature" not in parameters
    assert parameters["stop"] == stop_texts(tokenizer)[:4]  # TGI's default limit is 4
    assert parameters["details"] is True
    assert result.ids == ids  # token.id, not the text re-encoded
    assert result.stop_reason == "eos"


def test_tgi_sampling_parameters(stand_in: StandIn, tokenizer: Tokenizer) -> None:
    stand_in.on("/generate_stream", answer("tgi", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("tgi", stand_in.url, tokenizer)
    generate(engine, tokenizer, temperature=0.7, top_p=0.9)
    parameters = stand_in.posts()[0].body["parameters"]
    assert parameters["do_sample"] is True
    assert parameters["temperature"] == 0.7 and parameters["top_p"] == 0.9


def test_ollama_gets_raw_text_and_the_model_it_serves(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    ids = middle_ids(tokenizer)
    stand_in.on("/api/tags", ollama_tags("tiny-fim:latest"))
    stand_in.on("/api/generate", answer("ollama", tokenizer, ids))
    engine = make_engine("ollama", stand_in.url, tokenizer)
    engine.probe()
    assert engine.served_model == "tiny-fim:latest"  # the only one: nothing to configure

    result = generate(engine, tokenizer, max_new_tokens=12)

    body = stand_in.posts()[0].body
    assert body["model"] == "tiny-fim:latest"
    assert body["raw"] is True  # no template of Ollama's around ours
    assert body["stream"] is True
    assert body["prompt"] == tokenizer.decode(spm_prompt(tokenizer), skip_special_tokens=False)
    options = body["options"]
    assert options["num_predict"] == 12
    assert options["temperature"] == 0 and options["top_k"] == 1
    assert options["repeat_penalty"] == 1.0
    assert options["stop"] == stop_texts(tokenizer)
    assert result.ids == ids  # text only: re-encoded with the model's tokenizer
    assert tokenizer.decode(result.ids) == MIDDLE
    assert result.stop_reason == "eos"


def test_ollama_with_several_models_sends_the_configured_one(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    stand_in.on("/api/tags", ollama_tags("llama3:8b", "tiny-fim:latest"))
    stand_in.on("/api/generate", answer("ollama", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("ollama", stand_in.url, tokenizer, served_model="tiny-fim:latest")
    engine.probe()
    generate(engine, tokenizer)
    assert stand_in.posts()[0].body["model"] == "tiny-fim:latest"


# -- how generation ends -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_engine_limit_is_max_tokens(kind: str, stand_in: StandIn, tokenizer: Tokenizer) -> None:
    """The engine stopped at its own limit (its context, or a cap below ours)."""
    ids = middle_ids(tokenizer)[:3]
    stand_in.on(PATHS[kind], answer(kind, tokenizer, ids, finish="limit"))
    result = generate(make_engine(kind, stand_in.url, tokenizer), tokenizer, max_new_tokens=16)
    assert result.ids == ids
    assert result.stop_reason == "max_tokens"


@pytest.mark.parametrize("kind", KINDS)
def test_max_new_tokens_ends_it_here(kind: str, stand_in: StandIn, tokenizer: Tokenizer) -> None:
    ids = middle_ids(tokenizer)
    stand_in.on(PATHS[kind], answer(kind, tokenizer, ids, hold_after=3))
    result = generate(make_engine(kind, stand_in.url, tokenizer), tokenizer, max_new_tokens=3)
    assert result.ids == ids[:3]
    assert result.stop_reason == "max_tokens"
    assert stand_in.closed_early.wait(HOLD_S)


@pytest.mark.parametrize("kind", KINDS)
def test_callback_stop_closes_the_connection_before_the_engine_is_done(
        kind: str, stand_in: StandIn, tokenizer: Tokenizer) -> None:
    """The completion policy says stop at the second token: the stream is closed then, and the
    engine sees its client go while it still had tokens to send (so it aborts the request)."""
    ids = middle_ids(tokenizer)
    assert len(ids) > 3
    stand_in.on(PATHS[kind], answer(kind, tokenizer, ids, hold_after=2))
    seen: list[int] = []

    def on_token(token: int) -> bool:
        seen.append(token)
        return len(seen) == 2

    result = generate(make_engine(kind, stand_in.url, tokenizer), tokenizer, on_token=on_token)
    assert result.stop_reason == "callback"
    assert result.ids == seen == ids[:2]
    assert stand_in.closed_early.wait(HOLD_S), "the engine never saw the connection close"


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_read_is_ended_by_should_stop(kind: str, stand_in: StandIn,
                                              tokenizer: Tokenizer) -> None:
    """The engine sent its headers and then nothing (prefilling, or hung). A newer keystroke
    (should_stop) must still end the request: the watcher closes the socket under the read."""
    stand_in.on(PATHS[kind], stalled_reply(CONTENT[kind]))

    def should_stop() -> str | None:
        return "superseded" if stand_in.streaming.is_set() else None

    result = generate(make_engine(kind, stand_in.url, tokenizer), tokenizer,
                      should_stop=should_stop)
    assert result.stop_reason == "superseded"
    assert result.ids == []
    assert stand_in.closed_early.wait(HOLD_S), "the engine never saw the connection close"


# -- failures ----------------------------------------------------------------------------------

MID_STREAM_ERRORS = {
    "tgi": sse({"error": "Request failed during generation: Server error: CUDA out of memory",
                "error_type": "generation"}, space=False),
    "ollama": json.dumps({"error": "an error was encountered while running the model: "
                                   "CUDA out of memory"}).encode() + b"\n",
    "llamacpp": sse({"code": 500, "message": "CUDA out of memory", "type": "server_error"},
                    field_name="error"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_error_event_mid_stream(kind: str, stand_in: StandIn, tokenizer: Tokenizer) -> None:
    lines = {"tgi": tgi_events(tokenizer, middle_ids(tokenizer)[:1], "length")[:1],
             "llamacpp": llamacpp_events(tokenizer, middle_ids(tokenizer)[:1], "eos")[:1],
             "ollama": ollama_lines([tokenizer.decode(middle_ids(tokenizer)[:1])], "stop")[:1]}
    stand_in.on(PATHS[kind], stream_reply(CONTENT[kind], [*lines[kind], MID_STREAM_ERRORS[kind]]))
    engine = make_engine(kind, stand_in.url, tokenizer)
    with pytest.raises(FimError) as error:
        generate(engine, tokenizer)
    assert error.value.kind is ErrorKind.ENGINE_UNAVAILABLE
    assert "CUDA out of memory" in error.value.message
    assert len(stand_in.posts()) == 1  # a failed generation is not retried
    assert engine.health.ok  # it answered: reachable


REFUSALS = {
    "tgi": (422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be "
                           "<= 2048. Given: 2040 `inputs` tokens and 64 `max_new_tokens`",
                  "error_type": "validation"}, "must be <= 2048"),
    "ollama": (404, {"error": "model \"tiny-fim\" not found, try pulling it first"},
               "not found, try pulling it first"),
    "llamacpp": (400, {"error": {"code": 400, "message": "the request exceeds the available "
                                 "context size, try increasing it",
                                 "type": "exceed_context_size_error"}},
                 "exceeds the available context size"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_http_4xx_is_engine_unavailable_with_its_message(
        kind: str, stand_in: StandIn, tokenizer: Tokenizer) -> None:
    status, body, words = REFUSALS[kind]
    stand_in.on(PATHS[kind], json_reply(status, body))
    engine = make_engine(kind, stand_in.url, tokenizer, retries=3)
    with pytest.raises(FimError) as error:
        generate(engine, tokenizer)
    assert error.value.kind is ErrorKind.ENGINE_UNAVAILABLE
    assert str(status) in error.value.message and words in error.value.message
    assert len(stand_in.posts()) == 1  # refused is not unreachable: never retried
    assert engine.health.ok


class _Clock:
    """`generation`'s `time`, with `sleep` recorded instead of slept: the backoff is asserted as the
    waits asked for, and the test does not wait them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(generation, "time", fake)
    return fake


LOADING = json_reply(503, {"error": {"code": 503, "message": "Loading model",
                                     "type": "unavailable_error"}})


def test_503_is_retried_with_backoff(stand_in: StandIn, tokenizer: Tokenizer,
                                     clock: _Clock) -> None:
    ids = middle_ids(tokenizer)
    stand_in.on("/completion", LOADING, LOADING, answer("llamacpp", tokenizer, ids))
    engine = make_engine("llamacpp", stand_in.url, tokenizer, retries=2)
    result = generate(engine, tokenizer)
    assert result.ids == ids
    assert len(stand_in.posts()) == 3
    assert clock.waits == [generation.BACKOFF_S, 2 * generation.BACKOFF_S]
    assert engine.health.ok and engine.describe()["endpoint_status"] == "ok"


def test_503_until_the_retries_run_out(stand_in: StandIn, tokenizer: Tokenizer,
                                       clock: _Clock) -> None:
    stand_in.on("/completion", LOADING)
    engine = make_engine("llamacpp", stand_in.url, tokenizer, retries=3)
    with pytest.raises(FimError) as error:
        generate(engine, tokenizer)
    assert error.value.kind is ErrorKind.ENGINE_UNAVAILABLE
    assert "unreachable" in error.value.message and "503" in error.value.message
    assert len(stand_in.posts()) == 4
    assert clock.waits == [generation.BACKOFF_S * 2 ** n for n in range(3)]
    assert engine.health.status.startswith("unreachable: the engine answered 503")


def test_connection_refused_then_recovery_on_the_same_port(
        tokenizer: Tokenizer, clock: _Clock) -> None:
    first = StandIn()
    port = first.port
    first.stop()  # nobody listens there now
    engine = make_engine("llamacpp", f"http://127.0.0.1:{port}", tokenizer, retries=2)

    engine.probe()  # down is a status, not an error
    assert engine.health.status == "unreachable: connection refused"
    with pytest.raises(FimError) as error:
        generate(engine, tokenizer)
    assert error.value.kind is ErrorKind.ENGINE_UNAVAILABLE
    assert "connection refused" in error.value.message and str(port) in error.value.message
    assert clock.waits == [generation.BACKOFF_S, 2 * generation.BACKOFF_S]
    assert engine.describe()["endpoint_status"] == "unreachable: connection refused"

    again = StandIn(port=port)  # the engine is back
    try:
        again.on("/props", llamacpp_props())
        again.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)))
        engine.probe()
        assert engine.health.ok and engine.describe()["endpoint_status"] == "ok"
        assert generate(engine, tokenizer).ids == middle_ids(tokenizer)
    finally:
        again.stop()


# -- the key -----------------------------------------------------------------------------------

SECRET = "sk-fimlsp-test-7c1f0e9d"


def test_api_key_is_a_bearer_header_and_never_shown(
        stand_in: StandIn, tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, clock: _Clock) -> None:
    monkeypatch.setenv("FIMLSP_TEST_ENGINE_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    status, body, _ = REFUSALS["llamacpp"]
    stand_in.on("/props", llamacpp_props())
    stand_in.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)),
                json_reply(status, body))
    engine = make_engine("llamacpp", stand_in.url, tokenizer,
                         api_key_env="FIMLSP_TEST_ENGINE_KEY")
    engine.probe()
    generate(engine, tokenizer)
    with pytest.raises(FimError) as refused:
        generate(engine, tokenizer)
    for seen in stand_in.seen:  # the GET of /props as well as each POST
        assert seen.headers["Authorization"] == f"Bearer {SECRET}"

    gone = StandIn()
    port = gone.port
    gone.stop()
    down = make_engine("llamacpp", f"http://127.0.0.1:{port}", tokenizer, retries=1,
                       api_key_env="FIMLSP_TEST_ENGINE_KEY")
    down.probe()
    with pytest.raises(FimError) as unreachable:
        generate(down, tokenizer)

    shown = [json.dumps(engine.describe()), json.dumps(down.describe()), repr(engine.client),
             refused.value.message, unreachable.value.message, caplog.text,
             repr(engine.endpoint), down.health.status]
    assert caplog.text  # the down endpoint was logged...
    for text in shown:
        assert SECRET not in text  # ...without the key


def test_api_key_env_that_is_not_set_says_so(tokenizer: Tokenizer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIMLSP_TEST_UNSET_KEY", raising=False)
    with pytest.raises(FimError) as error:
        make_engine("tgi", "http://127.0.0.1:9", tokenizer, api_key_env="FIMLSP_TEST_UNSET_KEY")
    assert error.value.kind is ErrorKind.CONFIG
    assert "apiKeyEnv" in error.value.message and "not set" in error.value.message
    assert "FIMLSP_TEST_UNSET_KEY" not in error.value.message  # it could be a pasted key


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, made with the openssl command line (the
    `cryptography` package is not a dependency)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no `openssl` command to make a self-signed certificate with")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_stand_in(self_signed: tuple[Path, Path]) -> Iterator[StandIn]:
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = StandIn(tls=context)
    yield server
    server.stop()


def test_tls_verification_on_refuses_a_self_signed_certificate(
        tls_stand_in: StandIn, tokenizer: Tokenizer, clock: _Clock) -> None:
    tls_stand_in.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("llamacpp", tls_stand_in.url, tokenizer)  # tlsVerify: on by default
    with pytest.raises(FimError) as error:
        generate(engine, tokenizer)
    assert error.value.kind is ErrorKind.ENGINE_UNAVAILABLE
    assert "TLS" in error.value.message and "CERTIFICATE_VERIFY_FAILED" in error.value.message
    assert clock.waits == []  # a certificate does not get better by trying again
    engine.probe()
    assert engine.health.status.startswith("unreachable: TLS with the endpoint failed")
    assert tls_stand_in.posts() == []  # nothing was sent over the unverified connection


def test_tls_verification_off_talks_to_it(tls_stand_in: StandIn, tokenizer: Tokenizer) -> None:
    tls_stand_in.on("/props", llamacpp_props())
    tls_stand_in.on("/completion", answer("llamacpp", tokenizer, middle_ids(tokenizer)))
    engine = make_engine("llamacpp", tls_stand_in.url, tokenizer, tls_verify=False)
    engine.probe()
    assert engine.health.ok and engine.slot_count == 2
    result = generate(engine, tokenizer)
    assert result.ids == middle_ids(tokenizer) and result.stop_reason == "eos"


# -- several documents at once ----------------------------------------------------------------


def test_requests_for_different_documents_run_at_once(
        stand_in: StandIn, tokenizer: Tokenizer) -> None:
    """Both streams are open at the same time (each on its own connection): the first is held
    until the second has been answered, which could not happen if requests were serialised."""
    ids = middle_ids(tokenizer)
    first_in, second_done = threading.Event(), threading.Event()
    lines = llamacpp_events(tokenizer, ids, "eos")

    def held(handler: _Handler) -> None:
        first_in.set()
        handler.start_stream(SSE)
        handler.chunk(lines[0])
        assert second_done.wait(HOLD_S)
        for line in lines[1:]:
            handler.chunk(line)
        handler.end_stream()

    stand_in.on("/props", llamacpp_props())
    stand_in.on("/completion", held, answer("llamacpp", tokenizer, ids))
    engine = make_engine("llamacpp", stand_in.url, tokenizer)
    engine.probe()
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(
        a=generate(engine, tokenizer, key="file:///a.py")))
    first.start()
    assert first_in.wait(HOLD_S)  # the first request is in the engine, its stream open
    results["b"] = generate(engine, tokenizer, key="file:///b.py")
    second_done.set()
    first.join(HOLD_S)
    assert results["a"].ids == results["b"].ids == ids
    assert {s.body["id_slot"] for s in stand_in.posts()} == {0, 1}
