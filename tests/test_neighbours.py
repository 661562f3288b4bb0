"""Neighbour context: snippets of other open documents, chosen by similarity, kept stable."""

from __future__ import annotations

import itertools
from pathlib import Path

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import Snippet, query_words, similar_snippets, split_at
from fimlsp.engine.decoding import common_prefix
from fimlsp.models import TEMPLATES, load_tokenizer
from fimlsp.prompt import build_prompt, comment_marker, neighbour_ids

CURRENT = "file:///work/app/main.py"
HELPERS = "file:///work/app/geometry.py"
UNRELATED = "file:///work/app/colours.py"
GEOMETRY = "".join([
    "import math\n\n\n",
    "def distance(point_a, point_b):\n",
    "    dx = point_b.x - point_a.x\n",
    "    dy = point_b.y - point_a.y\n",
    "    return math.hypot(dx, dy)\n\n\n",
    *(f"def helper_{i}(value):\n    return value * {i}\n\n" for i in range(40)),
])
COLOURS = "".join(f"RED_{i} = 'crimson {i}'\nBLUE_{i} = 'navy {i}'\n" for i in range(60))
MAIN = ("from geometry import distance\n\n\n"
        "def route_length(points):\n"
        "    total = 0\n"
        "    for point_a, point_b in zip(points, points[1:]):\n"
        "        total += \n"
        "    return total\n")
CURSOR = (6, 17)  # after "        total += "


def documents() -> dict[str, str]:
    return {CURRENT: MAIN, HELPERS: GEOMETRY, UNRELATED: COLOURS}


def test_the_most_similar_window_of_another_document_is_chosen() -> None:
    cursor = split_at(MAIN, *CURSOR)
    snippets = similar_snippets(query_words(cursor), documents(), CURRENT, max_chars=2000)
    assert snippets, "nothing chosen"
    best = snippets[-1]  # best last: closest to the code being completed
    assert best.path == "app/geometry.py"
    assert "def distance(point_a, point_b):" in best.text
    assert all(s.path != "app/main.py" for s in snippets)  # never the document itself
    assert all("crimson" not in s.text for s in snippets)  # unrelated stays out
    assert sum(len(s.text) for s in snippets) <= 2000


def test_typing_on_the_cursor_line_does_not_change_the_query() -> None:
    cursor = split_at(MAIN, *CURSOR)
    typed = type(cursor)(cursor.prefix + "distance(point_a, point_b)", cursor.suffix,
                         cursor.line, cursor.character + 26)
    assert query_words(cursor) == query_words(typed)


def test_small_budget_keeps_the_best_snippets() -> None:
    tok = load_tokenizer_for("starcoder")
    snippets = [Snippet("a.py", "alpha = 1\n" * 40, 0.2), Snippet("b.py", "beta = 2\n", 0.9)]
    ids = neighbour_ids(tok, TEMPLATES["starcoder"], snippets, "main.py", budget=30)
    text = tok.decode(ids, skip_special_tokens=False)
    assert "b.py" in text and "a.py" not in text  # the less similar one is dropped first
    assert len(ids) <= 30
    assert neighbour_ids(tok, TEMPLATES["starcoder"], snippets, "main.py", budget=3) == []


def test_repository_format_for_families_trained_on_it() -> None:
    snippet = [Snippet("app/geometry.py", "def distance(a, b):\n    pass\n", 0.5)]
    for folder, template, sep in (("starcoder2", "starcoder2", "<file_sep>"),
                                  ("qwen2.5-coder", "qwen2.5-coder", "<|file_sep|>")):
        tok = load_tokenizer_for(folder)
        ids = neighbour_ids(tok, TEMPLATES[template], snippet, "app/main.py", 500)
        assert ids[0] == tok.token_to_id(sep)
        text = tok.decode(ids, skip_special_tokens=False)
        assert text == f"{sep}app/geometry.py\ndef distance(a, b):\n    pass\n{sep}app/main.py\n"


def test_comment_format_uses_the_languages_marker() -> None:
    assert comment_marker("src/app.ts") == "//" and comment_marker("x.py") == "#"
    assert comment_marker("init.lua") == "--" and comment_marker(None) == "#"
    tok = load_tokenizer_for("starcoder")
    snippet = [Snippet("lib/util.ts", "export const x = 1;\n", 0.5)]
    ids = neighbour_ids(tok, TEMPLATES["starcoder"], snippet, "src/app.ts", 500)
    assert tok.decode(ids) == ("// Compare this snippet from lib/util.ts:\n"
                               "// export const x = 1;\n")


def test_snippets_come_first_and_the_whole_prompt_still_fits() -> None:
    tok = load_tokenizer_for("starcoder")
    cursor = split_at(MAIN, *CURSOR)
    snippets = similar_snippets(query_words(cursor), documents(), CURRENT, 4000)
    prompt = build_prompt(tok, TEMPLATES["starcoder"], "spm", cursor, 256, 32,
                          snippets=snippets, path="app/main.py", neighbour_share=0.25)
    assert 0 < prompt.neighbour_tokens <= int((256 - 32 - 3) * 0.25)
    assert len(prompt.ids) <= 256 - 32
    fim_start = prompt.ids.index(tok.token_to_id("<fim_prefix>"))
    assert fim_start == prompt.neighbour_tokens  # context first, then the FIM part
    assert "Compare this snippet from app/geometry.py" in prompt.text


def test_completer_keeps_the_same_snippets_while_typing(tmp_path: Path, shared: Path) -> None:
    completer = Completer(Settings(model=str(shared / "tokenizers" / "starcoder"),
                                   template="starcoder", neighbour_share=0.25,
                                   context_window=1024))
    docs = documents()
    completer.documents = lambda: docs
    prompts = []
    for typed in ("", "d", "di", "dis", "dist", "distance(", "distance(point_a"):
        line = MAIN.split("\n")[CURSOR[0]][:CURSOR[1]] + typed
        docs[CURRENT] = MAIN.replace("        total += \n", line + "\n")
        cursor = split_at(docs[CURRENT], CURSOR[0], CURSOR[1] + len(typed))
        prompts.append(completer.prompt_for(cursor, CURRENT))
    assert all(p.neighbour_tokens > 0 for p in prompts)
    for before, after in itertools.pairwise(prompts):
        assert common_prefix(before.ids, after.ids) >= len(before.ids) - 2


def test_neighbours_off_by_setting(shared: Path) -> None:
    completer = Completer(Settings(model=str(shared / "tokenizers" / "starcoder"),
                                   template="starcoder", neighbour_share=0.0))
    completer.documents = documents
    prompt = completer.prompt_for(split_at(MAIN, *CURSOR), CURRENT)
    assert prompt.neighbour_tokens == 0


def load_tokenizer_for(folder: str):
    from shared_fixtures import shared_or_skip

    return load_tokenizer(str(shared_or_skip() / "tokenizers" / folder))
