"""One error type for everything the user can get wrong.

Handlers never build LSP errors themselves: they raise `FimError` and `server.py` turns it into
either an LSP error response (`INVALID_PARAMS`) or a message plus an empty result, in one place.
The CLI prints the same message and exits non-zero.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    INVALID_PARAMS = "invalid_params"  # the request itself is wrong: answer with an LSP error
    UNKNOWN_DOCUMENT = "unknown_document"  # never opened: empty result and a log line
    MODEL_UNAVAILABLE = "model_unavailable"  # bad name, missing weights: tell the user once
    UNSUPPORTED = "unsupported"  # a known model this build cannot run yet
    CONFIG = "config"  # invalid option values
    ENGINE_UNAVAILABLE = "engine_unavailable"  # the serving engine is down or refused a request


class FimError(Exception):
    """An error whose message is written for the user: what went wrong and how to fix it."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message
