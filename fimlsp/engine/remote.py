"""A serving engine elsewhere (vLLM, llama.cpp server, TGI, Ollama) behind the engine interface.

Everything that makes a suggestion good stays in this process: the prompt is built with the
model's own tokenizer into its exact window, typing-through and recent answers answer without
a request, and the completion policy stops generation. Only the forward passes move. So this
engine takes the same prompt ids as `LocalEngine`, streams the engine's tokens into the same
`on_token` callback, and closes the stream the moment the policy, a newer keystroke or the time
budget says stop; a serving engine that sees its client go aborts the request (vLLM does).

KV reuse across keystrokes becomes the engine's: vLLM's automatic prefix caching, llama.cpp's
`cache_prompt` with one slot per document. Our SPM prompts and sticky windows change only their
last few tokens per keystroke, which is what makes those caches hit; `reused_tokens` is what the
engine reports it took from its cache.

HTTP is `http.client` from the standard library rather than a client package: a request is one
POST whose answer is read line by line (SSE or NDJSON), and stopping it means closing its socket,
also from another thread while a read blocks — both direct there, and no dependency to keep.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from tokenizers import Tokenizer

from fimlsp.config import Settings
from fimlsp.engine import Generation, StopCheck, TokenCallback, TokenChecks
from fimlsp.errors import ErrorKind, FimError

log = logging.getLogger(__name__)

# Where each engine listens when started with its defaults, for an `endpoint` left unset.
DEFAULT_ENDPOINTS = {
    "openai": "http://127.0.0.1:8000/v1",  # vLLM's `vllm serve`
    "llamacpp": "http://127.0.0.1:8080",  # llama.cpp's `llama-server`
    "tgi": "http://127.0.0.1:8080",  # text-generation-launcher's port in its docker examples
    "ollama": "http://127.0.0.1:11434",
}
BACKOFF_S = 0.2  # first wait between attempts after a connection error; doubles each time
PROBE_BACKOFF_S = 0.5  # first wait before asking a down engine again what it serves; doubles
PROBE_MAX_WAIT_S = 30.0  # ... up to this
WATCH_S = 0.02  # how often a blocked read checks whether its request should stop
MAX_LINE = 1 << 20  # an event line longer than this is not from a completion API


class Unreachable(Exception):
    """The engine could not be reached, or dropped the connection before answering: retried."""


@dataclass
class Chunk:
    """One streamed event, in the terms of the engine interface."""

    ids: list[int] | None = None  # the tokens it carries, when the API gives ids
    text: str = ""  # ... else their text, which we encode
    finish: str | None = None  # the engine's reason when it stopped by itself
    cached: int | None = None  # prompt tokens the engine took from its cache, once it says
    served: str | None = None  # the model name the engine answered with


@dataclass
class Request:
    """What every API needs to hear about one generation."""

    ids: list[int]
    text: str  # the same prompt decoded, for the APIs that take only text
    max_new_tokens: int
    temperature: float
    top_p: float
    stop_ids: list[int]
    stop_texts: list[str]
    model: str | None  # the engine's name for the model, when it wants one
    slot: int | None = None  # llama.cpp: the document's slot


class Dialect(Protocol):
    """How one serving engine's completion API is spoken."""

    name: str
    takes_ids: bool  # False: the prompt is sent as text (it costs exactness; docs/deploy.md)
    lines: str  # "sse" or "ndjson"

    def path(self) -> str: ...

    def body(self, request: Request) -> dict[str, Any]: ...

    def parse(self, event: dict[str, Any]) -> Chunk: ...

    def models_path(self) -> str | None: ...

    def models(self, answer: Any) -> list[tuple[str, int | None]]: ...


def _error_text(event: dict[str, Any]) -> str | None:
    """The message of an error event, in any of the shapes these APIs use."""
    error = event.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


class OpenAI:
    """`/v1/completions` as vLLM serves it: token-id prompts, ids back with `return_token_ids`,
    the prompt's cached tokens in the usage chunk (with `--enable-prompt-tokens-details`)."""

    name = "openai"
    takes_ids = True
    lines = "sse"

    def path(self) -> str:
        return "/completions"

    def body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": r.model, "prompt": r.ids, "max_tokens": r.max_new_tokens,
            "temperature": r.temperature, "top_p": r.top_p, "stream": True,
            "stream_options": {"include_usage": True}, "return_token_ids": True,
            # The engine ends at the template's stop tokens itself (no tokens wasted after one),
            # and keeps them out of the text; the ids come back either way.
            "stop_token_ids": r.stop_ids, "skip_special_tokens": False,
        }
        return body

    def parse(self, event: dict[str, Any]) -> Chunk:
        chunk = Chunk(served=event.get("model"))
        choices = event.get("choices") or []
        if choices:
            choice = choices[0]
            ids = choice.get("token_ids")
            chunk.ids = list(ids) if isinstance(ids, list) else None
            chunk.text = choice.get("text") or ""
            chunk.finish = choice.get("finish_reason")
        usage = event.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        if isinstance(details, dict) and details.get("cached_tokens") is not None:
            chunk.cached = int(details["cached_tokens"])
        return chunk

    def models_path(self) -> str | None:
        return "/models"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        return [(m.get("id", ""), m.get("max_model_len")) for m in answer.get("data", [])]


class LlamaCpp:
    """llama.cpp server's native `/completion`: token-array prompts, `cache_prompt` and one
    slot per document (`id_slot`), token ids back with `return_tokens`."""

    name = "llamacpp"
    takes_ids = True
    lines = "sse"

    def path(self) -> str:
        return "/completion"

    def body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": r.ids, "n_predict": r.max_new_tokens, "stream": True,
            "cache_prompt": True, "return_tokens": True, "stop": r.stop_texts,
            "temperature": r.temperature, "top_p": r.top_p,
            # Sample as the in-process engine does (temperature and top-p only): older servers
            # default to repeat_penalty 1.1, which runs before top-k and changes even greedy
            # output; top_k 0 and min_p 0 switch those samplers off.
            "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0,
            # Timings (with cache_n) in every event, not only the last: the policy usually
            # closes the stream before the last one comes.
            "timings_per_token": True,
        }
        if r.temperature <= 0:
            body["top_k"] = 1  # greedy, whatever the server's sampler chain
        if r.slot is not None:
            body["id_slot"] = r.slot
        return body

    def parse(self, event: dict[str, Any]) -> Chunk:
        ids = event.get("tokens")
        chunk = Chunk(ids=list(ids) if isinstance(ids, list) else None,
                      text=event.get("content") or "")
        if event.get("stop"):
            chunk.finish = event.get("stop_type") or "stop"
        timings = event.get("timings") or {}
        if timings.get("cache_n") is not None:
            chunk.cached = int(timings["cache_n"])
        return chunk

    def models_path(self) -> str | None:
        return "/props"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        settings = answer.get("default_generation_settings") or {}
        name = answer.get("model_path") or settings.get("model") or ""
        return [(str(name), settings.get("n_ctx"))]


class TGI:
    """Text Generation Inference's `/generate_stream`: a text prompt, token ids back."""

    name = "tgi"
    takes_ids = False
    lines = "sse"

    def path(self) -> str:
        return "/generate_stream"

    def body(self, r: Request) -> dict[str, Any]:
        parameters: dict[str, Any] = {"max_new_tokens": r.max_new_tokens, "details": True,
                                      "stop": r.stop_texts[:4]}  # TGI takes at most 4
        if r.temperature > 0:
            parameters.update(do_sample=True, temperature=r.temperature)
            if r.top_p < 1.0:
                parameters["top_p"] = r.top_p
        else:
            parameters["do_sample"] = False
        return {"inputs": r.text, "parameters": parameters}

    def parse(self, event: dict[str, Any]) -> Chunk:
        token = event.get("token") or {}
        chunk = Chunk(ids=[int(token["id"])] if "id" in token else [],
                      text=token.get("text") or "")
        details = event.get("details")
        if isinstance(details, dict):
            chunk.finish = details.get("finish_reason") or "stop"
        elif event.get("generated_text") is not None:
            chunk.finish = "stop"
        return chunk

    def models_path(self) -> str | None:
        return "/info"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        limit = answer.get("max_input_tokens") or answer.get("max_input_length")  # TGI < 2.1
        return [(str(answer.get("model_id", "")), limit)]


class Ollama:
    """Ollama's `/api/generate` in raw mode (our prompt as it is, no template of its own):
    a text prompt, text back as NDJSON."""

    name = "ollama"
    takes_ids = False
    lines = "ndjson"

    def path(self) -> str:
        return "/api/generate"

    def body(self, r: Request) -> dict[str, Any]:
        # Ollama's defaults (top_k 40, repeat_penalty 1.1) would change even greedy output.
        options: dict[str, Any] = {"num_predict": r.max_new_tokens, "temperature": r.temperature,
                                   "top_p": r.top_p, "stop": r.stop_texts, "top_k": 0,
                                   "repeat_penalty": 1.0}
        if r.temperature <= 0:
            options["top_k"] = 1
        return {"model": r.model, "prompt": r.text, "raw": True, "stream": True,
                "options": options}

    def parse(self, event: dict[str, Any]) -> Chunk:
        chunk = Chunk(text=event.get("response") or "", served=event.get("model"))
        if event.get("done"):
            chunk.finish = event.get("done_reason") or "stop"
        return chunk

    def models_path(self) -> str | None:
        return "/api/tags"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        return [(str(m.get("name", "")), None) for m in answer.get("models", [])]


DIALECTS: dict[str, type] = {"openai": OpenAI, "llamacpp": LlamaCpp, "tgi": TGI,
                             "ollama": Ollama}


@dataclass(frozen=True)
class Endpoint:
    """A base URL split once: where to connect and what to put before each API path."""

    scheme: str
    host: str
    port: int
    base: str  # path prefix without a trailing slash ("/v1" for OpenAI clients' URLs)

    @classmethod
    def parse(cls, url: str, engine: str) -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FimError(ErrorKind.CONFIG, f"endpoint must be an http:// or https:// URL "
                           f"with a host, as the {engine} engine's clients take it")
        if parts.username or parts.password:
            raise FimError(ErrorKind.CONFIG, "endpoint must not carry credentials: name the "
                           "environment variable that holds the key in apiKeyEnv")
        base = parts.path.rstrip("/")
        if engine == "openai" and not base:
            base = "/v1"  # the API's own prefix, for a URL pasted without it
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FimError(ErrorKind.CONFIG, "endpoint has an invalid port") from None
        return cls(parts.scheme, parts.hostname, port, base)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.base}"


@dataclass
class Health:
    """Whether the engine answered last time, for `fimlsp.stats` and the editors' status."""

    ok: bool = True
    reason: str = ""
    since: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def up(self) -> bool:
        """Marks it reachable; True when that is news (it was down)."""
        with self._lock:
            changed = not self.ok
            if changed:
                self.ok, self.reason, self.since = True, "", time.time()
            return changed

    def down(self, reason: str) -> bool:
        """Marks it unreachable; True when that is news."""
        with self._lock:
            changed = self.ok or reason != self.reason
            if self.ok:
                self.since = time.time()
            self.ok, self.reason = False, reason
            return changed

    @property
    def status(self) -> str:
        return "ok" if self.ok else f"unreachable: {self.reason}"


class Stream:
    """One streamed answer; `close` (from any thread) ends it and the engine's work on it."""

    def __init__(self, connection: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, lines: str) -> None:
        self.connection = connection
        self.response = response
        self.lines = lines
        self._closed = False

    def events(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                raw = self.response.readline(MAX_LINE)
            except (OSError, http.client.HTTPException, ValueError) as error:
                if self._closed:
                    return
                raise Unreachable(f"the stream broke ({type(error).__name__})") from None
            if not raw:
                return
            line = raw.decode("utf-8", "replace").strip()
            if self.lines == "sse":
                if line.startswith("error:"):  # llama.cpp's field for a failure mid-stream
                    yield {"error": _json_or_text(line[6:].strip())}
                    continue
                if not line.startswith("data:"):
                    continue  # comments, `event:` lines, the blank line between events
                line = line[5:].strip()
                if line == "[DONE]":
                    return
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                raise FimError(ErrorKind.ENGINE_UNAVAILABLE,
                               "the engine streamed something that is not JSON") from None
            if isinstance(event, dict):
                yield event

    def interrupt(self) -> None:
        """Shuts the socket down, from any thread: a blocked read returns, the engine sees the
        client go. Only the socket: `http.client` objects are not thread-safe, and closing the
        connection under a read in another thread breaks that read with an AttributeError."""
        self._closed = True
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Ends the stream; on the thread that reads it."""
        self.interrupt()
        self.connection.close()


class _Watch:
    """Ends a request's blocking waits when it should stop (a newer keystroke, the time
    budget): shuts its socket down from this thread, so a read blocked on the answer's headers
    or on its next token returns, and the engine sees the client go. Only the socket:
    `http.client` objects are not thread-safe."""

    def __init__(self, should_stop: StopCheck) -> None:
        self.should_stop = should_stop
        self.done = threading.Event()  # the request is over (or the watch was told so)
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._stream: Stream | None = None
        self._stopped = False

    def attach(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self._stopped:
                self._shut(connection)

    def attach_stream(self, stream: Stream) -> None:
        with self._lock:
            self._stream = stream
            if self._stopped:
                stream.interrupt()

    def run(self) -> None:
        while not self.done.wait(WATCH_S):
            if self.should_stop():
                with self._lock:
                    self._stopped = True
                    if self._stream is not None:
                        self._stream.interrupt()
                    elif self._connection is not None:
                        self._shut(self._connection)
                self.done.set()  # also cuts a backoff between attempts short
                return

    @staticmethod
    def _shut(connection: http.client.HTTPConnection) -> None:
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Client:
    """HTTP to one endpoint: connect, POST a JSON body, hand back the stream."""

    def __init__(self, endpoint: Endpoint, api_key: str | None, connect_timeout_s: float,
                 verify_tls: bool) -> None:
        self.endpoint = endpoint
        self._api_key = api_key
        self.connect_timeout_s = connect_timeout_s
        self._context = None
        if endpoint.scheme == "https":
            # The system's CAs (SSL_CERT_FILE / SSL_CERT_DIR are honoured by OpenSSL).
            self._context = ssl.create_default_context()
            if not verify_tls:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    def _connection(self, connect_timeout_s: float) -> http.client.HTTPConnection:
        e = self.endpoint
        if e.scheme == "https":
            return http.client.HTTPSConnection(e.host, e.port, timeout=connect_timeout_s,
                                               context=self._context)
        return http.client.HTTPConnection(e.host, e.port, timeout=connect_timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, "
                   "application/x-ndjson, application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def open(self, method: str, path: str, body: dict[str, Any] | None,
             read_timeout_s: float | None, connect_timeout_s: float | None = None,
             connected: Callable[[http.client.HTTPConnection], None] | None = None
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends the request; Unreachable for anything that means nobody answered.
        `connected` gets the connection once its socket exists, before the request is sent:
        a watcher can then end the wait for the answer's headers, not only for its body."""
        connect_s = self.connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        connection = self._connection(max(0.001, connect_s))
        data = json.dumps(body).encode() if body is not None else None
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(read_timeout_s)
            if connected is not None:
                connected(connection)
            connection.request(method, self.endpoint.base + path, body=data,
                               headers=self._headers())
            response = connection.getresponse()
        except ssl.SSLError as error:
            connection.close()
            raise FimError(ErrorKind.ENGINE_UNAVAILABLE, f"TLS with the endpoint failed "
                           f"({error.reason or type(error).__name__}); tlsVerify is on") from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise Unreachable(_reason(error)) from None
        if response.status == 503:  # loading or overloaded: try again, like a refused connection
            connection.close()
            raise Unreachable("the engine answered 503 (loading or overloaded)")
        if response.status >= 400:
            detail = _error_detail(response)
            connection.close()
            raise FimError(ErrorKind.ENGINE_UNAVAILABLE,
                           f"the engine answered {response.status}{detail}")
        return connection, response

    def get_json(self, path: str, timeout_s: float) -> Any:
        connection, response = self.open("GET", path, None, timeout_s)
        try:
            return json.loads(response.read(MAX_LINE * 8))
        except (OSError, ValueError, http.client.HTTPException):
            raise Unreachable(f"GET {path} gave no JSON") from None
        finally:
            connection.close()


def _json_or_text(text: str) -> Any:
    """An error payload as the engine wrote it: JSON when it is, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _reason(error: BaseException) -> str:
    """A short, credential-free reason for status lines."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(error, socket.gaierror):
        return "host not found"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return type(error).__name__


def _error_detail(response: http.client.HTTPResponse) -> str:
    """The engine's own message for a refused request (bad model name, prompt too long)."""
    try:
        answer = json.loads(response.read(65536) or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return ""
    text = _error_text(answer) if isinstance(answer, dict) else None
    if not text and isinstance(answer, dict):
        text = answer.get("detail") or answer.get("message")
    return f": {str(text)[:300]}" if text else ""


def api_key(settings: Settings, endpoint: Endpoint | None = None) -> str | None:
    """The key from the environment variable `apiKeyEnv` names; never from settings
    themselves, so it is never in a config file, a log line or an echoed option. Neither the
    key nor the name is repeated in a message: a key pasted where the name goes would be.

    A key for a plain `http://` endpoint on another host would cross the network readable:
    refused unless `apiKeyOverHttp` says so (a workspace's settings must not be able to send
    an unrelated secret of the environment to a host of its choosing)."""
    name = settings.api_key_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise FimError(ErrorKind.CONFIG, "the environment variable that apiKeyEnv names is not "
                       "set in the server's environment")
    if endpoint is not None and endpoint.scheme == "http" and not is_loopback(endpoint.host) \
            and not settings.api_key_over_http:
        raise FimError(ErrorKind.CONFIG, f"not sending the API key to {endpoint.host} over "
                       "plain http://, where anyone on the way can read it: use an https:// "
                       "endpoint, or set apiKeyOverHttp to allow it")
    return value


def is_loopback(host: str) -> bool:
    """This machine by name or address (no name is looked up: `localhost` only)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RemoteEngine:
    """The engine interface over one endpoint. Thread-safe: requests for different documents
    run at once (the engine batches them), each on its own connection."""

    def __init__(self, settings: Settings, tokenizer: Tokenizer, stop_texts: list[str]) -> None:
        kind = settings.engine
        if kind not in DIALECTS:
            raise FimError(ErrorKind.CONFIG, f"engine '{kind}' is not a remote engine")
        self.kind = kind
        self.dialect: Dialect = DIALECTS[kind]()
        self.endpoint = Endpoint.parse(settings.endpoint or DEFAULT_ENDPOINTS[kind], kind)
        self.client = Client(self.endpoint, api_key(settings, self.endpoint),
                             settings.connect_timeout_ms / 1000, settings.tls_verify)
        self.tokenizer = tokenizer
        self.stop_texts = stop_texts
        self.retries = settings.retries
        self.served_model = settings.served_model
        self.max_context: int | None = None  # the engine's own limit, when it says
        self.health = Health()
        self._slots: OrderedDict[str, int] = OrderedDict()  # llama.cpp: document → slot
        self.slot_count = 0
        self._lock = threading.Lock()
        self.model: Any = None  # no torch module here; the completer asks for one's config
        self.probed = False  # the endpoint has said what it serves
        self.learned: Callable[[], None] | None = None  # told when a probe has answered
        self._stop_probing = threading.Event()

    def __del__(self) -> None:
        self._stop_probing.set()

    # -- what the endpoint serves ------------------------------------------------------------

    def probe(self) -> bool:
        """Asks the endpoint what it serves: the model name to send and its context limit.
        Down is not an error here: the status says so, requests try again, and `keep_probing`
        asks again until it answers. True when it answered."""
        path = self.dialect.models_path()
        if path is None:
            return True
        try:
            answer = self.client.get_json(path, self.client.connect_timeout_s)
        except Unreachable as error:
            self._down(str(error))
            return False
        except FimError as error:
            self._down(error.message)
            return False
        self._up()
        self._learn(answer)
        self.probed = True
        if self.learned is not None:
            self.learned()
        return True

    def keep_probing(self, first_wait_s: float = PROBE_BACKOFF_S) -> None:
        """Probes again in the background, with backoff, until the endpoint answers: an engine
        that was down when the server started is then learned (the model name an Ollama needs,
        the window a smaller engine serves). The thread holds the engine weakly and ends once
        nothing else holds it (the settings changed, a new engine took its place)."""
        if self.probed:
            return
        reference = weakref.ref(self)
        stop = self._stop_probing

        def run() -> None:
            wait = first_wait_s
            while not stop.wait(wait):
                engine = reference()
                if engine is None or engine.probed or engine.probe():
                    return
                del engine
                wait = min(wait * 2, PROBE_MAX_WAIT_S)

        threading.Thread(target=run, daemon=True, name="fimlsp-remote-probe").start()

    def _learn(self, answer: Any) -> None:
        """What a probe's answer says: the model name to send, the window, llama.cpp's slots."""
        models = self.dialect.models(answer) if isinstance(answer, dict) else []
        if self.kind == "llamacpp":
            self.slot_count = int(answer.get("total_slots") or 0)
        if not self.served_model and len(models) == 1 and self.kind in ("openai", "ollama"):
            self.served_model = models[0][0]  # the only one it serves: no name to configure
        for name, limit in models:
            if limit and (not self.served_model or name == self.served_model
                          or self.kind in ("llamacpp", "tgi")):
                self.max_context = int(limit)

    def describe(self) -> dict[str, str]:
        # `device` is what every editor's status line shows: it says when the endpoint is down.
        where = f"{self.kind} at {self.endpoint}"
        if not self.health.ok:
            where += f" ({self.health.status})"
        return {"device": where, "dtype": "remote",
                "quantization": "remote", "forward": "remote", "engine": self.kind,
                "endpoint": str(self.endpoint), "endpoint_status": self.health.status}

    # -- sessions: the engine keeps the caches; we keep only llama.cpp's slot per document ----

    def _slot(self, key: str) -> int | None:
        if self.kind != "llamacpp" or self.slot_count <= 0:
            return None
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                used = set(self._slots.values())
                free = [s for s in range(self.slot_count) if s not in used]
                slot = free[0] if free else self._slots.popitem(last=False)[1]
            self._slots[key] = slot  # most recently used last
            return slot

    def drop_session(self, key: str) -> None:
        with self._lock:
            self._slots.pop(key, None)

    @property
    def session_count(self) -> int:
        return len(self._slots)

    # -- one request ---------------------------------------------------------------------------

    def prefill(self, key: str, prompt: list[int], should_stop: StopCheck = lambda: None
                ) -> Generation:
        """A warm start: one token asked for, so the engine's prefix cache holds the prompt."""
        return self.generate(key, prompt, max_new_tokens=1, stop_ids=set(),
                             should_stop=should_stop)

    def generate(self, key: str, prompt: list[int], *, max_new_tokens: int,
                 stop_ids: set[int], should_stop: StopCheck = lambda: None,
                 temperature: float = 0.0, top_p: float = 1.0,
                 on_token: TokenCallback | None = None) -> Generation:
        """The engine's continuation of `prompt`, stopped exactly where `LocalEngine` would."""
        if not prompt:
            raise ValueError("empty prompt")
        request = Request(prompt, "" if self.dialect.takes_ids else
                          self.tokenizer.decode(prompt, skip_special_tokens=False),
                          max_new_tokens, temperature, top_p, sorted(stop_ids),
                          self.stop_texts, self.served_model, self._slot(key))
        result = Generation(prompt_tokens=len(prompt))
        started = time.perf_counter()
        # Watched from before the request is sent: a newer keystroke or the time budget ends
        # the wait for the answer's headers as well as for its tokens (an engine that accepts
        # and never answers must not hold the request).
        watch = _Watch(should_stop)
        watcher = threading.Thread(target=watch.run, daemon=True, name="fimlsp-remote-watch")
        watcher.start()
        stream = None
        try:
            stream = self._open(request, should_stop, watch)
            if stream is None:
                result.stop_reason = should_stop() or "cancelled"
                return result
            result.stop_reason = self._read(stream, result, started, max_new_tokens, stop_ids,
                                            should_stop, on_token)
        finally:
            watch.done.set()
            watcher.join()  # it may be interrupting the stream right now: let it finish first
            if stream is not None:
                stream.close()  # early stop: the engine sees the client go and aborts
        return result

    def _open(self, request: Request, should_stop: StopCheck, watch: _Watch) -> Stream | None:
        """Connects, retrying connection errors only (with backoff); None if told to stop.
        The connect waits `connectTimeoutMs` at most, and never past the time budget."""
        wait = BACKOFF_S
        remaining = getattr(should_stop, "remaining_s", None)
        for attempt in range(self.retries + 1):
            if should_stop():
                return None
            left = remaining() if callable(remaining) else None
            connect_s = self.client.connect_timeout_s if left is None else \
                min(self.client.connect_timeout_s, left)
            try:
                connection, response = self.client.open(
                    "POST", self.dialect.path(), self.dialect.body(request), None, connect_s,
                    watch.attach)
            except Unreachable as error:
                if should_stop():  # the watcher ended the wait: not the engine's failure
                    return None
                self._down(str(error))
                if attempt == self.retries:
                    raise FimError(ErrorKind.ENGINE_UNAVAILABLE,
                                   f"{self.kind} endpoint {self.endpoint} is unreachable "
                                   f"({error})") from None
                left = remaining() if callable(remaining) else None
                time.sleep(wait if left is None else min(wait, left))  # never past the budget
                if should_stop():
                    return None
                wait *= 2
                continue
            self._up()
            stream = Stream(connection, response, self.dialect.lines)
            watch.attach_stream(stream)
            return stream
        return None

    def _read(self, stream: Stream, result: Generation, started: float, max_new_tokens: int,
              stop_ids: set[int], should_stop: StopCheck, on_token: TokenCallback | None) -> str:
        """Feeds streamed tokens through the same checks, in the same order, as local decoding;
        returns why it stopped. prefill_ms is the time to the first token."""
        out = result.ids
        first: float | None = None

        emit = TokenChecks(out, stop_ids, max_new_tokens, should_stop, on_token).emit

        def finish(reason: str) -> str:
            now = time.perf_counter()
            result.prefill_ms = ((first or now) - started) * 1000
            result.decode_ms = (now - first) * 1000 if first is not None else 0.0
            result.decode_forwards = max(0, len(out) - 1)
            return reason

        finished: str | None = None
        for event in stream.events():
            error = _error_text(event)
            if error:
                raise FimError(ErrorKind.ENGINE_UNAVAILABLE, f"the engine failed: {error[:300]}")
            chunk = self.dialect.parse(event)
            if chunk.cached is not None:
                result.reused_tokens = min(chunk.cached, len(result.ids) + result.prompt_tokens)
            ids = chunk.ids if chunk.ids is not None else (
                self.tokenizer.encode(chunk.text, add_special_tokens=False).ids
                if chunk.text else [])
            if ids and first is None:
                first = time.perf_counter()
            for token in ids:
                reason = emit(token)
                if reason:
                    return finish(reason)
            if chunk.finish:
                finished = chunk.finish
                if self.dialect.lines == "ndjson":
                    break
            reason = should_stop()
            if reason:
                return finish(reason)
        reason = should_stop()
        if reason:  # closed by the watcher
            return finish(reason)
        if finished is None:
            raise FimError(ErrorKind.ENGINE_UNAVAILABLE, "the engine's stream ended early")
        return finish("max_tokens" if finished in ("length", "limit") else "eos")

    # -- status --------------------------------------------------------------------------------

    def _down(self, reason: str) -> None:
        if self.health.down(reason):
            log.warning("%s endpoint %s unreachable (%s): requests get no suggestion until it "
                        "answers again", self.kind, self.endpoint, reason)

    def _up(self) -> None:
        if self.health.up():
            log.warning("%s endpoint %s answers again", self.kind, self.endpoint)
