"""Claims in README.md and docs/ that can be checked mechanically are checked here, so a rename
cannot leave the documents pointing at something gone: every file of ours they name exists,
every `fimlsp` command and `fimlsp bench` benchmark they name is one, every `FIMLSP_*`
variable they name is read somewhere. (The option tables are generated and checked by
tests/test_options.py; the layout by tests/test_architecture.py.)
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "editors").glob("*/README.md"))]
# Where a file named by a path relative to a room may live: `engine/local.py` is fimlsp's.
BASES = [ROOT, ROOT / "fimlsp", ROOT / "fimlsp_bench", ROOT / "editors" / "neovim",
         ROOT / "editors" / "neovim" / "lua" / "fimlsp", ROOT / "editors" / "vscode",
         ROOT / "editors" / "emacs"]
# Files the documents name that are not ours: the standard library's (benchmark inputs),
# llama.cpp's converter, and files in a user's project or in an example workspace.
FOREIGN = {"argparse.py", "typing.py", "textwrap.py", "shlex.py", "fractions.py",
           "dataclasses.py", "csv.py", "convert_hf_to_gguf.py", "pkg/geometry.py",
           "settings.json", ".vscode/settings.json", "config.json", "tokenizer.json",
           "auth.json", ".nvim.lua", ".dir-locals.el", "init.lua", "shared/notes/design.md",
           "../shared/notes/design.md"}
SOURCE_SUFFIXES = ("py", "lua", "el", "ts", "json", "sh", "md", "toml")


def claims(pattern: str) -> list[tuple[str, str]]:
    """(document, match) for every match of `pattern` in the documents."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        found += [(document.relative_to(ROOT).as_posix(), m) for m in re.findall(pattern, text)]
    return found


@functools.cache
def package_paths() -> tuple[str, ...]:
    return tuple(path.as_posix() for path in (ROOT / "fimlsp").rglob("*"))


def exists(named: str) -> bool:
    if named.endswith("/"):
        return any((base / named).is_dir() for base in BASES)
    return any((base / named).is_file() for base in BASES) or any(
        path.endswith("/" + named) for path in package_paths())


def test_every_file_of_ours_the_documents_name_exists() -> None:
    suffixes = "|".join(SOURCE_SUFFIXES)
    named = claims(rf"`((?:[\w.-]+/)*[\w.-]+\.(?:{suffixes}))`")
    named += claims(r"`((?:fimlsp|fimlsp_bench|engine|repo|nextedit|tests|scripts)/(?:[\w.-]+/)*)`")
    missing = sorted({f"{doc}: {name}" for doc, name in named
                      if name not in FOREIGN and not exists(name)})
    assert missing == []


def test_every_command_the_documents_name_is_one() -> None:
    from fimlsp.cli import build_parser, load_benchmarks

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    benchmarks = set(load_benchmarks().available())
    wrong = sorted({f"{doc}: fimlsp {name}" for doc, name in claims(r"`fimlsp ([a-z][\w-]*)")
                    if name not in commands | {"for"}})  # "`fimlsp for VS Code 0.1.0`" is prose
    wrong += sorted({f"{doc}: fimlsp bench {name}" for doc, name in
                     claims(r"fimlsp bench ([a-z][\w-]*)") if name not in benchmarks})
    assert wrong == []


@functools.cache
def sources() -> dict[Path, str]:
    """Every file that may read a variable, read once (node_modules walked past, not into)."""
    texts: dict[Path, str] = {}
    for folder in ("fimlsp", "fimlsp_bench", "tests", "scripts", "editors"):
        for directory, names, files in os.walk(ROOT / folder):
            names[:] = [n for n in names if n not in {"node_modules", ".test-deps", ".deps"}]
            for name in files:
                path = Path(directory, name)
                if path.suffix in {".py", ".sh", ".lua", ".el", ".ts"}:
                    texts[path] = path.read_text(encoding="utf-8", errors="replace")
    for path in (ROOT / "Makefile", ROOT / ".ci" / "run"):
        texts[path] = path.read_text(encoding="utf-8")
    return texts


@pytest.mark.parametrize("variable", sorted({m for _, m in claims(r"\b(FIMLSP_[A-Z0-9_]+)")}))
def test_every_environment_variable_the_documents_name_is_read(variable: str) -> None:
    readers = [path for path, text in sources().items() if variable in text]
    assert readers, f"{variable} is documented but nothing reads it"
