"""Settings, parsed once from whatever the client or the command line sends.

Editors send options in their own spelling (VS Code settings are camelCase, Lua tables usually
snake_case), sometimes nested under a `fimlsp` section, sometimes not. `parse_settings` accepts
all of these and always returns a complete, typed `Settings` plus a list of warnings: a bad value
is reported by key and ignored (the option keeps the value it had), so a typo in a config file
never stops the server.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
QUANTIZATIONS = ("auto", "none", "int8", "8bit", "4bit")
MULTILINE = ("auto", "always", "never")
LOG_LEVELS = ("error", "warning", "info", "debug")
ORDERS = ("auto", "psm", "spm")
POLICIES = ("structure", "raw")
ENGINES = ("local", "openai", "llamacpp", "tgi", "ollama")
NEXT_EDIT_FORMATS = ("auto", "sweep", "zeta", "off")


@dataclass(frozen=True)
class Settings:
    """Every option the server understands, with its default.

    `model` is a preset name, a hub id or a local directory; `template` names the FIM family for a
    model the presets do not know. `context_window` overrides the window read from the model's
    config (it can only shrink it: positions beyond what the model was trained on are garbage).
    """

    model: str = "tiny-starcoder"
    template: str | None = None
    tokenizer: str | None = None  # a directory or hub id, when it differs from the model's
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "auto"  # the preset's choice for the device, else none
    threads: int | None = None
    max_new_tokens: int | None = None  # unset: `choices.answer_tokens` (32 on the CPU, else 64)
    context_window: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    time_budget_ms: int = 4000
    multiline: str = "auto"
    neighbour_share: float = 0.15  # of the context budget, for snippets of other open files
    # The workspace index (fimlsp/repo): definitions and similar code from unopened files.
    repo_context: bool = True  # local folders only: remote schemes are never indexed
    repo_share: float = 0.15  # of the context budget, for the index's snippets
    repo_max_files: int = 5_000
    repo_max_bytes: int = 20_000_000  # source bytes read, all folders: ~5x that held (memory)
    repo_index_timeout_s: int = 120  # indexing stops there; what was indexed is used
    # Open documents with secrets-like names (fimlsp/sources.py) lend snippets after all.
    context_secrets: bool = False
    log_level: str = "info"
    # Fetch a model that is not in the local Hugging Face cache. Off: a language server starts
    # whenever an editor opens a file, and must not start a download nobody asked for.
    allow_download: bool = False
    # Switches that `fimlsp bench quality` compares; it kept these defaults (docs/benchmarks.md).
    order: str = "auto"  # FIM order: the preset's (else the template's) or psm / spm
    policy: str = "structure"  # "raw": the model's text as generated, special tokens removed
    typing_through: bool = True  # answer from the suggestion on screen while the user types it
    # Back a prompt that ends inside a word off to a token boundary and have the model write the
    # word's start again (healing.py); the in-process engine only.
    token_healing: bool = True
    # In idle time, compute the suggestion that follows accepting the one on screen.
    prefetch: bool = True
    # Further suggestions at the same cursor, computed in idle time after the first is shown
    # (branches of the same KV session); 0 is off. The in-process engine only.
    alternatives: int = 2
    # Prompt-lookup draft tokens per forward in greedy decoding: None measures at load whether
    # drafting pays on this machine (engine/local.py), 0 is off.
    speculate: int | None = None
    # Where the forward passes run: in this process, or a serving engine (engine/remote/).
    # `model` still names the tokenizer, template and window; the engine serves the weights.
    engine: str = "local"
    endpoint: str | None = None  # base URL as OpenAI clients take it; None: the engine's default
    served_model: str | None = None  # the engine's name for the model; None: the one it serves
    api_key_env: str | None = None  # the environment variable holding the key (never the key)
    # Send that key over plain http:// to a host other than this machine (readable on the way).
    api_key_over_http: bool = False
    connect_timeout_ms: int = 3000
    tls_verify: bool = True
    retries: int = 2  # connection errors only; a request the engine refused is not retried
    # Next-edit suggestions (fimlsp/nextedit): the prompt format, and the rewrite's length cap.
    next_edit_format: str = "auto"
    next_edit_max_tokens: int = 384

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass
class ParsedSettings:
    settings: Settings
    warnings: list[str] = field(default_factory=list)


_CHOICES: dict[str, tuple[str, ...]] = {
    "device": DEVICES,
    "dtype": DTYPES,
    "quantization": QUANTIZATIONS,
    "multiline": MULTILINE,
    "log_level": LOG_LEVELS,
    "order": ORDERS,
    "policy": POLICIES,
    "engine": ENGINES,
    "next_edit_format": NEXT_EDIT_FORMATS,
}
_RANGES: dict[str, tuple[float, float]] = {
    "threads": (1, 1024),
    "max_new_tokens": (1, 4096),
    "context_window": (64, 1 << 20),
    "temperature": (0.0, 5.0),
    "top_p": (0.0, 1.0),
    "time_budget_ms": (1, 600_000),
    "neighbour_share": (0.0, 0.5),
    "repo_share": (0.0, 0.5),
    "repo_max_files": (1, 1_000_000),
    "repo_max_bytes": (1, 10_000_000_000),
    "repo_index_timeout_s": (1, 3600),
    "connect_timeout_ms": (1, 600_000),
    "retries": (0, 10),
    "alternatives": (0, 8),
    "speculate": (0, 16),
    "next_edit_max_tokens": (16, 4096),
}
# Values that must be names of environment variables (POSIX shells' rule).
_ENV_NAMES = frozenset({"api_key_env"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Values never repeated in a warning: what was typed there may be the secret itself.
_UNSHOWN = frozenset({"api_key_env"})
# Spellings clients commonly use for the same thing.
_ALIASES = {"max_tokens": "max_new_tokens", "quantize": "quantization", "window": "context_window",
            "neighbor_share": "neighbour_share"}


_BOOLS = {"true": True, "on": True, "yes": True, "1": True,
          "false": False, "off": False, "no": False, "0": False}


def _snake(key: str) -> str:
    key = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower().replace("-", "_")
    return _ALIASES.get(key, key)


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(Settings)}


def _coerce(name: str, type_name: str, value: Any) -> Any:
    """Converts one value, raising ValueError with a user-facing reason when it cannot."""
    optional = "None" in type_name
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ValueError("must not be empty")
    if type_name.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
    elif type_name.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("must be an integer")
        try:
            number = int(value) if not isinstance(value, float) or value.is_integer() else None
        except ValueError:
            number = None
        if number is None:
            raise ValueError("must be an integer")
        value = number
    elif type_name.startswith("float"):
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    elif type_name.startswith("str"):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        value = value.strip()
        if name in _ENV_NAMES and not _ENV_NAME.match(value):
            raise ValueError("must be the name of an environment variable (letters, digits and "
                             "_, not starting with a digit), never the key itself")
        if name in _CHOICES:
            value = value.lower()
            if value not in _CHOICES[name]:
                raise ValueError(f"must be one of {', '.join(_CHOICES[name])}")
    if name in _RANGES:
        low, high = _RANGES[name]
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
    return value


def parse_settings(options: Any, base: Settings | None = None) -> ParsedSettings:
    """Merges `options` over `base` (defaults when None).

    A `{"fimlsp": {...}}` wrapper is unwrapped, keys may be camelCase or snake_case, and unknown
    keys or invalid values each produce one warning naming the key; the rest still applies.
    """
    base = base or Settings()
    if options is None:
        return ParsedSettings(base)
    if not isinstance(options, dict):
        kind = type(options).__name__
        return ParsedSettings(base, [f"fimlsp options must be an object, got {kind}"])
    if isinstance(options.get("fimlsp"), dict):
        options = options["fimlsp"]
    types = _field_types()
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    for raw_key, value in options.items():
        name = _snake(str(raw_key))
        if name not in types:
            warnings.append(f"fimlsp: unknown option '{raw_key}' ignored")
            continue
        try:
            changes[name] = _coerce(name, types[name], value)
        except ValueError as error:
            default = getattr(base, name)
            if name in _UNSHOWN:
                warnings.append(f"fimlsp: option '{raw_key}' {error} (the value is not shown: "
                                "it may be a key); keeping the previous one")
                continue
            warnings.append(
                f"fimlsp: option '{raw_key}' {error} (got {value!r}); using {default!r}")
    return ParsedSettings(base.replace(**changes), warnings)
