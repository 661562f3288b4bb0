"""Model presets, FIM templates, and turning what the user named into something loadable.

A model is named by a preset (`starcoderbase-1b`), a hub id (`bigcode/starcoderbase-1b`) or a
local directory. Resolution never touches the network by itself: hub files are read from the
local Hugging Face cache unless the user allowed downloads (`fimlsp/hub.py`).

Files we read are the user's, and may be broken or hostile: errors name the file (and the key),
never echo what is in it, since they end up in the editor's popups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

from fimlsp import hub
from fimlsp.errors import ErrorKind, FimError


@dataclass(frozen=True)
class FimTemplate:
    """Special tokens of one FIM family and the orders it was trained with.

    `spm_style` says how the family writes suffix-prefix-middle: StarCoder's training code puts
    `<pre><suf>S<mid>P` (the prefix token still first), FIM-NeoX writes `<suf>S<pre>P<mid>`.
    """

    name: str
    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...]
    orders: tuple[str, ...] = ("psm", "spm")
    spm_style: str = "starcoder"
    bos: str | None = None
    file_sep: str | None = None
    repo_name: str | None = None
    filename: str | None = None

    @property
    def special_tokens(self) -> tuple[str, ...]:
        named = (self.prefix, self.suffix, self.middle, self.bos, self.file_sep, self.repo_name,
                 self.filename)
        return tuple(dict.fromkeys(t for t in (*named, *self.stop) if t))


_STARCODER_STOP = ("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>",
                   "<file_sep>", "<filename>", "<reponame>", "<empty_output>")

TEMPLATES: dict[str, FimTemplate] = {
    t.name: t
    for t in (
        FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", _STARCODER_STOP,
                    filename="<filename>", repo_name="<reponame>"),
        FimTemplate("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>",
                    ("<|endoftext|>", "<fim-prefix>", "<fim-suffix>", "<fim-middle>", "<fim-pad>")),
        FimTemplate("fim-neox", "<|PRE|>", "<|SUF|>", "<|MID|>",
                    ("<|endoftext|>", "<|PRE|>", "<|SUF|>", "<|MID|>"),
                    orders=("spm",), spm_style="neox"),
        FimTemplate("refact", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", _STARCODER_STOP),
        FimTemplate("starcoder2", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
                    _STARCODER_STOP, file_sep="<file_sep>", repo_name="<repo_name>"),
        FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                    ("<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                     "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"),
                    orders=("psm",), file_sep="<|file_sep|>", repo_name="<|repo_name|>"),
        FimTemplate("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
                    ("<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
                     "<|EOT|>"),
                    orders=("psm",), bos="<｜begin▁of▁sentence｜>"),
    )
}


@dataclass(frozen=True)
class Preset:
    name: str
    hub_id: str
    template: str
    window: int
    order: str = "psm"
    params: str = ""
    note: str = ""
    # What `quantization: auto` picks per device (engine/choices.py): dynamic int8 on the CPU,
    # where fp32 is too slow per keystroke; bf16 on CUDA unless the model would not fit.
    cpu_quantization: str = "int8"
    cuda_quantization: str = "none"
    next_edit: str = ""  # the next-edit format it was trained on (`nextEditFormat: auto`)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny-starcoder", "bigcode/tiny_starcoder_py", "starcoder", 8192, "spm", "164M",
               "Python only; fast on any CPU"),
        Preset("starcoderbase-1b", "bigcode/starcoderbase-1b", "starcoder", 8192, "spm", "1.1B"),
        Preset("starcoder-15b", "bigcode/starcoder", "starcoder", 8192, "spm", "15.5B",
               "needs a GPU; 4bit fits 12 GB", cuda_quantization="4bit"),
        Preset("starcoder-gpteacher",
               "GeorgiaTechResearchInstitute/starcoder-gpteacher-code-instruct", "starcoder",
               8192, "spm", "15.5B", "needs a GPU", cuda_quantization="4bit"),
        Preset("santacoder", "bigcode/gpt_bigcode-santacoder", "santacoder", 2048, "spm", "1.1B"),
        Preset("fim-neox-1.3b", "CarperAI/FIM-NeoX-1.3B", "fim-neox", 2048, "spm", "1.4B",
               "SPM only; its config may limit the window to 1024"),
        Preset("refact-1.6b", "smallcloudai/Refact-1_6B-fim", "refact", 4096, "psm", "1.6B"),
        Preset("starcoder2-3b", "bigcode/starcoder2-3b", "starcoder2", 16384, "psm", "3B"),
        Preset("qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B", "qwen2.5-coder", 32768, "psm",
               "1.5B"),
        Preset("deepseek-coder-1.3b", "deepseek-ai/deepseek-coder-1.3b-base", "deepseek-coder",
               16384, "psm", "1.3B"),
        Preset("zeta", "zed-industries/zeta", "qwen2.5-coder", 32768, "psm", "7.6B",
               "Zed's next-edit model (Qwen2.5-Coder-7B); needs a GPU or a serving engine",
               next_edit="zeta"),
    )
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_HOW_TO_FIX = ("Name the model with --model (or `model` in the client's options): a preset "
               "from `fimlsp models`, a Hugging Face hub id such as bigcode/starcoderbase-1b, "
               "or a local directory holding config.json, tokenizer.json and the weights.")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: where its files are and how to prompt it."""

    name: str
    source: str  # hub id or absolute directory
    is_local: bool
    template: FimTemplate
    order: str
    preset: Preset | None
    tokenizer_source: str


def _local_dir(name: str) -> Path | None:
    path = Path(name).expanduser()
    return path.resolve() if path.is_dir() else None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def cached_file(source: str, filename: str) -> Path | None:
    """The file from a local dir, or from the HF cache for a hub id; never downloads."""
    local = _local_dir(source)
    if local is not None:
        path = local / filename
        return path if path.is_file() else None
    if not _looks_like_hub_id(source):
        return None
    return hub.cached(source, filename)


def weights_present(source: str) -> bool:
    return any(cached_file(source, f) is not None for f in WEIGHT_FILES)


def read_config(source: str) -> dict[str, Any] | None:
    """The model's config.json as a dict, or None when there is none on disk.

    A file that is not a JSON object is an error naming the file (and where it breaks), not a
    bare JSONDecodeError, and none of its content.
    """
    path = cached_file(source, "config.json")
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"{path} is not valid JSON (line {error.lineno}, column {error.colno}); "
                       "restore the model's original config.json.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"Cannot read {path} ({type(error).__name__}).") from None
    if not isinstance(config, dict):
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"{path} is not a JSON object; restore the model's original config.json.")
    return config


def guess_template(tokenizer: Tokenizer) -> FimTemplate | None:
    """Recognises the FIM family from the special tokens a vocabulary carries."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    for name in ("qwen2.5-coder", "deepseek-coder", "fim-neox", "santacoder"):
        if TEMPLATES[name].prefix in vocab:
            return TEMPLATES[name]
    if "<fim_prefix>" in vocab:
        return TEMPLATES["starcoder2" if "<file_sep>" in vocab else "starcoder"]
    return None


def load_tokenizer(source: str, allow_download: bool = False) -> Tokenizer:
    """The fast tokenizer from a local dir or the HF cache (the hub only if downloads are on).

    We use the `tokenizers` object directly rather than a transformers tokenizer: it loads in
    milliseconds, and `encode_special_tokens` lets us encode document text that happens to contain
    `<fim_prefix>` as plain text, so a user's file can never inject control tokens.
    """
    local = _local_dir(source)
    if local is not None:
        path = local / "tokenizer.json"
        if not path.is_file():
            raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                           f"{local} has no tokenizer.json. {_HOW_TO_FIX}")
    elif not _looks_like_hub_id(source):
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"Tokenizer '{source}' is neither a directory nor a hub id. {_HOW_TO_FIX}")
    else:
        try:
            path = hub.fetch(source, "tokenizer.json", allow_download)
        except FileNotFoundError:
            raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                           hub.not_cached(source) if not allow_download
                           else f"'{source}' has no tokenizer.json on the hub. {_HOW_TO_FIX}"
                           ) from None
        except Exception as error:  # the hub refused or could not be reached
            raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                           f"Could not download the tokenizer of '{source}' "
                           f"({type(error).__name__}). {_HOW_TO_FIX}") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # truncated, not JSON, or not a tokenizers file
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"{path} is not a valid tokenizer.json: the tokenizers library cannot "
                       f"read it ({type(error).__name__}). Restore the model's original "
                       "file.") from None
    _mark_control_tokens(tokenizer)
    tokenizer.encode_special_tokens = True
    return tokenizer


def _mark_control_tokens(tokenizer: Tokenizer) -> None:
    """Some vocabularies (FIM-NeoX, Qwen2.5) register their FIM tokens as non-special added
    tokens, which `encode_special_tokens` does not cover: a literal `<|MID|>` in a file would
    still become the control token. Re-register every template token as special."""
    control = {t for template in TEMPLATES.values() for t in template.special_tokens}
    loose = [t.content for t in tokenizer.get_added_tokens_decoder().values()
             if t.content in control and not t.special]
    if loose:
        tokenizer.add_special_tokens(
            [AddedToken(content, special=True, normalized=False) for content in loose])


def resolve_model(name: str, template: str | None = None, tokenizer: str | None = None,
                  tokenizer_obj: Tokenizer | None = None,
                  allow_download: bool = False) -> ModelSpec:
    """Turns a preset name, hub id or directory into a `ModelSpec`.

    The template comes from, in order: `template`, the preset, the special tokens in the model's
    tokenizer. `tokenizer_obj` (already loaded) spares a second load when guessing.
    """
    if template is not None and template not in TEMPLATES:
        raise FimError(ErrorKind.CONFIG,
                       f"Unknown template '{template}'. Known: {', '.join(TEMPLATES)}.")
    preset = PRESETS.get(name)
    local = None if preset else _local_dir(name)
    if preset is None and local is None:
        preset = next((p for p in PRESETS.values() if p.hub_id == name), None)
        if preset is None and not _looks_like_hub_id(name):
            raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                           f"Unknown model '{name}': not a preset, a directory or a hub id. "
                           + _HOW_TO_FIX)
    source = preset.hub_id if preset else (str(local) if local else name)
    tokenizer_source = tokenizer or source
    chosen = TEMPLATES[template] if template else (TEMPLATES[preset.template] if preset else None)
    if chosen is None:
        tok = tokenizer_obj or load_tokenizer(tokenizer_source, allow_download)
        chosen = guess_template(tok)
        if chosen is None:
            raise FimError(ErrorKind.CONFIG,
                           f"Cannot tell which FIM format '{name}' uses: its tokenizer has no FIM "
                           f"tokens we know. Pass --template (one of {', '.join(TEMPLATES)}).")
    order = preset.order if preset and preset.order in chosen.orders else chosen.orders[-1]
    return ModelSpec(name=name, source=source, is_local=local is not None, template=chosen,
                     order=order, preset=preset, tokenizer_source=tokenizer_source)


def hub_id_of(name: str) -> str:
    """The hub id that `fimlsp download NAME` fetches: a preset's, or NAME itself."""
    preset = PRESETS.get(name)
    if preset is not None:
        return preset.hub_id
    if _local_dir(name) is not None:
        raise FimError(ErrorKind.CONFIG, f"'{name}' is a local directory: nothing to download.")
    if not _looks_like_hub_id(name):
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"Unknown model '{name}': not a preset or a hub id. {_HOW_TO_FIX}")
    return name


def config_window(config: dict[str, Any] | None) -> int | None:
    """The longest sequence the checkpoint's own config allows, if it says."""
    if not config:
        return None
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def effective_window(spec: ModelSpec, config: dict[str, Any] | None,
                     override: int | None, cap: tuple[int, str] | None = None
                     ) -> tuple[int, str]:
    """The window to fill and why: the smallest of preset, loaded config, user override and the
    device's `cap` (the CPU's default, engine/choices.py)."""
    candidates: list[tuple[int, str]] = [cap] if cap else []
    if spec.preset:
        candidates.append((spec.preset.window, f"preset {spec.preset.name}"))
    limit = config_window(config)
    if limit:
        candidates.append((limit, "model config"))
    if override:
        candidates.append((override, "context_window option"))
    if not candidates:
        return 2048, "default"
    return min(candidates, key=lambda c: c[0])
