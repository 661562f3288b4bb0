"""pygls's private API as fimlsp uses it (fimlsp/lsp/pygls_seam.py): each test names the
internal it checks, so an upgrade of pygls that changes one fails here, by name, rather than as
a lost answer somewhere in the protocol tests."""

from __future__ import annotations

import contextvars
import inspect
import io
import json
import tokenize
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcMethodNotFound
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol

from fimlsp.lsp.protocol import FimProtocol
from fimlsp.lsp.sync import DocumentSync
from fimlsp.validation import strict_converter

PACKAGE = Path(__file__).resolve().parent.parent / "fimlsp"
SEAM = PACKAGE / "lsp" / "pygls_seam.py"

# The private names pygls 2.1.1 has on its protocol and server classes that fimlsp used at some
# point, or might reach for: only the seam may name them.
PRIVATE = {
    "_shutdown", "_converter", "_request_futures", "_get_handler", "_ctx_msg_id",
    "_execute_handler", "_result_types", "_handle_response", "_serialize_message",
    "_handle_cancel_notification", "_send_handler_result", "_check_handler_result",
    "_send_response", "_send_data", "_report_server_error", "_run_generator",
    "_register_builtin_features", "_include_headers", "_handle_request", "_handle_notification",
    "_workspace",
}


def plain_server() -> LanguageServer:
    return LanguageServer("pygls-internals", "0")


def fim_server() -> LanguageServer:
    return LanguageServer("pygls-internals", "0", protocol_cls=FimProtocol,
                          converter_factory=strict_converter)


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def messages(self) -> list[dict[str, Any]]:
        out = []
        rest = self.data
        while rest:
            header, _, rest = rest.partition(b"\r\n\r\n")
            length = int(header.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            out.append(json.loads(rest[:length]))
            rest = rest[length:]
        return out


# -- the private names the seam uses ------------------------------------------------------------


def test_execute_handler_takes_what_the_seam_passes() -> None:
    assert hasattr(JsonRPCProtocol, "_execute_handler"), "pygls removed _execute_handler"
    names = parameters(JsonRPCProtocol._execute_handler)
    assert names[:4] == ["self", "msg_id", "handler", "callback"] and "args" in names, \
        f"_execute_handler's signature changed: {names}"


def test_execute_handler_registers_a_generator_handler_in_request_futures() -> None:
    """The seam pops a request's entry when answered and a notification's at once: both rely on
    `_execute_handler` keeping a generator handler's future in `_request_futures` by its id."""
    protocol = plain_server().protocol
    assert isinstance(getattr(protocol, "_request_futures", None), dict), \
        "pygls removed _request_futures (or it is no longer a dict)"
    done: list[Future[Any]] = []

    def generator(value: int) -> Iterator[Any]:
        yield from ()  # a generator handler that yields to nothing
        return value * 2

    protocol._execute_handler("id-1", generator, done.append, args=(21,))
    assert "id-1" in protocol._request_futures, \
        "_execute_handler no longer registers the handler's future in _request_futures"
    assert len(done) == 1 and done[0].result() == 42, \
        "_execute_handler no longer calls its callback with the finished future"


def test_ctx_msg_id_is_what_msg_id_reads() -> None:
    """The seam sets `_ctx_msg_id` for a request; pygls's `lsp_shutdown` reads `msg_id`."""
    protocol = plain_server().protocol
    variable = getattr(protocol, "_ctx_msg_id", None)
    assert isinstance(variable, contextvars.ContextVar), "pygls removed _ctx_msg_id"

    def inside() -> Any:
        variable.set("req-7")
        return protocol.msg_id

    assert contextvars.copy_context().run(inside) == "req-7", \
        "msg_id no longer reads _ctx_msg_id"


def test_lsp_shutdown_cancels_request_futures_but_its_own() -> None:
    """What `track` relies on (our requests to the client are cancelled by `shutdown`) and what
    setting `_ctx_msg_id` protects (the shutdown request is not cancelled)."""
    protocol = fim_server().protocol
    assert isinstance(protocol, FimProtocol)
    own: Future[Any] = Future()
    other: Future[Any] = Future()
    protocol.track("shutdown-id", own)
    protocol.track("other-id", other)

    def shut_down() -> None:
        protocol._ctx_msg_id.set("shutdown-id")
        for _ in protocol.lsp_shutdown():
            pass

    contextvars.copy_context().run(shut_down)
    assert other.cancelled(), "lsp_shutdown no longer cancels what is in _request_futures"
    assert not own.cancelled(), "lsp_shutdown cancels its own request (msg_id / _ctx_msg_id)"


# -- names pygls calls on our subclass, and what it registers -------------------------------------


@pytest.mark.parametrize(("name", "method"), [
    ("lsp_text_document__did_open", types.TEXT_DOCUMENT_DID_OPEN),
    ("lsp_text_document__did_change", types.TEXT_DOCUMENT_DID_CHANGE),
    ("lsp_text_document__did_close", types.TEXT_DOCUMENT_DID_CLOSE),
    ("lsp_workspace__execute_command", types.WORKSPACE_EXECUTE_COMMAND),
])
def test_builtin_feature_we_replace_has_that_name(name: str, method: str) -> None:
    base = getattr(LanguageServerProtocol, name, None)
    assert base is not None, f"pygls renamed its built-in {name}: ours would run beside it"
    assert getattr(base, "method_name", None) == method, \
        f"pygls's {name} no longer handles {method}"
    protocol = fim_server().protocol
    registered = protocol.fm.builtin_features.get(method)
    assert getattr(registered, "__func__", None) is getattr(FimProtocol, name), \
        f"_register_builtin_features did not register our {name} for {method}"


def test_document_sync_keeps_pygls_workspace_empty() -> None:
    server = fim_server()
    protocol = server.protocol
    assert isinstance(protocol, DocumentSync)
    opened: list[Any] = []
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(lambda ls, params: opened.append(params))
    params = types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri="file:///a.py", language_id="python", version=1, text="x = 1\n"))
    done: list[Future[Any]] = []
    protocol.run_notification(types.TEXT_DOCUMENT_DID_OPEN, params, done.append)
    # pygls's own handler would have failed: there is no workspace before initialize.
    assert done and done[0].exception() is None, f"didOpen failed: {done[0].exception()!r}"
    assert opened == [params], "the user's didOpen handler no longer runs"


@pytest.mark.parametrize(("owner", "name", "expected"), [
    (JsonRPCProtocol, "structure_message", ["self", "data"]),
    (JsonRPCProtocol, "notify", ["self", "method", "params"]),
    (JsonRPCProtocol, "send_request", ["self", "method", "params", "callback", "msg_id"]),
    (JsonRPCProtocol, "set_writer", ["self", "writer", "include_headers"]),
    (LanguageServerProtocol, "get_message_type", ["self", "method"]),
    (LanguageServerProtocol, "get_result_type", ["self", "method"]),
    (LanguageServer, "report_server_error", ["self", "error", "source"]),
])
def test_public_method_we_override_or_call(owner: type, name: str, expected: list[str]) -> None:
    assert hasattr(owner, name), f"pygls removed {owner.__name__}.{name}"
    assert parameters(getattr(owner, name)) == expected, \
        f"{owner.__name__}.{name}'s signature changed: {parameters(getattr(owner, name))}"


def test_the_server_sends_through_notify_and_send_request() -> None:
    """pygls's `LanguageServer` methods must reach our `notify` / `send_request` (its own
    `_send_data` would show an Error popup when writing fails)."""
    server = fim_server()
    sink = Sink()
    server.protocol.set_writer(sink)  # type: ignore[arg-type]
    server.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message="hi"))
    server.protocol.send_request(types.WORKSPACE_CONFIGURATION, types.ConfigurationParams(
        items=[types.ConfigurationItem(section="fimlsp")]), msg_id="cfg-1")
    sent = sink.messages()
    assert sent[0] == {"jsonrpc": "2.0", "method": "window/logMessage",
                       "params": {"type": 3, "message": "hi"}}
    assert sent[1]["id"] == "cfg-1" and sent[1]["method"] == "workspace/configuration"


def test_feature_manager_registries() -> None:
    fm = plain_server().protocol.fm
    for name in ("features", "builtin_features", "commands"):
        assert isinstance(getattr(fm, name, None), dict), f"pygls removed FeatureManager.{name}"


def test_exception_helpers() -> None:
    error = JsonRpcException.from_error(types.ResponseError(code=-32601, message="no"))
    assert isinstance(error, JsonRpcException) and error.code == -32601, \
        "JsonRpcException.from_error changed"
    assert JsonRpcMethodNotFound.of("x/y").code == -32601, "JsonRpcMethodNotFound.of changed"


# -- only the seam names them ------------------------------------------------------------------


def test_only_the_seam_uses_pygls_private_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == SEAM:
            continue
        with path.open("rb") as handle:
            for token in tokenize.tokenize(handle.readline):
                if token.type == tokenize.NAME and token.string in PRIVATE:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{token.start[0]} "
                                 f"{token.string}")
    assert not found, "pygls internals outside fimlsp/lsp/pygls_seam.py:\n" + "\n".join(found)


def test_the_seam_docstring_names_every_private_name_it_uses() -> None:
    source = SEAM.read_text(encoding="utf-8")
    docstring = source.split('"""')[1]
    used = {token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.NAME and token.string in PRIVATE}
    missing = sorted(name for name in used if f"`{name}" not in docstring
                     and f".{name}" not in docstring)
    assert not missing, f"fimlsp/lsp/pygls_seam.py uses {missing} without saying why"
