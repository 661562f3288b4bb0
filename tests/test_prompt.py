"""build_prompt with the real tokenizers of every FIM family: layout, exact budget, fitting."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shared_fixtures import shared_or_skip
from tokenizers import Tokenizer

from fimlsp.context import Cursor, split_at
from fimlsp.documents import Text
from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import TEMPLATES, FimTemplate, load_tokenizer
from fimlsp.positions import units_len
from fimlsp.prompt import PREFIX_SHARE, Prompt, _share, build_prompt
from fimlsp.token_window import fit_head, fit_tail

CODE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"


@functools.cache
def tokenizer(folder: str) -> Tokenizer:
    return load_tokenizer(str(shared_or_skip() / "tokenizers" / folder))


def split_parts(prompt: Prompt, tok: Tokenizer, template: FimTemplate,
                order: str) -> tuple[list[int], list[int]]:
    """(prefix ids, suffix ids) of `prompt`, asserting the family's exact layout on the way."""
    pre, suf, mid = (tok.token_to_id(t) for t in (template.prefix, template.suffix,
                                                   template.middle))
    bos = [tok.token_to_id(template.bos)] if template.bos else []
    ids = prompt.ids
    n_pre, n_suf = prompt.prefix_tokens, prompt.suffix_tokens
    assert len(ids) == len(bos) + 3 + n_pre + n_suf
    assert ids[:len(bos)] == bos
    body = ids[len(bos):]
    if order == "psm":
        prefix, suffix = body[1:1 + n_pre], body[2 + n_pre:2 + n_pre + n_suf]
        assert body == [pre, *prefix, suf, *suffix, mid]
    elif template.spm_style == "neox":
        suffix, prefix = body[1:1 + n_suf], body[2 + n_suf:2 + n_suf + n_pre]
        assert body == [suf, *suffix, pre, *prefix, mid]
    else:
        suffix, prefix = body[2:2 + n_suf], body[3 + n_suf:]
        assert body == [pre, suf, *suffix, mid, *prefix]
    return prefix, suffix


def decode(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False)


# (id, tokenizer folder, template, order, expected leading ids, expected trailing ids)
LAYOUTS = [
    ("starcoder-psm", "starcoder", "starcoder", "psm", [1], [2]),
    ("starcoder-spm", "starcoder", "starcoder", "spm", [1, 3], None),
    ("santacoder-psm", "santacoder", "santacoder", "psm", [49153], [49154]),
    ("santacoder-spm", "santacoder", "santacoder", "spm", [49153, 49155], None),
    ("fim-neox-spm", "fim-neox-1.3b", "fim-neox", "spm", [50277], [50279]),
    ("deepseek-psm", "deepseek-coder", "deepseek-coder", "psm", [32013, 32016], [32017]),
    ("qwen-psm", "qwen2.5-coder", "qwen2.5-coder", "psm", [151659], [151660]),
    ("refact-psm", "refact-1_6b-fim", "refact", "psm", [1], [2]),
    ("starcoder2-psm", "starcoder2", "starcoder2", "psm", [1], [2]),
]


@pytest.mark.parametrize(("folder", "template", "order", "head", "tail"),
                         [row[1:] for row in LAYOUTS], ids=[row[0] for row in LAYOUTS])
def test_layout_and_round_trip_when_everything_fits(
        folder: str, template: str, order: str, head: list[int], tail: list[int] | None) -> None:
    tok, tpl = tokenizer(folder), TEMPLATES[template]
    cursor = split_at(CODE, 1, 11)  # "    return |a + b"
    prompt = build_prompt(tok, tpl, order, cursor, window=512, reserved=32)
    assert prompt.ids[:len(head)] == head
    if tail is not None:
        assert prompt.ids[-len(tail):] == tail
    prefix, suffix = split_parts(prompt, tok, tpl, order)
    assert decode(tok, prefix) == cursor.prefix
    assert decode(tok, suffix) == cursor.suffix
    assert (prompt.prefix_chars, prompt.suffix_chars) == (len(cursor.prefix), len(cursor.suffix))
    assert prompt.format == f"{template}/{order}"
    assert prompt.text == decode(tok, prompt.ids)
    assert len(prompt.ids) <= 512 - 32
    # Each special token appears exactly once.
    for token in (tpl.prefix, tpl.suffix, tpl.middle):
        assert prompt.ids.count(tok.token_to_id(token)) == 1


def test_starcoder_spm_exact_layout() -> None:
    tok = tokenizer("starcoder")
    cursor = split_at("a = 1\nb = 2\n", 1, 4)
    prompt = build_prompt(tok, TEMPLATES["starcoder"], "spm", cursor, 256, 16)
    s_ids = tok.encode("2\n", add_special_tokens=False).ids
    p_ids = tok.encode("a = 1\nb = ", add_special_tokens=False).ids
    assert prompt.ids == [1, 3, *s_ids, 2, *p_ids]
    assert prompt.text == "<fim_prefix><fim_suffix>2\n<fim_middle>a = 1\nb = "


def test_fim_neox_spm_exact_layout() -> None:
    tok = tokenizer("fim-neox-1.3b")
    cursor = split_at("a = 1\nb = 2\n", 1, 4)
    prompt = build_prompt(tok, TEMPLATES["fim-neox"], "spm", cursor, 256, 16)
    assert prompt.text == "<|SUF|>2\n<|PRE|>a = 1\nb = <|MID|>"
    assert prompt.ids[0] == 50277 and prompt.ids[-1] == 50279
    assert 50278 in prompt.ids


def test_deepseek_psm_starts_with_bos() -> None:
    tok = tokenizer("deepseek-coder")
    prompt = build_prompt(tok, TEMPLATES["deepseek-coder"], "psm", split_at(CODE, 0, 4), 128, 16)
    assert prompt.ids[:2] == [32013, 32016]
    assert prompt.ids.count(32013) == 1
    assert len(prompt.ids) <= 128 - 16


@pytest.mark.parametrize(
    ("folder", "template", "order", "literal", "special"),
    [
        ("starcoder", "starcoder", "spm", "<fim_middle>", "<fim_middle>"),
        ("starcoder", "starcoder", "psm", "<fim_prefix><fim_suffix>", "<fim_prefix>"),
        ("starcoder", "starcoder", "psm", "<|endoftext|>", "<|endoftext|>"),
        ("santacoder", "santacoder", "spm", "<fim-middle>", "<fim-middle>"),
        ("fim-neox-1.3b", "fim-neox", "spm", "<|MID|>", "<|MID|>"),
        ("deepseek-coder", "deepseek-coder", "psm", "<｜fim▁end｜>", "<｜fim▁end｜>"),
        ("qwen2.5-coder", "qwen2.5-coder", "psm", "<|fim_middle|>", "<|fim_middle|>"),
    ],
    ids=["starcoder-middle", "starcoder-prefix", "starcoder-eot", "santacoder", "neox",
         "deepseek", "qwen"],
)
def test_document_text_cannot_inject_special_tokens(folder: str, template: str, order: str,
                                                    literal: str, special: str) -> None:
    tok, tpl = tokenizer(folder), TEMPLATES[template]
    text = f"# a comment with {literal} in it\nx = '{literal}'\n"
    cursor = split_at(text, 1, 4)  # inside the string literal's line, before the quote
    prompt = build_prompt(tok, tpl, order, cursor, 256, 16)
    special_id = tok.token_to_id(special)
    expected = 1 if special in (tpl.prefix, tpl.suffix, tpl.middle) else 0
    assert prompt.ids.count(special_id) == expected
    prefix, suffix = split_parts(prompt, tok, tpl, order)
    assert decode(tok, prefix) + decode(tok, suffix) == text
    assert literal in decode(tok, prefix)


def long_lines(name: str, count: int) -> str:
    return "".join(f"    {name}_{i} = compute({i}) + offset\n" for i in range(count))


@pytest.mark.parametrize("order", ["psm", "spm"])
@pytest.mark.parametrize("window,reserved", [(96, 16), (256, 16), (600, 32)],
                         ids=["w96", "w256", "w600"])
def test_when_it_does_not_fit_whole_lines_are_kept(order: str, window: int,
                                                   reserved: int) -> None:
    tok, tpl = tokenizer("starcoder"), TEMPLATES["starcoder"]
    cursor = Cursor(long_lines("value", 300) + "    x = ", "1\n" + long_lines("other", 300),
                    0, 0)
    prompt = build_prompt(tok, tpl, order, cursor, window, reserved)
    assert len(prompt.ids) <= window - reserved
    prefix_ids, suffix_ids = split_parts(prompt, tok, tpl, order)
    kept_prefix, kept_suffix = decode(tok, prefix_ids), decode(tok, suffix_ids)
    # A tail of the real prefix that starts at a line start.
    assert cursor.prefix.endswith(kept_prefix)
    start = len(cursor.prefix) - len(kept_prefix)
    assert start > 0 and cursor.prefix[start - 1] == "\n"
    assert prompt.prefix_chars == len(kept_prefix)
    # A head of the real suffix that ends at a line end.
    assert cursor.suffix.startswith(kept_suffix)
    assert kept_suffix.endswith("\n") and len(kept_suffix) < len(cursor.suffix)
    assert prompt.suffix_chars == len(kept_suffix)
    # 3:1, and each side is as long as whole lines allow: one more line would not fit its share.
    budget = window - reserved - 3
    prefix_share = int(budget * PREFIX_SHARE)
    suffix_share = budget - prefix_share
    assert len(prefix_ids) <= prefix_share and len(suffix_ids) <= suffix_share
    previous_start = cursor.prefix.rfind("\n", 0, start - 1) + 1
    longer = tok.encode(cursor.prefix[previous_start:], add_special_tokens=False).ids
    assert len(longer) > prefix_share
    next_end = cursor.suffix.find("\n", len(kept_suffix)) + 1
    longer = tok.encode(cursor.suffix[:next_end], add_special_tokens=False).ids
    assert len(longer) > suffix_share


@pytest.mark.parametrize(
    ("budget", "prefix_need", "suffix_need", "expected"),
    [
        (100, 30, 40, (30, 40)),  # everything fits
        (100, 60, 40, (60, 40)),  # exactly fits
        (100, 500, 500, (75, 25)),  # both want more: 3:1
        (101, 500, 500, (75, 26)),  # the rounding goes to the suffix
        (100, 500, 10, (90, 10)),  # the suffix gives its unused share to the prefix
        (100, 10, 500, (10, 90)),  # the prefix gives its unused share to the suffix
        (100, 80, 25, (75, 25)),  # both over: still 3:1
        (100, 74, 500, (74, 26)),
    ],
    ids=["fits", "exact", "both-long", "odd-budget", "short-suffix", "short-prefix",
         "slightly-over", "prefix-under-share"],
)
def test_share(budget: int, prefix_need: int, suffix_need: int,
               expected: tuple[int, int]) -> None:
    assert _share(budget, prefix_need, suffix_need) == expected
    assert sum(_share(budget, prefix_need, suffix_need)) <= budget


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_a_short_side_gives_its_share_to_the_other(order: str) -> None:
    tok, tpl = tokenizer("starcoder"), TEMPLATES["starcoder"]
    window, reserved = 256, 16
    budget = window - reserved - 3
    # Short suffix: the prefix takes well over its 3/4.
    cursor = Cursor(long_lines("value", 300), "x\n", 0, 0)
    prompt = build_prompt(tok, tpl, order, cursor, window, reserved)
    assert prompt.suffix_tokens == len(tok.encode("x\n", add_special_tokens=False).ids)
    assert prompt.prefix_tokens > int(budget * PREFIX_SHARE)
    assert prompt.prefix_tokens + prompt.suffix_tokens <= budget
    # Short prefix: the suffix takes well over its 1/4.
    cursor = Cursor("x = ", "1\n" + long_lines("other", 300), 0, 0)
    prompt = build_prompt(tok, tpl, order, cursor, window, reserved)
    assert prompt.prefix_tokens == len(tok.encode("x = ", add_special_tokens=False).ids)
    assert prompt.suffix_tokens > budget - int(budget * PREFIX_SHARE)
    assert prompt.prefix_tokens + prompt.suffix_tokens <= budget


@pytest.mark.parametrize(
    ("text", "budget"),
    [("short text", 50), ("a\nb\nc\n", 100), ("", 10), ("x" * 100, 0)],
    ids=["fits", "lines", "empty", "zero-budget"],
)
def test_fit_tail_and_head_edges(text: str, budget: int) -> None:
    tok = tokenizer("starcoder")
    ids, start = fit_tail(tok, text, budget)
    assert decode(tok, ids) == text[start:] and len(ids) <= budget
    ids, end = fit_head(tok, text, budget)
    assert decode(tok, ids) == text[:end] and len(ids) <= budget
    if budget >= len(tok.encode(text, add_special_tokens=False).ids):
        assert (start, end) == (0, len(text))


def test_wrong_order_for_the_family_is_a_config_error() -> None:
    with pytest.raises(FimError) as info:
        build_prompt(tokenizer("fim-neox-1.3b"), TEMPLATES["fim-neox"], "psm",
                     split_at(CODE, 0, 0), 256, 16)
    assert info.value.kind is ErrorKind.CONFIG and "PSM" in info.value.message
    with pytest.raises(FimError) as info:
        build_prompt(tokenizer("deepseek-coder"), TEMPLATES["deepseek-coder"], "spm",
                     split_at(CODE, 0, 0), 256, 16)
    assert info.value.kind is ErrorKind.CONFIG


def test_template_tokens_missing_from_the_vocabulary_is_a_config_error() -> None:
    with pytest.raises(FimError) as info:
        build_prompt(tokenizer("fim-neox-1.3b"), TEMPLATES["starcoder"], "psm",
                     split_at(CODE, 0, 0), 256, 16)
    assert info.value.kind is ErrorKind.CONFIG and "<fim_prefix>" in info.value.message


@pytest.mark.parametrize("window,reserved", [(18, 8), (64, 54), (64, 64)])
def test_window_too_small_for_the_answer_is_a_config_error(window: int, reserved: int) -> None:
    with pytest.raises(FimError) as info:
        build_prompt(tokenizer("starcoder"), TEMPLATES["starcoder"], "spm",
                     split_at(CODE, 0, 0), window, reserved)
    assert info.value.kind is ErrorKind.CONFIG


def test_minified_200k_character_line() -> None:
    tok, tpl = tokenizer("starcoder"), TEMPLATES["starcoder"]
    line = "".join(f"var a{i}=function(b){{return b*{i}}};" for i in range(6000))[:200_000]
    assert len(line) == 200_000
    cursor = split_at(line, 0, 100_000)
    for order in ("psm", "spm"):
        prompt = build_prompt(tok, tpl, order, cursor, 8192, 64)
        assert len(prompt.ids) <= 8192 - 64
        assert prompt.prefix_tokens > 4000 and prompt.suffix_tokens > 1000
        prefix, suffix = split_parts(prompt, tok, tpl, order)
        assert cursor.prefix.endswith(decode(tok, prefix))
        assert cursor.suffix.startswith(decode(tok, suffix))


def test_100k_line_file() -> None:
    tok, tpl = tokenizer("starcoder"), TEMPLATES["starcoder"]
    text = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(50_000))
    assert text.count("\n") == 100_000
    cursor = split_at(text, 50_001, 11)
    prompt = build_prompt(tok, tpl, "spm", cursor, 8192, 64)
    assert len(prompt.ids) <= 8192 - 64
    prefix, suffix = split_parts(prompt, tok, tpl, "spm")
    kept = decode(tok, prefix)
    assert cursor.prefix.endswith(kept) and cursor.prefix[-len(kept) - 1] == "\n"
    assert cursor.suffix.startswith(decode(tok, suffix))
    assert prompt.prefix_tokens + prompt.suffix_tokens > 8192 - 64 - 3 - 40


# -- property: nothing ever exceeds the budget, and what is kept is really the document ---------

FRAGMENTS = ["def ", "x", "y1", " ", "  ", "\t", "中文", "\N{GRINNING FACE}", "é", "return",
             "{", "}", "(", ")", ":", " = ", "1", "<fim_middle>", "    ", "//", "\"s\"", "ß"]
# deepseek-coder's real tokenizer has these as added (non-special) tokens whose content the
# byte-level decoder reads as single bytes: "õ" encodes to id 32000 and decodes to U+FFFD.
DEEPSEEK_ADDED = "õ÷Áýÿø úþüùöûÀ".replace(" ", "")
FAMILIES = [("starcoder", "starcoder", "spm"), ("starcoder", "starcoder", "psm"),
            ("fim-neox-1.3b", "fim-neox", "spm"), ("deepseek-coder", "deepseek-coder", "psm")]


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, int, int]:
    line_strategy = st.one_of(
        st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
        st.tuples(st.sampled_from(FRAGMENTS), st.integers(50, 400)).map(lambda t: t[0] * t[1]),
        # Up to plane 3: StarCoder's real vocabulary has no token for the UTF-8 lead byte 0xF1
        # (U+40000..U+7FFFF), so those characters cannot round-trip through any prompt.
        st.text(st.characters(max_codepoint=0x3FFFF, exclude_categories=["Cs"]), max_size=30),
    )
    lines = draw(st.lists(line_strategy, min_size=1, max_size=40))
    breaks = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines),
                           max_size=len(lines)))
    # st.text may produce line breaks of its own; split_at counts lines the same way LSP does.
    text = "".join(line + brk for line, brk in zip(lines, breaks, strict=True))
    if draw(st.booleans()):
        text = text[:-len(breaks[-1])]  # no final line break
    doc = Text(text)
    line = draw(st.integers(0, doc.line_count - 1))
    content = doc.slice(doc.line_start(line), doc.line_end(line))
    character = draw(st.integers(0, units_len(content)))
    return text, line, character


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), family=st.sampled_from(FAMILIES), window=st.integers(64, 600),
       reserved=st.integers(8, 32))
def test_property_prompt_fits_and_is_the_document(doc: tuple[str, int, int],
                                                  family: tuple[str, str, str], window: int,
                                                  reserved: int) -> None:
    text, line, character = doc
    folder, template, order = family
    tok, tpl = tokenizer(folder), TEMPLATES[template]
    if template == "deepseek-coder":
        assume(not any(ch in text for ch in DEEPSEEK_ADDED))
    cursor = split_at(text, line, character)
    prompt = build_prompt(tok, tpl, order, cursor, window, reserved)
    assert len(prompt.ids) <= window - reserved
    prefix, suffix = split_parts(prompt, tok, tpl, order)
    # The NeoX (and Qwen) tokenizers NFC-normalize: compare with what they were given.
    norm = tok.normalizer.normalize_str if tok.normalizer else (lambda text: text)
    kept_prefix, kept_suffix = decode(tok, prefix), decode(tok, suffix)
    assert 0 <= prompt.prefix_chars <= len(cursor.prefix)
    assert 0 <= prompt.suffix_chars <= len(cursor.suffix)
    assert kept_prefix == norm(cursor.prefix[len(cursor.prefix) - prompt.prefix_chars:])
    assert kept_suffix == norm(cursor.suffix[:prompt.suffix_chars])


def test_load_tokenizer_on_a_folder_matches_from_file(shared: Path) -> None:
    folder = shared / "tokenizers" / "starcoder"
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    raw.encode_special_tokens = True
    loaded = load_tokenizer(str(folder))
    text = "x = '<fim_middle>'  # 中文"
    assert loaded.encode(text, add_special_tokens=False).ids == raw.encode(
        text, add_special_tokens=False).ids
    assert 2 not in loaded.encode(text, add_special_tokens=False).ids
