"""A checkpoint, from disk or the hub, to a model on a device: what the settings mean here
(`resolve`), what is checked before transformers sees the files (their errors name the file and
the key, never a value: config.json is the model author's, and these messages reach the editor's
popups), and `from_pretrained` with no remote code, quantized as chosen.

Apart from `LocalEngine` because none of it is about decoding: the engine gets a loaded model,
and the tests load models without an engine.
"""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from typing import Any

import torch

from fimlsp import hub
from fimlsp.config import Settings
from fimlsp.engine import choices
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import (
    WEIGHT_FILES,
    ModelSpec,
    cached_file,
    read_config,
    weights_present,
)

log = logging.getLogger(__name__)

_HOW = ("Pass --model with a preset, a hub id (downloaded once with `fimlsp download ID`) or a "
        "local directory holding config.json and the weights.")
_NOT_YET: dict[str, str] = {}  # model_type → why this build cannot run it


def resolve(spec: ModelSpec, settings: Settings) -> dict[str, choices.Choice]:
    """What the device, dtype, quantization and threads settings mean here, each with why."""
    device = choices.device(settings.device)
    return {"device": device, "dtype": choices.dtype(settings.dtype, device.value),
            "quantization": choices.quantization(settings.quantization, spec, device.value),
            "threads": choices.threads(settings.threads), "wait_policy": choices.wait_policy()}


def load_model(spec: ModelSpec, settings: Settings,
               chosen: dict[str, choices.Choice] | None = None
               ) -> tuple[torch.nn.Module, torch.device]:
    """`from_pretrained` on a hub id or local dir; remote code never runs. `chosen`: what
    `resolve` made of the settings, when the caller has it already."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from fimlsp.engine.architectures import refact  # registers gpt_refact with the Auto classes
    from fimlsp.engine.architectures.santacoder import (
        is_original_santacoder,
        load_original_santacoder,
    )

    hf_logging.disable_progress_bar()  # stderr is the server's log, not a terminal

    allow = settings.allow_download
    raw = check_files(spec, allow)
    try:
        with hub.online(allow):
            config = AutoConfig.from_pretrained(spec.source, trust_remote_code=False,
                                                **hub.from_pretrained_kwargs(allow))
    except Exception as error:
        log.warning("transformers cannot read the config of %s: %s", spec.source, error)
        where = cached_file(spec.source, "config.json") or f"the config of '{spec.source}'"
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"{where}: {_rejected(error, raw)}") from None
    if config.model_type in _NOT_YET:
        raise FimError(ErrorKind.UNSUPPORTED, f"{_NOT_YET[config.model_type]}.")
    # Custom-code checkpoints we run natively: Refact (our class) and the original SantaCoder
    # (converted to GPTBigCode on load). Any other auto_map is refused: its code never runs.
    original_santacoder = is_original_santacoder(config.to_dict())
    native = ("gpt_bigcode", refact.MODEL_TYPE)
    if getattr(config, "auto_map", None) and config.model_type not in native \
            and not original_santacoder:
        raise FimError(ErrorKind.UNSUPPORTED,
                       f"'{spec.name}' is a custom-code checkpoint ({config.model_type}); fimlsp "
                       "never runs remote code. Use its transformers-native variant if it has "
                       "one; natively supported custom-code models: Refact-1.6B, SantaCoder.")
    check_weights(spec, allow)
    chosen = chosen or resolve(spec, settings)
    device, dtype = chosen["device"].value, chosen["dtype"].value
    quantization = chosen["quantization"].value
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": False,
                              **hub.from_pretrained_kwargs(allow)}
    if quantization == "int8" and device.type != "cpu":
        raise FimError(ErrorKind.CONFIG, "quantization 'int8' is the CPU path; on CUDA use "
                       "'8bit' or '4bit'")
    if quantization in ("4bit", "8bit"):
        if device.type != "cuda":
            raise FimError(ErrorKind.CONFIG, f"quantization '{quantization}' "
                           "(bitsandbytes) needs a CUDA GPU; on CPU use 'int8'")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantization == "4bit",
            load_in_8bit=quantization == "8bit",
            bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device.index or 0}
    if device.type == "cpu":
        torch.set_num_threads(chosen["threads"].value)
    try:
        with hub.online(allow):
            if original_santacoder:
                model = load_original_santacoder(spec.source, **kwargs)
            else:
                model = AutoModelForCausalLM.from_pretrained(spec.source, **kwargs)
    except FimError:
        raise
    except Exception as error:
        log.warning("loading the weights of %s failed: %s", spec.source, error)
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"Cannot load the weights of model '{spec.name}' ({spec.source}): "
                       f"{_rejected(error, config.to_dict())}") from None
    if "quantization_config" not in kwargs:
        model.to(device)
    if quantization == "int8":
        model = quantize_int8(model)
    model.eval()
    return model, device


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every nn.Linear in dynamic int8, per output channel, in place."""
    # Dynamic int8 on nn.Linear measured fastest of the CPU int8 options (docs/benchmarks.md).
    # In place: a copy would hold a second fp32 model at once (4.5 GB more for a 1B model).
    # Deprecated since torch 2.10 (torchao's `quantize_` replaces it), still there in 2.13.
    # Its two deprecation warnings (docs/benchmarks.md, "CPU int8 candidates": tracked there,
    # with the replacement measured) would reach every user's editor log at every load now
    # that int8 is the CPU default: they are ours to act on, not the user's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized "
                                r"tensor creation|quantize_per_tensor).*deprecated")
        warnings.filterwarnings("ignore", message=r".*deprecated.*(torch\.ao\.quantization"
                                r"|quantize_per_tensor)")
        # Per output channel: one scale per row of each weight. On the trained fixture it
        # gives the fp32 suggestion at 83 % of held-out cursors against 66 % with one scale
        # per tensor, at the same speed (docs/benchmarks.md, "Defaults on the CPU").
        per_channel = torch.ao.quantization.per_channel_dynamic_qconfig
        model = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: per_channel}, dtype=torch.qint8, inplace=True)
    return model


def cache_kwarg(model: torch.nn.Module) -> str:
    """The keyword under which `model.forward` takes the KV cache: `cache` in transformers
    releases that renamed it, `past_key_values` before. The old name still works for a while
    after the rename but warns on every call, and is gone in 5.40; asking the signature (the
    deprecation wrapper keeps it) works for any version and for our own `gpt_refact`."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a forward without a readable signature: the old name
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FIELD_IN_ERROR = re.compile(r"field '([A-Za-z_][A-Za-z0-9_]{0,63})'")


def check_files(spec: ModelSpec, allow_download: bool) -> dict[str, Any] | None:
    """What must hold before transformers sees the model's config: it is on disk (unless it may
    be downloaded), a JSON object, naming an architecture this transformers knows. Its errors
    name the file and the key, never the value: config.json is the model author's, and these
    messages end up in the editor's popups. Returns the config (None: to be downloaded)."""
    config = read_config(spec.source)  # raises, naming the file, when it is not JSON
    if config is None:
        if spec.is_local:
            raise FimError(ErrorKind.MODEL_UNAVAILABLE, f"{spec.source} has no config.json. "
                           + _HOW)
        if not allow_download:
            raise FimError(ErrorKind.MODEL_UNAVAILABLE, hub.not_cached(spec.source))
        return None  # from_pretrained downloads it
    check_config_values(config, str(cached_file(spec.source, "config.json")))
    return config


def check_weights(spec: ModelSpec, allow_download: bool) -> None:
    if weights_present(spec.source):
        return
    if spec.is_local:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                       f"{spec.source} has no weights ({', '.join(WEIGHT_FILES)}). " + _HOW)
    if not allow_download:
        raise FimError(ErrorKind.MODEL_UNAVAILABLE, hub.not_cached(spec.source, "weights"))


def check_config_values(config: dict[str, Any], where: str) -> None:
    """The values transformers would echo in its own errors, checked first and named by key."""
    from transformers import CONFIG_MAPPING, __version__

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise FimError(ErrorKind.UNSUPPORTED,
                       f"{where}: key 'model_type' does not name an architecture transformers "
                       f"{__version__} knows. Use a transformers-native checkpoint, or a newer "
                       "transformers.")
    for key in ("dtype", "torch_dtype"):
        value = config.get(key)
        if value is not None and not (
                isinstance(value, str)
                and (value == "auto" or isinstance(getattr(torch, value, None), torch.dtype))):
            raise FimError(ErrorKind.MODEL_UNAVAILABLE,
                           f"{where}: key '{key}' is not a torch dtype.")


def _rejected(error: BaseException, config: dict[str, Any] | None) -> str:
    """Why transformers refused, without its text (which quotes config values): the key when
    its message names one that is in the config, else the error's type; details go to stderr."""
    match = _FIELD_IN_ERROR.search(str(error))
    key = match.group(1) if match else None
    if key is not None and (config is None or key in config) and _KEY.fullmatch(key):
        return (f"transformers rejects the value of key '{key}' ({type(error).__name__}). "
                "Compare it with the model's original config.json.")
    return (f"transformers refused it ({type(error).__name__}); the server's log (stderr) has "
            "the details. " + _HOW)

