"""HTTP to one serving engine, over `http.client`: a POST whose answer is read line by line
(SSE or NDJSON), and a way to stop it from another thread while a read blocks.

Why `http.client` and not a client package: remote/__init__.py has the measurement.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fimlsp.engine import StopCheck
from fimlsp.engine.remote.dialects import error_text
from fimlsp.errors import ErrorKind, FimError

log = logging.getLogger(__name__)

WATCH_S = 0.02  # how often a blocked read checks whether its request should stop
MAX_LINE = 1 << 20  # an event line longer than this is not from a completion API


class Unreachable(Exception):
    """The engine could not be reached, or dropped the connection before answering: retried."""


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
    """Whether the engine answered last time, for `fimlsp.stats` and the editors' status; each
    change is logged once, not each failed request."""

    where: str = "the endpoint"  # "llamacpp endpoint http://…", for the log
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

    def answered(self) -> None:
        if self.up():
            log.warning("%s answers again", self.where)

    def failed(self, reason: str) -> None:
        if self.down(reason):
            log.warning("%s unreachable (%s): requests get no suggestion until it answers again",
                        self.where, reason)

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


class Watch:
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
    text = error_text(answer) if isinstance(answer, dict) else None
    if not text and isinstance(answer, dict):
        text = answer.get("detail") or answer.get("message")
    return f": {str(text)[:300]}" if text else ""
