"""What a message must be before anything runs: the stateless checks of `protocol`'s order.

`protocol` walks JSON-RPC's and LSP's order of errors (its docstring lists it); the steps that
depend only on the message live here: its envelope (step 1-2: an object, `"jsonrpc": "2.0"`, a
string method, a valid id), whether anything handles the method and as which kind (step 4), and
its params or a command's arguments against their types (step 5). The lifecycle (step 3) and the
handler's own errors (step 6) need the protocol's state and stay there.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from fimlsp.validation import describe, json_type

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800

# Methods outside LSP that are notifications (lsprotocol only knows LSP's own); the handlers'
# modules add theirs (fimlsp/nextedit/lsp.py: Copilot's next-edit notifications).
CUSTOM_NOTIFICATIONS: set[str] = set()


class InvalidParams(Exception):
    """Params that do not fit the method: answered -32602 with this message."""


class Reject(Exception):
    """A request answered with an error before any handler runs."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def short(method: str) -> str:
    """A method name fit for a log line or an answer (a client may send megabytes of it)."""
    return method if len(method) <= 80 else method[:77] + "..."


def valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# -- the envelope (steps 1, 2) ----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: Any
    method: str
    params: Any  # raw JSON, checked against the method's type later (step 5)


@dataclass(frozen=True)
class Notification:
    method: str
    params: Any


@dataclass(frozen=True)
class Response:
    """An answer of the client to a request of ours."""

    id: Any
    message: dict[str, Any]


@dataclass(frozen=True)
class Invalid:
    """Not a message we can act on: answered with `code` (to `id`, None when it has none)."""

    id: Any
    code: int
    message: str


def envelope(message: Any) -> Request | Notification | Response | Invalid:
    """What a decoded JSON value is, by its envelope alone."""
    if isinstance(message, list):
        return Invalid(None, INVALID_REQUEST, "batch messages are not supported (LSP sends one "
                       "message per frame)")
    if not isinstance(message, dict):
        return Invalid(None, INVALID_REQUEST, f"a message must be a JSON object, not "
                       f"{json_type(message)}")
    has_id = "id" in message
    msg_id = message.get("id")
    answer_to = msg_id if has_id and valid_id(msg_id) else None
    if message.get("jsonrpc") != "2.0":
        return Invalid(answer_to, INVALID_REQUEST, 'the message needs "jsonrpc": "2.0"')
    if "method" not in message:
        if answer_to is not None and ("result" in message) != ("error" in message):
            return Response(msg_id, message)
        return Invalid(answer_to, INVALID_REQUEST, 'a message needs a "method" (request, '
                       'notification) or an "id" and one of "result", "error" (response)')
    method = message["method"]
    if not isinstance(method, str):
        return Invalid(answer_to, INVALID_REQUEST, '"method" must be a string')
    if "result" in message or "error" in message:
        # Neither a request nor a response: running it would let a `shutdown` that says it
        # failed shut the server down.
        return Invalid(answer_to, INVALID_REQUEST, 'a message has a "method" (request, '
                       'notification) or a "result" / "error" (response), never both')
    if has_id and answer_to is None:
        return Invalid(None, INVALID_REQUEST, '"id" must be an integer or a string')
    if has_id:
        return Request(msg_id, method, message.get("params"))
    return Notification(method, message.get("params"))


# -- the method (step 4) ----------------------------------------------------------------------


def method_kind(method: str, builtin: Mapping[str, Any], features: Mapping[str, Any]
                ) -> str | None:
    """'request' | 'notification' | None (nothing handles it), given the handlers pygls has
    registered (its built-ins and the user's features)."""
    if method == types.CANCEL_REQUEST or method in CUSTOM_NOTIFICATIONS:
        return "notification"
    if method not in builtin and method not in features:
        return None
    entry = types.METHOD_TO_TYPES.get(method)
    if entry is None:
        return "request"
    return "request" if "id" in attrs.fields_dict(entry[0]) else "notification"


# -- params (step 5) --------------------------------------------------------------------------


def check_params(converter: cattrs.Converter, method: str, raw: Any) -> Any:
    """`raw` as the method's lsprotocol params type (as is for a method lsprotocol does not
    know); raises InvalidParams naming the field that does not fit."""
    entry = types.METHOD_TO_TYPES.get(method)
    if entry is None:
        return raw
    kind = entry[2]
    if kind is None:  # shutdown, exit: no params; clients send none, null, {} or []
        if raw in (None, {}, []):
            return None
        raise InvalidParams(f"{method} takes no params")
    if raw is None:
        if not all(a.default is not attrs.NOTHING for a in attrs.fields(kind)):
            raise InvalidParams(f"{method} needs params (an object); got none")
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParams(f"params of {method} must be an object, not {json_type(raw)}")
    try:
        return converter.structure(raw, kind)
    except RecursionError:
        raise InvalidParams("params nested too deeply") from None
    except Exception as error:
        raise InvalidParams(f"invalid params for {method}: {describe(error)}") from None


def command_arguments(converter: cattrs.Converter, command: str, handler: Any,
                      values: list[Any]) -> tuple[Any, ...]:
    """A command's arguments, each checked against the handler's annotation (-32602 naming the
    argument). pygls binds the server instance (a `functools.partial`, or a wrapper with
    `.func` for coroutines); that first parameter is not an argument."""
    function = getattr(handler, "func", handler)
    parameters = list(inspect.signature(function).parameters.values())
    if function is not handler:
        parameters = parameters[1:]
    hints = _argument_hints(function, parameters)
    # Every argument is declared and typed: a `*args` handler would take anything (an accept
    # of "not-an-id" counted as an accept), so `*args` takes none here.
    parameters = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    least = sum(p.default is inspect.Parameter.empty for p in parameters)
    if not least <= len(values) <= len(parameters):
        count = str(least) if least == len(parameters) else f"{least} to {len(parameters)}"
        raise JsonRpcInvalidParams(f"{command} takes {count} argument"
                                   f"{'s' if count != '1' else ''}, got {len(values)}")
    args = []
    for index, (parameter, value) in enumerate(zip(parameters, values, strict=False)):
        kind = hints.get(parameter.name, Any)
        try:
            args.append(value if kind is Any else converter.structure(value, kind))
        except Exception as error:
            raise JsonRpcInvalidParams(f"invalid arguments for {command}: "
                                       f"{describe(error, f'arguments[{index}]')}") from None
    return tuple(args)


def _argument_hints(function: Callable[..., Any], parameters: list[inspect.Parameter]
                    ) -> dict[str, Any]:
    """The types of a command's arguments. `typing.get_type_hints` resolves every annotation,
    the server's too, which a module may import only for type checking; the arguments'
    own must resolve (an unresolvable one is a bug, not "anything goes")."""
    try:
        return typing.get_type_hints(function)
    except NameError:
        pass
    namespace = getattr(function, "__globals__", {})
    hints = {}
    for parameter in parameters:
        annotation = parameter.annotation
        if isinstance(annotation, str):
            annotation = eval(annotation, namespace)  # our own annotations, not input
        hints[parameter.name] = annotation
    return hints
