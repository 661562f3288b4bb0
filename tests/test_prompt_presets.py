"""Every preset's prompts on its real tokenizer, and what typing does to them.

The KV cache survives a keystroke only if the new prompt starts with the old one; these tests
check that the prompt builder keeps that true for SPM presets (the new text lands at the very
end) and that sticky window edges hold while the user types below them.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
from shared_fixtures import shared_or_skip
from tokenizers import Tokenizer

from fimlsp.context import split_at
from fimlsp.engine.decoding import common_prefix
from fimlsp.models import PRESETS, TEMPLATES, Preset, load_tokenizer, resolve_model
from fimlsp.prompt import Edges, build_prompt

# Which real tokenizer (folder in shared/tokenizers) each preset's model ships.
TOKENIZER_OF = {
    "tiny-starcoder": "starcoder", "starcoderbase-1b": "starcoder", "starcoder-15b": "starcoder",
    "starcoder-gpteacher": "starcoder", "santacoder": "santacoder",
    "fim-neox-1.3b": "fim-neox-1.3b", "refact-1.6b": "refact-1_6b-fim",
    "starcoder2-3b": "starcoder2", "qwen2.5-coder-1.5b": "qwen2.5-coder",
    "deepseek-coder-1.3b": "deepseek-coder", "zeta": "qwen2.5-coder",
}
DOC = (
    "import os\n\n\n"
    "def read(path: str) -> str:\n"
    "    \"\"\"Reads a file: 日本語, emoji 🚀, tabs\tand CRLF\r\n\"\"\"\n"
    "    with open(path) as handle:\n"
    "        return handle.read()\n\n\n"
    "print(read(os.devnull))\n"
)
CURSOR = (6, 15)  # inside "        return |handle.read()"


@functools.cache
def tokenizer(folder: str) -> Tokenizer:
    return load_tokenizer(str(shared_or_skip() / "tokenizers" / folder))


def ids_of(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids if text else []


def expected_layout(preset: Preset, tok: Tokenizer, prefix: str, suffix: str) -> list[int]:
    """The ids the family was trained on, written out independently of prompt.py."""
    t = TEMPLATES[preset.template]
    pre, suf, mid = (tok.token_to_id(x) for x in (t.prefix, t.suffix, t.middle))
    bos = [tok.token_to_id(t.bos)] if t.bos else []
    p, s = ids_of(tok, prefix), ids_of(tok, suffix)
    if preset.order == "psm":
        return [*bos, pre, *p, suf, *s, mid]
    if t.spm_style == "neox":
        return [*bos, suf, *s, pre, *p, mid]
    return [*bos, pre, suf, *s, mid, *p]


def test_every_seed_preset_is_covered() -> None:
    assert set(TOKENIZER_OF) == set(PRESETS)
    for name in ("starcoderbase-1b", "santacoder", "fim-neox-1.3b", "refact-1.6b",
                 "starcoder-15b", "tiny-starcoder"):
        assert name in PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_prompt_is_the_trained_layout_and_round_trips(name: str) -> None:
    preset = PRESETS[name]
    tok = tokenizer(TOKENIZER_OF[name])
    spec = resolve_model(name)
    assert spec.template.name == preset.template and spec.order == preset.order
    cursor = split_at(DOC, *CURSOR)
    prompt = build_prompt(tok, spec.template, spec.order, cursor, preset.window, 64)
    assert prompt.ids == expected_layout(preset, tok, cursor.prefix, cursor.suffix)
    assert prompt.prefix_tokens + prompt.suffix_tokens + 3 + bool(spec.template.bos) == len(
        prompt.ids)
    assert len(prompt.ids) <= preset.window - 64
    # Every special token of the template is a single id in this vocabulary.
    for token in (spec.template.prefix, spec.template.suffix, spec.template.middle):
        assert tok.token_to_id(token) is not None, token


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_prompt_fits_a_small_window_exactly(name: str) -> None:
    _preset, tok = PRESETS[name], tokenizer(TOKENIZER_OF[name])
    spec = resolve_model(name)
    big = "".join(f"value_{i} = compute({i}, 'x' * {i})\n" for i in range(3000))
    text = big + "result = " + "\n" + big
    cursor = split_at(text, 3000, len("result = "))
    for window in (64, 300, 1000):
        prompt = build_prompt(tok, spec.template, spec.order, cursor, window, 16)
        assert len(prompt.ids) <= window - 16
        assert prompt.prefix_tokens > 0 and prompt.suffix_tokens > 0


def type_run(name: str, text: str, line: int, character: int, typed: str,
             window: int) -> list[tuple[list[int], int, int]]:
    """Types `typed` one character at a time; returns (ids, prefix_start, suffix_chars) each."""
    spec, tok = resolve_model(name), tokenizer(TOKENIZER_OF[name])
    edges = Edges()
    runs = []
    for i in range(len(typed) + 1):
        cursor = split_at(text, line, character)
        cursor = type(cursor)(cursor.prefix + typed[:i], cursor.suffix, line, character + i)
        prompt = build_prompt(tok, spec.template, spec.order, cursor, window, 64, edges)
        runs.append((prompt.ids, len(cursor.prefix) - prompt.prefix_chars, prompt.suffix_chars))
    return runs


SPM_PRESETS = sorted(n for n, p in PRESETS.items() if p.order == "spm")
TYPED = "if handle.closed:  # emoji 🚀 and 日本"


@pytest.mark.parametrize("name", SPM_PRESETS)
def test_typing_changes_an_spm_prompt_only_at_its_end(name: str) -> None:
    runs = type_run(name, DOC, *CURSOR, TYPED, window=PRESETS[name].window)
    # FIM-NeoX ends with <|MID|> after the prefix: that one token moves with the new text.
    trailing = 1 if TEMPLATES[PRESETS[name].template].spm_style == "neox" else 0
    for (before, _, _), (after, _, _) in itertools.pairwise(runs):
        shared = common_prefix(before, after)
        # BPE may re-merge the last token or two before the new character, nothing earlier.
        assert shared >= len(before) - 2 - trailing, (len(before), shared)


@pytest.mark.parametrize("name", ["starcoderbase-1b", "fim-neox-1.3b", "santacoder"])
def test_typing_below_a_sticky_edge_keeps_the_prompt_start(name: str) -> None:
    lines = [f"    total += weight_{i} * value_{i}  # step {i}" for i in range(4000)]
    text = "def run():\n    total = 0\n" + "\n".join(lines) + "\n    return total\n"
    line = 2 + 3000  # deep in the file: both edges must be cut
    runs = type_run(name, text, line, 4, "total = max(total, 0) + adjust(total)", window=1024)
    starts = {start for _, start, _ in runs}
    ends = {end for _, _, end in runs}
    assert len(starts) == 1, "the prefix edge moved while typing below it"
    assert len(ends) == 1, "the suffix edge moved while typing above it"
    first_start = next(iter(starts))
    assert first_start > 0  # it was really cut
    trailing = 1 if name == "fim-neox-1.3b" else 0
    for (before, _, _), (after, _, _) in itertools.pairwise(runs):
        assert common_prefix(before, after) >= len(before) - 2 - trailing
    # The slack: right after the cut the prompt is well under the budget, so it can grow.
    assert len(runs[0][0]) <= 1024 - 64 - int((1024 - 64) * 0.1)


def test_an_edge_moves_once_the_typing_outgrows_the_slack() -> None:
    lines = [f"x_{i} = {i}" for i in range(5000)]
    text = "\n".join(lines) + "\n"
    runs = type_run("starcoderbase-1b", text, 4000, 0, "y = 1\n" * 60, window=256)
    starts = [start for _, start, _ in runs]
    assert len(set(starts)) > 1  # it had to move …
    assert len(set(starts)) < len(runs) // 5  # … but not on every keystroke
    assert all(len(ids) <= 256 - 64 for ids, _, _ in runs)


def test_an_edit_above_the_edge_is_noticed() -> None:
    spec, tok = resolve_model("starcoderbase-1b"), tokenizer("starcoder")
    text = "".join(f"item_{i} = {i}\n" for i in range(3000))
    edges = Edges()
    first = build_prompt(tok, spec.template, spec.order, split_at(text, 2500, 0), 512, 64, edges)
    start = edges.prefix_start
    assert start > 0
    # Replace the line at the edge: the old start offset would now begin mid-line.
    line_at_edge = text.count("\n", 0, start)
    lines = text.split("\n")
    lines[line_at_edge] = "changed_" + lines[line_at_edge]
    cursor = split_at("\n".join(lines), 2500, 0)
    second = build_prompt(tok, spec.template, spec.order, cursor, 512, 64, edges)
    kept = second.text.split("<fim_middle>")[1]
    # The old offset now points 8 characters into a line; the new cut is at a line start.
    assert cursor.prefix.endswith(kept)
    assert cursor.prefix[len(cursor.prefix) - len(kept) - 1] == "\n"
    assert first.ids != second.ids


@pytest.mark.parametrize("folder", ["starcoder2", "deepseek-coder", "refact-1_6b-fim"])
def test_reference_vectors_through_our_loader(folder: str, shared: Path) -> None:
    """llama.cpp's tokenizer test vectors, produced by each model's original HF tokenizer."""
    base = shared / "tokenizers" / folder
    if not (base / "reference.inp").is_file():
        pytest.skip(f"llama.cpp's reference vectors for {folder} ship only in shared/, not on "
                    "the hub; set FIMLSP_SHARED")
    inputs = (base / "reference.inp").read_text(encoding="utf-8").split(
        "\n__ggml_vocab_test__\n")
    outputs = (base / "reference.out").read_text(encoding="utf-8").split("\n")
    tok = load_tokenizer(str(base))
    checked = 0
    for text, expected in zip(inputs, outputs, strict=False):
        want = [int(x) for x in expected.split()]
        assert ids_of(tok, text) == want, repr(text)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("folder", sorted(set(TOKENIZER_OF.values())))
@pytest.mark.parametrize("window", [200, 700, 2000])
def test_cut_parts_are_tokenized_as_a_fresh_encode_would(folder: str, window: int) -> None:
    """Cuts re-encode only a region and join it to the window's tokens: the result must be the
    tokenizer's own encoding of the kept text, not merely the same text."""
    name = next(n for n, f in TOKENIZER_OF.items() if f == folder)
    spec, tok = resolve_model(name), tokenizer(folder)
    body = "".join(
        f"class Item{i}:\n    def value(self) -> int:\n        return {i} * 2  # é 日本 🚀\n\n"
        for i in range(400))
    text = body + "x = Item3().value()\n" + body
    cursor = split_at(text, 1600, 4)
    edges = Edges()
    for typed in ("", "I", "It", "Item"):
        moved = type(cursor)(cursor.prefix + typed, cursor.suffix, cursor.line, 0)
        prompt = build_prompt(tok, spec.template, spec.order, moved, window, 32, edges)
        kept_prefix = moved.prefix[len(moved.prefix) - prompt.prefix_chars:]
        kept_suffix = moved.suffix[:prompt.suffix_chars]
        assert 0 < prompt.prefix_chars < len(moved.prefix)  # both sides really were cut
        assert 0 < prompt.suffix_chars < len(moved.suffix)
        assert prompt.ids == expected_layout(PRESETS[name], tok, kept_prefix, kept_suffix)
