"""What each server option is for, and everything derived from `config.Settings`.

`Settings` is the one list of options: names, types and defaults; `config` adds their allowed
values. This module adds the sentence that explains each one and derives from the two the CLI
flags (`fimlsp serve --top-p 0.9`), `fimlsp options` (text, `--markdown`, `--json`) and the
tables in README.md and docs/configuration.md (`scripts/options_docs.py` writes them, a test
checks them). A setting added to `Settings` without a sentence here fails the tests, not a user.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import MISSING, dataclass, fields
from typing import Any

# The allowed values live with the parser that enforces them; read here, never copied.
from fimlsp.config import _CHOICES, _RANGES, Settings

# One sentence (Markdown) per setting: what it does for the user, with the values it takes.
HELP: dict[str, str] = {
    "model": "preset (`fimlsp models`), Hugging Face hub id in the local cache, or a local "
             "directory with `config.json`, `tokenizer.json` and weights",
    "template": "FIM family of a model the presets do not know: `starcoder`, `santacoder`, "
                "`fim-neox`, `refact`, `starcoder2`, `qwen2.5-coder`, `deepseek-coder`",
    "tokenizer": "tokenizer directory or hub id, when it is not the model's",
    "device": "`auto` (CUDA if present, else CPU), `cpu`, `cuda`, `mps`",
    "dtype": "`auto` (fp32 on CPU, bf16 on CUDA), `float32`, `float16`, `bfloat16` (on CPUs "
             "with `avx512_bf16`, bf16 prefills faster than fp32)",
    "quantization": "`auto` (`int8` on the CPU; on CUDA `4bit` for the 15B models, else none: "
                    "`fimlsp.stats` says why in `choices`), `none`, `int8` (CPU, dynamic), "
                    "`8bit`/`4bit` (CUDA, bitsandbytes: the `gpu` extra)",
    "threads": "CPU threads for the model",
    "max_new_tokens": "longest suggestion, in tokens; also reserved in the window; unset: 32 on "
                      "the CPU with the in-process engine (an answer in time at a typing pace, "
                      "docs/configuration.md), else 64",
    "context_window": "the prompt window, in tokens (never past the model's config); unset: "
                      "2048 on the CPU with the in-process engine (the keystroke budget, "
                      "docs/configuration.md), else the model's",
    "temperature": "sampling temperature; 0 is greedy and reproducible",
    "top_p": "nucleus sampling threshold (with a temperature above 0)",
    "time_budget_ms": "stop generating after this long and show what there is",
    "multiline": "`auto` (a block after `:`/`{` or on an empty line), `always`, `never`",
    "neighbour_share": "share of the context budget for snippets of other open files (0 = off)",
    "repo_context": "index the workspace folders (local ones only; what `.gitignore` leaves, "
                    "source files only, no binaries, generated or secrets-like files) and put "
                    "definitions of the identifiers near the cursor, and code like the lines "
                    "above it, from files that are not open into the prompt",
    "repo_share": "share of the context budget for the workspace index's snippets (0 = none)",
    "repo_max_files": "most files the workspace index holds",
    "repo_max_bytes": "most bytes of source the workspace index reads, all folders together",
    "repo_index_timeout_s": "seconds the first indexing of the folders may take; it stops "
                            "there and uses what it has",
    "context_secrets": "let open documents with secrets-like names (`.env`, `*.pem`, `*.key`, "
                       "`id_rsa*`, `.netrc`, `*credential*`, `*secret*`, `settings.json`, files "
                       "under `.ssh` or `.vscode`: the list in docs/configuration.md) lend "
                       "snippets to other documents' prompts; off, they never do (other "
                       "documents lend only when they are `file:` documents inside the "
                       "workspace folders or unsaved buffers)",
    "log_level": "stderr log level (`error`, `warning`, `info`, `debug`); `debug` also sends the "
                 "server's other log lines to the client, whose log gets each request's "
                 "timings as Debug messages at any level",
    "allow_download": "fetch a model missing from the local Hugging Face cache; off, loading "
                      "fails at once with the `fimlsp download ID` command to run",
    "order": "FIM prompt order: `auto` (the preset's, else the template's), `psm` or `spm`; one "
             "the model's family was not trained with is refused per request",
    "policy": "`structure`: the completion policy cuts the model's text by brackets, indentation "
              "and suffix overlap; `raw`: the text as generated, only spelled-out special tokens "
              "removed (a baseline for `fimlsp bench quality`)",
    "typing_through": "while the user types what the suggestion on screen says, answer with its "
                      "rest without the model; off asks the model on every keystroke",
    "token_healing": "at a cursor inside a word (or after a space), back the prompt off to the "
                     "token boundary before it and let the model write the word's start again, "
                     "constrained to what is there; the in-process engine only (`fimlsp.stats` "
                     "says why it is off); off: the prompt ends at the cursor",
    "prefetch": "while a suggestion is on screen and the model is idle, compute the one that "
                "follows accepting it, so that after an accept the next is there at once "
                "(any keystroke stops it); the in-process engine only: a serving engine's time "
                "is shared",
    "alternatives": "further suggestions at the same cursor, for the editor's cycle key (VS "
                    "Code's `1/3`, Alt+] / Alt+[; `<M-]>`/`<M-[>` in Neovim, `M-n`/`M-p` in "
                    "Emacs): computed after the first is shown, while the model is idle "
                    "(any keystroke stops them), from the same prompt's keys and values, each "
                    "starting with another of the likeliest first tokens; 0 is off; the "
                    "in-process engine only (`fimlsp.stats` says why it is off)",
    "speculate": "prompt-lookup draft tokens verified per forward (greedy output is the same "
                 "either way); 0 is off; unset: measured at load, on where verifying drafts "
                 "costs little more than one token (`fimlsp.stats` `choices` says why)",
    "engine": "where the model runs: `local` (in this process), or a serving engine: `openai` "
              "(vLLM and other OpenAI-compatible `/v1/completions`), `llamacpp` (llama.cpp "
              "server), `tgi`, `ollama` (docs/deploy.md); `model` still gives the tokenizer, "
              "FIM template and window",
    "endpoint": "the serving engine's base URL, as its OpenAI clients take it "
                "(`http://127.0.0.1:8000/v1` for vLLM)",
    "served_model": "the serving engine's name for the model, when it is not the one it serves",
    "api_key_env": "name of the environment variable that holds the serving engine's API key "
                   "(sent as a Bearer token; the key itself is never a setting and never logged)",
    "api_key_over_http": "send the `apiKeyEnv` key to a plain `http://` endpoint on another "
                         "host, where anyone on the way can read it; off, such an endpoint with "
                         "a key fails to load and says so (`https://` and this machine's "
                         "loopback addresses need no permission)",
    "connect_timeout_ms": "how long to wait for the serving engine to accept a connection",
    "tls_verify": "verify the serving engine's TLS certificate (the system's CAs, or "
                  "`SSL_CERT_FILE`)",
    "retries": "attempts after a connection error to the serving engine, with backoff from "
               "0.2 s; a request the engine refused is not retried",
    "next_edit_format": "prompt format of next-edit suggestions (`textDocument/copilotInlineEdit`)"
                        ": `auto` (the preset's own, `zeta` for the `zeta` preset; else "
                        "`sweep` for a model with Qwen2.5-Coder's tokenizer, such as Sweep's "
                        "next-edit models; none for other families), `sweep`, `zeta` (Zed's "
                        "Zeta), `off`",
    "next_edit_max_tokens": "longest rewrite of the editable region a next edit may generate, in "
                            "tokens (it is also capped at twice the region's own length)",
}
# What a default of None means, in words.
UNSET: dict[str, str] = {
    "template": "from the preset or tokenizer",
    "tokenizer": "the model's",
    "threads": "the physical cores, within the process's CPUs and a container's quota",
    "context_window": "2048 on the CPU, else the model's",
    "max_new_tokens": "32 on the CPU, else 64",
    "speculate": "measured at load",
    "endpoint": "the engine's usual local address",
    "served_model": "the one the engine serves",
    "api_key_env": "no key",
}
# Changing one of these reloads the engine, for every engine or for one kind only; the others
# apply to the next request. A serving engine's settings never reload a model in this process,
# and the in-process engine's resources mean nothing to a serving engine.
RELOADS_ANY = frozenset({"model", "template", "tokenizer", "allow_download", "engine"})
RELOADS_LOCAL = frozenset({"device", "dtype", "quantization", "threads", "speculate"})
RELOADS_REMOTE = frozenset({"endpoint", "served_model", "api_key_env", "api_key_over_http",
                            "connect_timeout_ms", "tls_verify", "retries"})
RELOADS = RELOADS_ANY | RELOADS_LOCAL | RELOADS_REMOTE


def reload_keys(engine: str) -> frozenset[str]:
    """The settings whose change reloads `engine` ("local" or a serving engine's name)."""
    return RELOADS_ANY | (RELOADS_LOCAL if engine == "local" else RELOADS_REMOTE)


@dataclass(frozen=True)
class Option:
    """One setting as users meet it: its names in each spelling, its default and its values."""

    name: str  # snake_case, the field of Settings
    kind: str  # int | float | str | bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None

    @property
    def camel(self) -> str:
        """The spelling of initializationOptions and the editors' settings."""
        head, *rest = self.name.split("_")
        return head + "".join(part.title() for part in rest)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def reloads(self) -> bool:
        return self.name in RELOADS

    def default_text(self) -> str:
        """The default for people: `auto`, 64, the model's."""
        if self.default is None:
            return UNSET.get(self.name, "unset")
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, str):
            return f"`{self.default}`"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def meaning(self) -> str:
        if self.name in RELOADS_LOCAL:
            return self.help + "; reloads the model (in-process engine only)"
        if self.name in RELOADS_REMOTE:
            return self.help + "; reconnects to the serving engine (ignored with `local`)"
        return self.help + ("; reloads the model" if self.reloads else "")


def _kind(type_name: str) -> str:
    for kind in ("bool", "int", "float", "str"):
        if type_name.startswith(kind):
            return kind
    raise TypeError(f"Settings field of unsupported type {type_name!r}")


def all_options() -> list[Option]:
    """Every setting, in the order `Settings` declares them."""
    result = []
    for f in fields(Settings):
        if f.name not in HELP:
            raise KeyError(f"Settings.{f.name} has no sentence in fimlsp.options.HELP")
        default = f.default if f.default is not MISSING else None
        result.append(Option(f.name, _kind(str(f.type)), default, HELP[f.name],
                             _CHOICES.get(f.name), _RANGES.get(f.name)))
    return result


# -- the command line -----------------------------------------------------------------------


def _unmark(text: str) -> str:
    """Markdown code spans → plain text, for a terminal."""
    return re.sub(r"`([^`]*)`", r"\1", text)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per setting: the same names as initializationOptions, in kebab-case."""
    group = parser.add_argument_group("server options (as in initializationOptions)")
    types = {"int": int, "float": float, "str": str}
    for option in all_options():
        # argparse formats help with %: a literal one is doubled.
        text = _unmark(f"{option.help} (default: {option.default_text()})")
        text = text.replace("%", "%%")
        if option.kind == "bool":
            group.add_argument(option.flag, dest=option.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        else:
            group.add_argument(option.flag, dest=option.name, default=None, help=text,
                               type=types[option.kind], choices=option.choices)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, for `parse_settings`; absent flags are not settings."""
    return {o.name: getattr(args, o.name) for o in all_options()
            if getattr(args, o.name, None) is not None}


# -- fimlsp options ---------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The options table of README.md: `fimlsp options --markdown`."""
    rows = ["| option | flag | default | meaning |", "|---|---|---|---|"]
    for o in all_options():
        rows.append(f"| `{o.camel}` | `{o.flag}` | {_cell(o.default_text())} | "
                    f"{_cell(o.meaning())} |")
    return "\n".join(rows) + "\n"


def text() -> str:
    """`fimlsp options`: one paragraph per option for a terminal."""
    out = []
    for o in all_options():
        values = f" {{{','.join(o.choices)}}}" if o.choices else f" {o.kind.upper()}"
        out.append(_unmark(f"{o.camel} ({o.flag}{values}; default {o.default_text()})\n"
                           f"    {o.meaning()}"))
    return "\n".join(out) + "\n"


def as_json() -> str:
    """Machine-readable, for clients and scripts."""
    return json.dumps([{"name": o.name, "camel": o.camel, "flag": o.flag, "type": o.kind,
                        "default": o.default, "choices": o.choices, "range": o.range,
                        "reloads": o.reloads, "help": o.help} for o in all_options()])
