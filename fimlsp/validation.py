"""Strict structuring of JSON into lsprotocol objects: JSON types exactly, no coercion.

Why: the cattrs converter pygls 2.1.1 uses (lsprotocol's hooks on a default `cattrs.Converter`)
converts rather than checks: `"line": "4"` and `4.5` become 4, `"uri": true` becomes "True",
`"arguments": "ab"` becomes `["a", "b"]`, and lsprotocol's hooks for `Union[int, str]` (ids,
progress tokens) and for capability unions let any value through. A client that sends those has
a bug it should hear about (-32602), not a request answered for a position it did not mean.

LSP's ranges (`uinteger` ≥ 0, `integer` in int32) are lsprotocol's own attrs validators; they run
when the objects are built here too.
"""

from __future__ import annotations

import collections.abc
import contextlib
import enum
import json
import typing
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.gen import make_dict_structure_fn, override
from lsprotocol import types
from pygls.protocol import default_converter

_NONE = type(None)

def json_type(value: Any) -> str:
    """A JSON value's type as an error message names it (never the value: it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_EXPECTED = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
             _NONE: "null"}


def is_json(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # LSP's decimal: any JSON number
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _structure_enum(value: Any, kind: type[enum.Enum]) -> Any:
    members = list(kind)
    if not any(type(value) is type(m.value) for m in members):
        raise TypeError(f"expected {_EXPECTED.get(type(members[0].value), 'a value')}, "
                        f"got {json_type(value)}")
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(json.dumps(m.value) for m in members[:12])
        raise ValueError(f"expected one of {allowed}") from None


def _structure_exact(value: Any, kind: type) -> Any:
    """For int, float, str, bool, and the lsprotocol enums built on them (singledispatch sends a
    str- or int-based enum here too)."""
    if issubclass(kind, enum.Enum):
        return _structure_enum(value, kind)
    base = next(k for k in (bool, int, float, str) if issubclass(kind, k))
    if not is_json(value, base):
        raise TypeError(f"expected {_EXPECTED[base]}, got {json_type(value)}")
    return value


def _is_simple(kind: Any) -> bool:
    return kind in _EXPECTED or (isinstance(kind, type) and issubclass(kind, enum.Enum))


def _union_members(kind: Any) -> tuple[Any, ...]:
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Union else ()


def _is_checkable_union(kind: Any) -> bool:
    """Unions of JSON scalars and enums, plus at most one object type: lsprotocol's hooks for
    these let any scalar through (`Union[int, str]` takes a list, `Optional[Union[bool, X]]`
    takes a string)."""
    members = _union_members(kind)
    if not members:
        return False
    classes = [m for m in members if not _is_simple(m)]
    return len(classes) <= 1 and all(attrs.has(m) for m in classes)


def _union_factory(kind: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    members = _union_members(kind)
    names = " or ".join(_EXPECTED.get(m, "an object" if attrs.has(m) else f"a {m.__name__}")
                        for m in members)

    def structure(value: Any, _: Any) -> Any:
        # JSON scalars first, as sent: `Union[LanguageKind, str]` keeps "python" a plain str.
        for member in members:
            if member is _NONE:
                if value is None:
                    return None
            elif member in _EXPECTED and is_json(value, member):
                return value
        for member in members:
            if attrs.has(member):
                if isinstance(value, dict):
                    return converter.structure(value, member)
            elif isinstance(member, type) and issubclass(member, enum.Enum):
                with contextlib.suppress(TypeError, ValueError):
                    return _structure_enum(value, member)
        raise TypeError(f"expected {names}, got {json_type(value)}")

    return structure


def _is_sequence(kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin is tuple:
        args = typing.get_args(kind)
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, collections.abc.Sequence, collections.abc.MutableSequence)


def _sequence_factory(kind: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """cattrs turns any iterable into a list ("ab" → ["a", "b"]); JSON arrays only here."""
    origin = typing.get_origin(kind)
    if origin in (list, collections.abc.MutableSequence):
        inner = list_structure_factory(kind, converter)
    else:
        inner = homogenous_tuple_structure_factory(kind, converter)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {json_type(value)}")
        return inner(value, kind)

    return structure


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _object_factory(kind: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """lsprotocol's field renaming (snake_case attribute ↔ camelCase JSON), and objects only:
    cattrs would otherwise fail on a list or a string with whatever error indexing gives."""
    inner = make_dict_structure_fn(
        kind, converter, **{a.name: override(rename=_camel(a.name)) for a in attrs.fields(kind)})

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {json_type(value)}")
        return inner(value, kind)

    return structure


def strict_converter() -> cattrs.Converter:
    """pygls's converter (lsprotocol's hooks) with every JSON type checked exactly."""
    converter = default_converter()
    for kind in (int, float, str, bool):
        converter.register_structure_hook(kind, _structure_exact)
    converter.register_structure_hook_factory(_is_sequence, _sequence_factory)
    converter.register_structure_hook_factory(_is_checkable_union, _union_factory)
    converter.register_structure_hook_factory(
        lambda kind: attrs.has(kind) and kind is not types.LSPObject, _object_factory)
    return converter


def describe(error: BaseException, path: str = "params", limit: int = 3) -> str:
    """A structuring error as a client can act on it: what is wrong, at which JSON path."""
    if not isinstance(error, cattrs.BaseValidationError):
        return f"{path}: {_one_line(error)}"

    def fmt(exc: BaseException, _type: Any) -> str:
        if isinstance(exc, KeyError):
            return "required field missing"
        return _one_line(exc)

    lines = cattrs.transform_error(error, path=path, format_exception=fmt)
    out = []
    for line in lines[:limit]:
        message, _, path = line.rpartition(" @ ")
        path = ".".join(_camel(part) for part in path.split("."))
        out.append(f"{path}: {message}" if message else line)
    if len(lines) > limit:
        out.append(f"and {len(lines) - limit} more")
    return "; ".join(out)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
