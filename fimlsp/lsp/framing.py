"""LSP base-protocol framing: `Content-Length` headers, a blank line, a JSON body.

Why our own reader instead of pygls's (2.1.1, `pygls.io_.run_async`): pygls matches exactly
`Content-Length: N\\r\\n` and otherwise throws the line away, so a lower-case header, a missing
space, LF-only lines or one frame whose length is too short leave it skipping every header that
follows: the process lives on, answers nothing and logs nothing. An absurd length
(`Content-Length: 99999999999`) makes its `read(n)` raise out of the loop, and the process ended
with exit code 0 and nothing on stderr.

`FrameDecoder` is sans-IO: bytes in, events out, so the same decoder serves stdin (a thread
feeding it) and any other byte stream, and the tests drive it without a process. It is lenient
about what editors and hand-written clients really send (header names in any case, optional
spaces, `\\n` or `\\r\\n`, blank lines between frames) and strict about what it cannot trust:

- a line that is no header is skipped, but a header *at the end* of it is kept: that is where
  the next frame starts after a body that was shorter than its `Content-Length` said;
- a body that is not JSON is reported (the server answers -32700), and when a `Content-Length:`
  header appears inside it (the previous frame's length was too long and swallowed the next
  frame's start) the bytes from there are read again as headers, so that next frame survives;
- a `Content-Length` above `MAX_MESSAGE_BYTES` is refused without reading the body; its bytes are
  then skipped like any other non-header line until the next header;
- the end of the stream in the middle of a frame is reported as such, so the server can exit
  non-zero with a message instead of pretending all was well.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# 128 MiB: a 48 MB source file sent in a didOpen grows with JSON escapes (\n, \", \t, and \uXXXX
# for non-ASCII with ensure_ascii) and still fits; anything larger is refused, not buffered.
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
# No real header line is this long; a longer run without a newline is body bytes or garbage.
MAX_HEADER_LINE = 8 * 1024
# Kept from a dropped over-long line: enough to hold the start of a header split across reads.
_TAIL = 64

_HEADER = re.compile(rb"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*(.*?)[ \t]*")
_LENGTH = b"content-length"
_TYPE = b"content-type"
_MARKER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)


@dataclass(frozen=True)
class Message:
    """A complete frame whose body is JSON (any JSON value: checking its shape is the server's)."""

    value: Any


@dataclass(frozen=True)
class Unparsable:
    """A complete frame whose body is not UTF-8 JSON; the server answers -32700 with id null."""

    reason: str


@dataclass(frozen=True)
class TooLarge:
    """A frame whose Content-Length is over the limit; its body is skipped, never buffered."""

    length: int


@dataclass(frozen=True)
class Skipped:
    """Bytes that were not part of any frame, dropped while looking for the next header."""

    size: int
    reason: str


@dataclass(frozen=True)
class Truncated:
    """The stream ended inside a frame."""

    reason: str


Event = Message | Unparsable | TooLarge | Skipped


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> Message | Unparsable:
    """Strict JSON: UTF-8 only (json.loads would sniff UTF-16/32 from bytes), no NaN/Infinity."""
    try:
        return Message(json.loads(body.decode("utf-8"), parse_constant=_reject_constant))
    except UnicodeDecodeError as error:
        return Unparsable(f"the body is not UTF-8 (byte {error.start})")
    except json.JSONDecodeError as error:
        return Unparsable(f"invalid JSON: {error.msg} at byte {error.pos}")
    except RecursionError:
        return Unparsable("invalid JSON: nested too deeply")
    except ValueError as error:  # NaN/Infinity, integers of more than 4300 digits
        return Unparsable(f"invalid JSON: {str(error)[:120]}")


class FrameDecoder:
    """Turns a byte stream into frames; see the module docstring for the recovery rules."""

    def __init__(self, max_body: int = MAX_MESSAGE_BYTES) -> None:
        self.max_body = max_body
        self._buf = bytearray()
        self._body: int | None = None  # body bytes wanted; None while reading headers
        self._length: int | None = None  # Content-Length of the header block being read
        self._headers = 0  # header lines in the block being read
        self._problem = ""  # why the block being read cannot be used, if it cannot
        self._skipped = 0  # bytes dropped since the last frame
        self._skip_reason = ""

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            if self._body is not None:
                if len(self._buf) < self._body:
                    break
                body = bytes(self._buf[:self._body])
                del self._buf[:self._body]
                self._body = None
                events.append(self._parse(body))
                continue
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_LINE:
                    drop = len(self._buf) - _TAIL
                    del self._buf[:drop]
                    self._skip(drop, "a line too long to be a header")
                    self._reset()
                break
            line = bytes(self._buf[:end + 1])
            del self._buf[:end + 1]
            self._line(line, events)
        return events

    def finish(self) -> Truncated | None:
        """At the end of the stream: what was left unfinished, if anything."""
        if self._body is not None:
            return Truncated(f"the input ended after {len(self._buf)} of the {self._body} body "
                             "bytes its Content-Length announced")
        if self._headers or self._buf.strip():
            return Truncated("the input ended inside a message header")
        return None

    # -- internals ----------------------------------------------------------------------------

    def _reset(self) -> None:
        self._length, self._headers, self._problem = None, 0, ""

    def _skip(self, size: int, reason: str) -> None:
        if not self._skipped:
            self._skip_reason = reason
        self._skipped += size

    def _flush_skipped(self, events: list[Event]) -> None:
        if self._skipped:
            events.append(Skipped(self._skipped, self._skip_reason))
            self._skipped, self._skip_reason = 0, ""

    def _line(self, line: bytes, events: list[Event]) -> None:
        text = line.rstrip(b"\r\n")
        if not text.strip():
            self._blank(len(line), events)
            return
        match = _HEADER.fullmatch(text)
        if match is None or match.group(1).lower() not in (_LENGTH, _TYPE):
            # Garbage, or garbage glued to a header ("xyzContent-Length: 5" even parses as a
            # header named "xyzContent-Length"): the header at its end starts the next frame.
            start = _trailing_header(text)
            if start is not None:
                self._skip(start, "bytes before a header")
                self._reset()
                match = _HEADER.fullmatch(text[start:])
            elif match is None:
                self._skip(len(line), self._problem or "a line that is not a header")
                self._reset()
                return
            assert match is not None
        self._flush_skipped(events)
        self._headers += 1
        name, value = match.group(1).lower(), match.group(2)
        if name == _LENGTH:
            if value.isdigit() and len(value) <= 20:  # bytes.isdigit: ASCII digits only
                self._length = int(value)
            else:
                self._length, self._problem = None, "a header block with an invalid Content-Length"
        # Content-Type and unknown headers are accepted and ignored: LSP bodies are UTF-8 JSON.

    def _blank(self, size: int, events: list[Event]) -> None:
        if self._length is not None:
            length = self._length
            self._reset()
            if length > self.max_body:
                events.append(TooLarge(length))
                # The body is not read: its bytes are skipped like any non-header line.
            else:
                self._body = length
        elif self._headers:
            self._skip(size, self._problem or "a header block without Content-Length")
            self._reset()
        # else: a blank line between frames, harmless

    def _parse(self, body: bytes) -> Message | Unparsable:
        event = parse_body(body)
        if isinstance(event, Unparsable):
            # A too-long Content-Length swallowed the start of the next frame: read it again
            # from its header, or from the part of a header the body ends with.
            marker = _MARKER.search(body, 1)
            start = marker.start() if marker is not None else _partial_header_at_end(body)
            if start is not None:
                self._buf[:0] = body[start:]
        return event


def _partial_header_at_end(body: bytes) -> int | None:
    """Where the body ends with the first bytes of "content-length:" (any case), if it does."""
    marker = _LENGTH + b":"
    tail = body[-len(marker):].lower()
    for size in range(min(len(tail), len(marker)), 0, -1):
        if tail.endswith(marker[:size]) and size < len(body):
            return len(body) - size
    return None


def _trailing_header(text: bytes) -> int | None:
    """Where a Content-Length (else Content-Type) header starts at the end of a garbage line."""
    low = text.lower()
    for name in (_LENGTH, _TYPE):
        at = low.rfind(name)
        while at > 0:
            if _HEADER.fullmatch(text[at:]):
                return at
            at = low.rfind(name, 0, at)
    return None


CONTENT_TYPE = "application/vscode-jsonrpc; charset=utf-8"


def encode(body: str) -> bytes:
    """One frame around a JSON body: what every writer to the client sends."""
    payload = body.encode("utf-8")
    return (f"Content-Length: {len(payload)}\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n"
            .encode("ascii") + payload)
