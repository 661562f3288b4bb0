"""The workspace index's parts without a server: which files, what is parsed, BM25 kept in step
with edits, the per-request choice (resolution, dedup, stability) and the repository format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from fimlsp.context import Cursor, Snippet
from fimlsp.models import TEMPLATES, load_tokenizer
from fimlsp.prompt import neighbour_ids
from fimlsp.repo import analysis, files
from fimlsp.repo.analysis import terms
from fimlsp.repo.choose import RepoContext, imports
from fimlsp.repo.index import RepoIndex
from fimlsp.repo.parse import parse, parser_for

# -- parsing ---------------------------------------------------------------------------------

PYTHON = '''import os

LIMIT = 10


@decorated
def area(width: float, height: float) -> float:
    """Width times height."""
    return width * height


class Shape:
    """A shape."""
    name: str

    def scale(self, factor: float) -> "Shape":
        value = factor * 2
        return self

    async def draw(self) -> None:
        pass
'''


def names(source: str, ext: str) -> dict[str, tuple[str, str, int]]:
    return {d.name: (d.kind, d.container, d.line) for d in parse(source, ext).definitions}


def test_python_definitions_and_class_outline() -> None:
    parsed = parse(PYTHON, "py")
    assert parsed.parser == "tree-sitter"
    found = names(PYTHON, "py")
    assert found["area"] == ("function", "", 6)  # the `def` line, not the decorator
    assert found["Shape"][0] == "class" and found["scale"] == ("function", "Shape", 15)
    assert found["LIMIT"][0] == "variable" and "draw" in found
    outline = next(d for d in parsed.definitions if d.name == "Shape").text
    assert "def scale(self, factor: float)" in outline and "name: str" in outline


def test_typescript_go_and_rust_definitions() -> None:
    ts = ("export interface Point { x: number }\n"
          "export class Grid {\n  cells(): number { return 1 }\n}\n"
          "export function distance(a: Point, b: Point): number { return 0 }\n"
          "export const norm = (p: Point) => 1\n"
          "type Pair = [number, number]\n")
    found = names(ts, "ts")
    assert {"Point", "Grid", "cells", "distance", "norm", "Pair"} <= set(found)
    assert found["norm"][0] == "function" and found["cells"][1] == "Grid"
    go = "package m\n\ntype Server struct {\n\tPort int\n}\n\nfunc (s *Server) Run() error {\n" \
         "\treturn nil\n}\n\nfunc NewServer() *Server { return nil }\n"
    assert {"Server", "Run", "NewServer"} <= set(names(go, "go"))
    rust = "pub struct Cache { size: usize }\nimpl Cache {\n    pub fn get(&self) -> usize " \
           "{ 0 }\n}\npub fn build() -> Cache { Cache { size: 0 } }\n"
    assert {"Cache", "get", "build"} <= set(names(rust, "rs"))


def test_languages_without_a_grammar_use_the_regex() -> None:
    ruby = "class Account\n  def deposit(amount)\n    @balance += amount\n  end\nend\n"
    parsed = parse(ruby, "rb")
    assert parser_for("rb") is None and parsed.parser == "regex"
    assert {d.name for d in parsed.definitions} == {"Account", "deposit"}


def test_chunks_cover_the_file_at_syntax_boundaries() -> None:
    source = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y\n\n\n" for i in range(40))
    chunks = parse(source, "py").chunks
    assert "".join(c.text for c in chunks) == source.rstrip("\n") + "\n" or \
        sum(c.end_line - c.line for c in chunks) == len(source.splitlines())
    assert all(c.text.startswith("def ") for c in chunks)  # cut before a def, not inside


# -- which files -------------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "src" / "gen").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def app():\n    pass\n")
    (root / "src" / "notes.md").write_text("# not code\n")
    (root / "src" / "gen" / "out.py").write_text("def generated():\n    pass\n")
    (root / "src" / ".gitignore").write_text("gen/\n")
    (root / ".gitignore").write_text("*.log.py\n!keep.log.py\n")
    (root / "drop.log.py").write_text("x = 1\n")
    (root / "keep.log.py").write_text("x = 1\n")
    (root / ".env").write_text("TOKEN=1\n")
    (root / "id_rsa.py").write_text("KEY = 1\n")
    (root / "secrets.py").write_text("KEY = 1\n")
    (root / "big.py").write_text("x = 1\n" * (files.MAX_FILE_BYTES // 6 + 10))
    (root / "blob.py").write_bytes(b"\x00\x01\x02" * 10)
    (root / "bundle.min.js").write_text("function a(){}\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "i.js").write_text("function a(){}\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.py").write_text("x = 1\n")


def test_walk_keeps_what_git_would_track_and_only_source(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found = {c.path.relative_to(tmp_path).as_posix() for c in files.walk(tmp_path)}
    # blob.py is found by name and size; reading it (read_source) refuses it as binary.
    assert found == {"src/app.py", "keep.log.py", "blob.py"}, found
    assert files.read_source(tmp_path / "blob.py") is None
    assert files.read_source(tmp_path / "src" / "app.py") is not None


def test_links_and_paths_outside_the_folder_are_never_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "far.py").write_text("def far():\n    pass\n")
    os.symlink(outside, root / "linked")
    os.symlink(outside / "far.py", root / "far.py")
    assert list(files.walk(root)) == []
    assert files.admissible(outside / "far.py", [root]) is None
    assert files.admissible(root / "far.py", [root]) is None  # a link, even inside
    make_tree(root)
    assert files.admissible(root / "src" / "gen" / "out.py", [root]) is None  # ignored
    assert files.admissible(root / "secrets.py", [root]) is None
    assert files.admissible(root / "src" / "app.py", [root]) == (root / "src" / "app.py")


def test_remote_folders_are_not_local_paths(tmp_path: Path) -> None:
    assert files.folder_path("vscode-remote://ssh-remote+box/home/me") is None
    assert files.folder_path("file://otherhost/share") is None
    assert files.folder_path(tmp_path.as_uri()) == tmp_path.resolve()


# -- the index -------------------------------------------------------------------------------


def indexed(root: Path) -> RepoIndex:
    index = RepoIndex()
    index.use_worker = False  # these files are few: no process needed
    index.roots[root] = root.name
    index.index_files(index.candidates([root]))
    return index


def test_bm25_and_definitions_follow_edits(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def parse_invoice(text):\n    return invoice_lines(text)\n")
    (tmp_path / "b.py").write_text("def unrelated():\n    return 1\n")
    index = indexed(tmp_path)
    hits = index.search(terms("invoice_lines parse_invoice"), set())
    assert hits and hits[0].entry.rel == "a.py" and "invoice" in hits[0].matched
    assert [e.rel for e, _d in index.definitions("parse_invoice")] == ["a.py"]
    (tmp_path / "a.py").write_text("def parse_receipt(text):\n    return receipt_lines(text)\n")
    index.index_file(tmp_path, (tmp_path / "a.py").resolve())
    assert index.definitions("parse_invoice") == []
    assert not index.search(terms("invoice"), set())
    assert index.search(terms("receipt_lines"), set())[0].entry.rel == "a.py"
    index.remove_file((tmp_path / "a.py").resolve())
    assert index.definitions("parse_receipt") == [] and index.report()["files"] == 1
    assert index.memory_estimate() > 0


def test_the_parsing_process_sends_postings_in_small_slices_that_merge_exactly(
        tmp_path: Path) -> None:
    """The worker process inverts each file's postings and pickles them in slices of at most
    MERGE_SLICE terms, so the index thread never holds the GIL for one long unpickle; merged,
    they are exactly each chunk's terms, and a file's removal takes all of them out again."""
    big = "".join(f"def handler_{i}(request_{i}, payload_{i % 7}):\n"
                  f"    return dispatch_{i}(request_{i}.value_{i % 13})\n\n" for i in range(400))
    (tmp_path / "big.py").write_text(big)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text(f"def only_in_{name}(x):\n    return dispatch_1(x)\n")
    _parser, _defs, chunks, lengths, slices = analysis.analyse(str(tmp_path / "big.py"), 0)
    pieces = [pickle.loads(piece) for piece in slices]
    assert len(pieces) > 10 and all(len(p) <= analysis.MERGE_SLICE for p in pieces)
    assert lengths == [sum(terms(c.text).values()) for c in chunks]

    index = RepoIndex()  # four files: parsed in the worker process, as in a first index
    index.roots[tmp_path] = tmp_path.name
    try:
        index.index_files(index.candidates([tmp_path]))
    finally:
        index.release_worker(wait=True)
    assert len(index.files) == 4
    expected: dict[str, dict[int, int]] = {}
    for cid, (_path, chunk, length) in index._chunks.items():
        counts = terms(chunk.text)
        assert length == sum(counts.values())
        for term, count in counts.items():
            expected.setdefault(term, {})[cid] = count
    assert index._postings == expected
    assert index._total_length == sum(length for _p, _c, length in index._chunks.values())
    index.remove_file((tmp_path / "big.py").resolve())
    assert all(index._postings.values())  # no empty posting left
    kept = set(index._chunks)
    assert all(set(p) <= kept for p in index._postings.values())
    assert "handler_3" not in index._postings and "dispatch_1" in index._postings


def test_caps_stop_the_walk_and_say_which(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"m{i}.py").write_text(f"def f{i}():\n    pass\n")
    index = RepoIndex(max_files=3)
    assert len(index.candidates([tmp_path])) == 3
    assert index.progress.truncated == "maxFiles (3)"


# -- choosing ----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> RepoIndex:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "shapes.py").write_text(
        "def area(width, height):\n    return width * height\n\n\n"
        "def perimeter(width, height):\n    return 2 * (width + height)\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "shapes.py").write_text("def area(radius):\n    return 3 * radius\n")
    (tmp_path / "main.py").write_text("def local_helper():\n    pass\n")
    return indexed(tmp_path)


def cursor(text: str) -> Cursor:
    return Cursor(text, "\n", text.count("\n"), 0)


def test_imports_pick_the_definition_among_several(project: RepoIndex) -> None:
    root = next(iter(project.roots))
    key = (root / "main.py").as_uri()
    text = "from pkg.shapes import area\n\nx = area("
    snippets = RepoContext().choose(project, key, cursor(text), 4000)
    assert [(s.path, s.text.split("\n")[0]) for s in snippets] == [
        ("pkg/shapes.py", "def area(width, height):")]
    assert "imported from pkg/shapes" in snippets[0].reason
    text = "from other.shapes import area\n\nx = area("
    assert RepoContext().choose(project, key, cursor(text), 4000)[0].path == "other/shapes.py"
    assert imports("import numpy as np\nfrom .a.b import (c,\n d as e)\n") == {
        "np": "numpy", "c": "a/b", "e": "a/b", "d": "a/b"}
    assert imports("import { x, y as z } from './lib/util.js'\nconst q = require('q')\n") == {
        "x": "lib/util", "y": "lib/util", "z": "lib/util", "q": "q"}


def test_the_word_being_typed_and_the_files_own_names_are_not_looked_up(
        project: RepoIndex) -> None:
    root = next(iter(project.roots))
    key = (root / "main.py").as_uri()
    assert RepoContext().choose(project, key, cursor("x = perimete"), 4000) == []
    # local_helper is main.py's own (as indexed); area defined in the text itself
    assert RepoContext().choose(
        project, key, cursor("def area(a):\n    pass\n\nlocal_helper()\narea("), 4000) == []


def test_choice_grows_at_its_end_and_stays_while_typing(project: RepoIndex) -> None:
    root = next(iter(project.roots))
    key = (root / "main.py").as_uri()
    context = RepoContext()
    text = "import pkg.shapes as s\n\nx = s.area(2, 3)\ny = "
    first = context.choose(project, key, cursor(text), 4000)
    # `s.area`: the module alias says which of the two `area`s
    assert [(f.path, f.text.split("(")[0]) for f in first] == [("pkg/shapes.py", "def area")]
    for typed in ("s", "s.", "s.p", "s.peri", "s.perimeter"):
        assert context.choose(project, key, cursor(text + typed), 4000) == first
    grown = context.choose(project, key, cursor(text + "s.perimeter("), 4000)
    assert grown[:1] == first and grown[1].text.startswith("def perimeter")
    # Over budget, the definition farthest from the cursor goes first.
    small = len(grown[1].text) + 5
    assert [s.text.split("(")[0] for s in context.choose(
        project, key, cursor(text + "s.perimeter("), small)] == ["def perimeter"]


def test_an_open_documents_snippet_is_not_repeated(project: RepoIndex) -> None:
    root = next(iter(project.roots))
    key = (root / "main.py").as_uri()
    shapes = root / "pkg" / "shapes.py"
    held = [Snippet("pkg/shapes.py", shapes.read_text(), 0.5, 0, shapes.as_uri())]
    text = "from pkg.shapes import area\n\nx = area("
    assert RepoContext().choose(project, key, cursor(text), 4000, held) == []


# -- the repository format -----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["starcoder2", "qwen2.5-coder"])
def test_repo_name_opens_the_blocks_within_budget(shared: Path, family: str) -> None:
    tok = load_tokenizer(str(shared / "tokenizers" / family))
    template = TEMPLATES[family]
    snippets = [Snippet("pkg/shapes.py", "def area(width, height):\n    return 1\n", 100.0)]
    ids = neighbour_ids(tok, template, snippets, "main.py", 200, "my-project")
    text = tok.decode(ids, skip_special_tokens=False)
    assert text.startswith(template.repo_name + "my-project")
    assert text.index(template.file_sep + "pkg/shapes.py\ndef area") < \
        text.index(template.file_sep + "main.py\n")
    assert len(neighbour_ids(tok, template, snippets * 40, "main.py", 120, "p")) <= 120
    assert not tok.decode(neighbour_ids(tok, template, snippets, "main.py", 200),
                          skip_special_tokens=False).startswith(template.repo_name)
