"""Where the real model configs and tokenizers come from, on any clone.

Tests, the demo and the benchmarks need the real configs and tokenizers of the supported models
(no weights): a `shared/` folder laid out as `model-configs/<name>/config.json` and
`tokenizers/<name>/tokenizer.json`. Looked for, in order:

1. `$FIMLSP_SHARED`;
2. `shared/` beside the repository (`../shared`), or inside it, as this project's checkouts have;
3. the local Hugging Face cache, where the same files live under their hub repositories: a
   `shared/`-shaped folder of links to them is made under `$XDG_CACHE_HOME/fimlsp/`.

Nothing here downloads, except `python -m fimlsp.tools.fixtures fetch`, the explicit command that
fills the Hugging Face cache with the files of step 3 (config and tokenizer files only, no weights).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

FETCH_COMMAND = "python -m fimlsp.tools.fixtures fetch"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# shared/ folder → (hub repository, files it takes from there). The first file is required.
HUB_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "model-configs/tiny_starcoder_py": ("bigcode/tiny_starcoder_py", ("config.json",)),
    "model-configs/starcoderbase-1b": ("bigcode/starcoderbase-1b", ("config.json",)),
    "model-configs/starcoder": ("bigcode/starcoder", ("config.json",)),
    "model-configs/gpt_bigcode-santacoder": ("bigcode/gpt_bigcode-santacoder", ("config.json",)),
    "model-configs/santacoder": ("bigcode/santacoder", ("config.json",)),
    "model-configs/FIM-NeoX-1.3B": ("CarperAI/FIM-NeoX-1.3B", ("config.json",)),
    "model-configs/Refact-1_6B-fim": ("smallcloudai/Refact-1_6B-fim", ("config.json",)),
    "tokenizers/starcoder": ("bigcode/tiny_starcoder_py", _TOKENIZER_FILES),
    "tokenizers/santacoder": ("bigcode/gpt_bigcode-santacoder", _TOKENIZER_FILES),
    "tokenizers/fim-neox-1.3b": ("CarperAI/FIM-NeoX-1.3B", _TOKENIZER_FILES),
    "tokenizers/refact-1_6b-fim": ("smallcloudai/Refact-1_6B-fim", _TOKENIZER_FILES),
    "tokenizers/starcoder2": ("bigcode/starcoder2-3b", _TOKENIZER_FILES),
    "tokenizers/deepseek-coder": ("deepseek-ai/deepseek-coder-1.3b-base", _TOKENIZER_FILES),
    "tokenizers/qwen2.5-coder": ("Qwen/Qwen2.5-Coder-1.5B", ("tokenizer.json",)),
}
# These ask you to accept their licence on the hub (and `hf auth login`) before a download.
GATED = frozenset({"bigcode/starcoderbase-1b", "bigcode/starcoder"})


@dataclass
class Found:
    """Where the fixtures are (None: nowhere), from which source, and what was looked at."""

    path: Path | None
    source: str = ""  # FIMLSP_SHARED | shared/ beside the repository | Hugging Face cache
    looked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # hub repositories not in the HF cache

    def reason(self) -> str:
        """One paragraph for a skipped test or a failed demo: what is missing, how to get it."""
        repos = sorted(set(self.missing))
        gated = [r for r in repos if r in GATED]
        return ("real model configs and tokenizers not found (looked at: "
                + "; ".join(self.looked) + "). Set FIMLSP_SHARED to a shared/ folder, or put "
                "their files into the Hugging Face cache with `" + FETCH_COMMAND + "` (no "
                "weights; " + (f"{len(repos)} repositories missing: {', '.join(repos)}"
                               if repos else "nothing missing") + ")"
                + (f"; {', '.join(gated)} are gated: accept their licence on the hub and run "
                   "`hf auth login` first" if gated else "") + ".")


def _is_shared(path: Path) -> bool:
    return (path / "model-configs").is_dir() and (path / "tokenizers").is_dir()


def _cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def _assembly_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fimlsp" / "shared-from-hf-cache"


def from_hf_cache(out: Path | None = None) -> tuple[Path | None, list[str]]:
    """A shared/-shaped folder of links into the Hugging Face cache, when every file it needs is
    cached; else None and the repositories that are not."""
    files: dict[Path, Path] = {}
    missing: list[str] = []
    for folder, (repo, names) in HUB_SOURCES.items():
        first = _cached(repo, names[0])
        if first is None:
            missing.append(repo)
            continue
        files[Path(folder) / names[0]] = first
        for name in names[1:]:
            if (extra := _cached(repo, name)) is not None:
                files[Path(folder) / name] = extra
    if missing:
        return None, missing
    out = out or _assembly_dir()
    if out.exists():
        shutil.rmtree(out)  # links to snapshots that may have been replaced since
    for relative, target in files.items():
        link = out / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(target)
        except OSError:  # no symlinks here: a copy (these files are small)
            shutil.copyfile(target, link)
    return out, []


def find() -> Found:
    """The fixtures by the order in the module docstring."""
    looked: list[str] = []
    env = os.environ.get("FIMLSP_SHARED")
    if env:
        if _is_shared(Path(env)):
            return Found(Path(env), "FIMLSP_SHARED", looked)
        looked.append(f"FIMLSP_SHARED={env} (no model-configs/ and tokenizers/ there)")
    repository = Path(__file__).resolve().parents[2]
    for candidate in (repository.parent / "shared", repository / "shared"):
        if _is_shared(candidate):
            return Found(candidate, "shared/ beside the repository", looked)
        looked.append(f"{candidate} (absent)")
    from huggingface_hub import constants

    path, missing = from_hf_cache()
    if path is not None:
        return Found(path, "Hugging Face cache", looked)
    looked.append(f"the Hugging Face cache ({constants.HF_HUB_CACHE})")
    return Found(None, "", looked, missing)


def fetch(out: object = sys.stdout) -> int:
    """Downloads the config and tokenizer files of `HUB_SOURCES` into the Hugging Face cache."""
    from huggingface_hub import hf_hub_download

    failed = 0
    for folder, (repo, names) in HUB_SOURCES.items():
        for index, name in enumerate(names):
            try:
                hf_hub_download(repo, name)
            except Exception as error:  # each file on its own: report, go on
                if index > 0:
                    continue  # optional files may simply not exist in a repository
                failed += 1
                hint = " (gated: accept its licence on the hub, `hf auth login`)" \
                    if repo in GATED else ""
                first = str(error).strip().splitlines()
                print(f"{folder}: {repo}/{name} failed{hint}: "
                      f"{first[0] if first else type(error).__name__}", file=out)
                break
        else:
            print(f"{folder}: {repo}", file=out)
    print("done" if not failed else f"{failed} required files missing", file=out)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["fetch"]:
        return fetch()
    if args in ([], ["where"]):
        found = find()
        print(f"{found.path} ({found.source})" if found.path else found.reason())
        return 0 if found.path else 1
    print("usage: python -m fimlsp.tools.fixtures [where | fetch]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
