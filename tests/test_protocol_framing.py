"""Framing: broken or unusual frames, each followed by a valid request that must be answered.

The decoder is checked on its own (bytes in, events out, no process), then the real server on
stdio: one server takes every case in turn, so each case also proves that the one before it
left the reader in sync. Where the frame itself deserves an answer without an id (-32700 for a
body that is not JSON, -32600 for a refused length) the test counts those too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from rawlsp import RawServer, encode, frame, request

from fimlsp.lsp.framing import (
    MAX_MESSAGE_BYTES,
    FrameDecoder,
    Message,
    Skipped,
    TooLarge,
    Unparsable,
)

STATS = {"command": "fimlsp.stats"}


def body(msg_id: object) -> bytes:
    return json.dumps(request(msg_id, "workspace/executeCommand", STATS)).encode()


def decode(data: bytes, chunk: int | None = None) -> list[object]:
    """All events for `data`, fed whole or in pieces of `chunk` bytes."""
    decoder = FrameDecoder()
    step = chunk or len(data) or 1
    events: list[object] = []
    for at in range(0, len(data), step):
        events += decoder.feed(data[at:at + step])
    assert decoder.finish() is None
    return events


def messages(events: list[object]) -> list[object]:
    return [e.value for e in events if isinstance(e, Message)]


# -- the decoder alone --------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_decoder_reads_frames_split_anywhere(chunk: int | None) -> None:
    data = encode({"a": 1}) + encode({"b": "é😀"}) + encode([1, 2])
    assert messages(decode(data, chunk)) == [{"a": 1}, {"b": "é😀"}, [1, 2]]


def test_decoder_recovers_the_frame_a_too_long_length_swallowed() -> None:
    first, second = b'{"a":1}', encode({"b": 2})
    data = b"Content-Length: %d\r\n\r\n" % (len(first) + 10) + first + second + encode({"c": 3})
    events = decode(data)
    assert isinstance(events[0], Unparsable), events
    assert messages(events) == [{"b": 2}, {"c": 3}]


def test_decoder_skips_an_absurd_length_without_reading_it() -> None:
    data = b"Content-Length: 99999999999\r\n\r\n" + b'{"x":1}' + encode({"ok": 1})
    events = decode(data)
    assert events[0] == TooLarge(99999999999)
    assert any(isinstance(e, Skipped) for e in events)
    assert messages(events) == [{"ok": 1}]
    assert MAX_MESSAGE_BYTES < 99999999999


def test_decoder_drops_long_garbage_in_bounded_memory() -> None:
    decoder = FrameDecoder()
    for _ in range(64):
        decoder.feed(b"x" * 65536)
        assert len(decoder._buf) < 70_000
    events = decoder.feed(encode({"ok": 1}))
    assert messages(events) == [{"ok": 1}]


def test_decoder_reports_the_input_ending_inside_a_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"Content-Length: 10\r\n\r\n{")
    truncated = decoder.finish()
    assert truncated is not None and "1 of the 10" in truncated.reason
    decoder = FrameDecoder()
    decoder.feed(b"Content-Length: 10\r\n")
    assert decoder.finish() is not None


# -- the real server -------------------------------------------------------------------------


def _cases() -> list[tuple[str, bytes, int, int]]:
    """(name, bytes before the valid request, -32700 answers expected, -32600 answers expected).
    Ids: "lead" marks a request inside the broken part that may or may not be answered; the
    valid request that follows always has its own id."""
    lead = body("lead")
    n = len(lead)
    return [
        ("Content-Length too short", b"Content-Length: 10\r\n\r\n" + lead, 1, 0),
        ("Content-Length too long", b"Content-Length: %d\r\n\r\n" % (n + 25) + lead, 1, 0),
        ("Content-Length zero", b"Content-Length: 0\r\n\r\n", 1, 0),
        ("Content-Length absurd", b"Content-Length: 99999999999\r\n\r\n" + lead, 0, 1),
        ("Content-Length not a number", b"Content-Length: -5\r\n\r\n" + lead, 0, 0),
        ("headers without Content-Length", b"Content-Type: text/x\r\n\r\n" + lead, 0, 0),
        ("a garbage line", b"hello, server\r\n", 0, 0),
        ("garbage glued to the header", b"\x00\x01 not LSP ", 0, 0),
        ("a megabyte without a newline", b"x" * (1 << 20), 0, 0),
        ("blank lines between frames", b"\r\n\n\r\n", 0, 0),
        ("a body that is not UTF-8", frame(b'{"a":"\xff\xfe"}'), 1, 0),
        ("a body with NaN", frame(b'{"jsonrpc":"2.0","id":"nan","method":"x","params":NaN}'), 1, 0),
    ]


# Header variants a lenient reader accepts: the request in them is answered itself.
_LENIENT = [
    ("lower-case header name", b"content-length: %d\r\n\r\n"),
    ("no space after the colon", b"Content-Length:%d\r\n\r\n"),
    ("LF-only header lines", b"Content-Length: %d\n\n"),
    ("spaces and tabs around the value", b"Content-Length :\t %d \r\n\r\n"),
    ("upper case with a Content-Type", b"CONTENT-LENGTH: %d\r\ncontent-type: "
     b"application/vscode-jsonrpc; charset=utf8\r\n\r\n"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with RawServer() as raw:
        raw.initialize()
        yield raw


def _null_id_errors(server: RawServer) -> list[int]:
    return [m["error"]["code"] for m in server.responses() if m.get("id") is None]


@pytest.mark.parametrize(("name", "broken", "parse_errors", "invalid"), _cases(),
                         ids=[c[0] for c in _cases()])
def test_server_resynchronises_after_a_broken_frame(server: RawServer, name: str, broken: bytes,
                                                   parse_errors: int, invalid: int) -> None:
    before = len(_null_id_errors(server))
    server.write(broken + frame(body(name)))
    answer = server.response(name)
    assert "result" in answer, answer
    new = _null_id_errors(server)[before:]
    assert sorted(new) == sorted([-32700] * parse_errors + [-32600] * invalid), new
    assert not server.garbage


@pytest.mark.parametrize(("name", "header"), _LENIENT, ids=[c[0] for c in _LENIENT])
def test_server_accepts_header_variants(server: RawServer, name: str, header: bytes) -> None:
    payload = body(name)
    server.write(header % len(payload) + payload)
    assert "result" in server.response(name)


def test_no_error_popups_for_broken_frames(server: RawServer) -> None:
    server.write(b"Content-Length: 3\r\n\r\n{{{" + frame(body("after popups")))
    server.response("after popups")
    shown = [m for m in server.received if m.get("method") == "window/showMessage"]
    assert not [m for m in shown if m["params"]["type"] == 1], shown


@pytest.mark.parametrize(("tail", "says"), [
    (b"Content-Length: 100\r\n\r\n{\"jsonrpc\"", "ended after"),
    (b"Content-Length: 100\r\n", "inside a message header"),
], ids=["inside a body", "inside the headers"])
def test_input_ending_inside_a_frame_exits_non_zero_with_a_message(tail: bytes, says: str
                                                                   ) -> None:
    with RawServer() as raw:
        raw.initialize()
        raw.write(tail)
        raw.close_stdin()
        assert raw.wait_exit() == 1, raw.tail()
        assert says in raw.tail()
