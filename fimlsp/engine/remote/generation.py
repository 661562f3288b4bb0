"""One generation on a serving engine, from the request to the last token read: connect (retrying
what means nobody answered, with backoff, never past the time budget), stream, and stop exactly
where `LocalEngine` would, through the same per-token checks.

Apart from `RemoteEngine`, which knows what the endpoint serves and which document is where;
this knows only how one request goes, and tells the engine's `Health` what it saw.
"""

from __future__ import annotations

import threading
import time

from tokenizers import Tokenizer

from fimlsp.engine import Generation, StopCheck, TokenCallback, TokenChecks
from fimlsp.engine.remote.client import Client, Health, Stream, Unreachable, Watch
from fimlsp.engine.remote.dialects import Dialect, Request, error_text
from fimlsp.errors import ErrorKind, FimError

BACKOFF_S = 0.2  # first wait between attempts after a connection error; doubles each time


class Requests:
    """Sends requests to one endpoint and reads their answers; holds nothing between them, so
    requests for different documents run at once, each on its own connection."""

    def __init__(self, client: Client, dialect: Dialect, tokenizer: Tokenizer, retries: int,
                 health: Health) -> None:
        self.client = client
        self.dialect = dialect
        self.tokenizer = tokenizer
        self.retries = retries
        self.health = health  # told whether the endpoint answered (the engine's, shared)

    def run(self, request: Request, *, max_new_tokens: int, stop_ids: set[int],
            should_stop: StopCheck, on_token: TokenCallback | None) -> Generation:
        """The engine's continuation of `request.ids`; closes the stream on any stop."""
        result = Generation(prompt_tokens=len(request.ids))
        started = time.perf_counter()
        # Watched from before the request is sent: a newer keystroke or the time budget ends
        # the wait for the answer's headers as well as for its tokens (an engine that accepts
        # and never answers must not hold the request).
        watch = Watch(should_stop)
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

    def _open(self, request: Request, should_stop: StopCheck, watch: Watch) -> Stream | None:
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
                self.health.failed(str(error))
                if attempt == self.retries:
                    raise FimError(ErrorKind.ENGINE_UNAVAILABLE,
                                   f"{self.health.where} is unreachable ({error})") from None
                left = remaining() if callable(remaining) else None
                time.sleep(wait if left is None else min(wait, left))  # never past the budget
                if should_stop():
                    return None
                wait *= 2
                continue
            self.health.answered()
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
            error = error_text(event)
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
