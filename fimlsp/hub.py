"""The one door to the Hugging Face hub: closed unless the user asked for a download.

A language server starts whenever an editor opens a file, so a model name that is not on disk
must not turn into a multi-gigabyte download (or, offline, into half a minute of retries before
the first error). Every hub access in fimlsp goes through here:

- `cached` reads the local Hugging Face cache and never builds a request;
- `from_pretrained_kwargs` gives transformers `local_files_only=True` unless downloads are on;
- `online` opens the door for one download, when `allow_download` (setting or `--allow-download`)
  or `fimlsp download` asked for it.

`local_files_only` alone is not enough: huggingface_hub (2.x) builds request headers even for a
local-only lookup, and building them fetches an "agent harness" registry from the hub. So the
process runs in huggingface_hub's offline mode (and without its telemetry) except inside
`online`, and a user who set `HF_HUB_OFFLINE=1` stays offline even then.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_lock = threading.RLock()
_user_offline: bool | None = None  # HF_HUB_OFFLINE as the user set it, read once


def _constants() -> Any:
    """huggingface_hub's constants, switched to offline mode on first use."""
    global _user_offline
    from huggingface_hub import constants

    with _lock:
        if _user_offline is None:
            _user_offline = bool(constants.HF_HUB_OFFLINE)
            constants.HF_HUB_OFFLINE = True
            constants.HF_HUB_DISABLE_TELEMETRY = True
    return constants


def download_command(source: str) -> str:
    return f"fimlsp download {source}"


def not_cached(source: str, what: str = "") -> str:
    """The message for a hub id that is not on disk: what to run, in one line."""
    missing = f"has no {what} in" if what else "is not in"
    return (f"'{source}' {missing} the local Hugging Face cache, and fimlsp downloads nothing "
            f"unless asked: run `{download_command(source)}` once, or allow downloads "
            "(--allow-download, or `allowDownload: true` in the client's options).")


def cached(source: str, filename: str) -> Path | None:
    """`filename` of hub repo `source` from the local cache; no request, ever."""
    _constants()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, filename)
    return Path(found) if isinstance(found, str) else None


def from_pretrained_kwargs(allow_download: bool) -> dict[str, Any]:
    """What every transformers `from_pretrained` call gets."""
    _constants()
    return {"local_files_only": not allow_download}


@contextlib.contextmanager
def online(allow_download: bool) -> Iterator[None]:
    """Lets the hub be reached inside the block when downloads are allowed (and the user did
    not set HF_HUB_OFFLINE); otherwise the block runs offline, as everything else does."""
    constants = _constants()
    if not allow_download or _user_offline:
        yield
        return
    with _lock:  # one download at a time; offline readers need no lock (local_files_only)
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = True


def user_forces_offline() -> bool:
    _constants()
    return bool(_user_offline)


def fetch(source: str, filename: str, allow_download: bool) -> Path:
    """One file of hub repo `source`: the cache first, then (if allowed) the hub.

    Raises FileNotFoundError when it is neither cached nor (allowed to be) downloaded.
    """
    found = cached(source, filename)
    if found is not None:
        return found
    if not allow_download:
        raise FileNotFoundError(f"{source}/{filename}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    with online(True):
        try:
            return Path(hf_hub_download(source, filename))
        except EntryNotFoundError as error:
            raise FileNotFoundError(f"{source}/{filename}") from error


# What a completion needs from a repository: config, tokenizer, one weight format.
_META = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json"]
_SAFETENSORS = ["*.safetensors", "*.safetensors.index.json"]
_TORCH = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def download(source: str) -> Path:
    """Downloads what fimlsp needs of hub repo `source` (safetensors when the repo has them,
    else the torch weights) into the Hugging Face cache; returns the snapshot folder."""
    if user_forces_offline():
        raise OSError("HF_HUB_OFFLINE is set in the environment; unset it to download")
    from huggingface_hub import snapshot_download

    with online(True):
        folder = Path(snapshot_download(source, allow_patterns=_META + _SAFETENSORS))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(source, allow_patterns=_META + _TORCH))
    return folder

