"""Token healing (healing.py): the vocabulary index against a scan of the vocabulary, the
back-off at random cut points on every shipped tokenizer in both FIM orders, and the constrained
decode on a real (random-weight) model pushed by a forced logits processor.

The shipped tokenizers are all byte-level BPE (`Ġ`); a SentencePiece-style one (`▁`, byte
fallback `<0xNN>`) is trained here with the tokenizers library on the same code, so that spelling
is exercised too.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.engine.local import LocalEngine
from fimlsp.healing import (
    MAX_TOKENS,
    Constraint,
    back_off,
    index_for,
    strip,
    suggestion,
    token_bytes,
)
from fimlsp.models import TEMPLATES, load_tokenizer, resolve_model
from fimlsp.prompt import build_prompt

CODE = '''import os
import requests


class Client:
    """Fetches pages; retries on errors (ünïcödé: 東京, emoji 🚀)."""

    def __init__(self, session: requests.Session, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    def request_json(self, path, *, timeout=3.0):
        response = self.session.get(f"{self.base_url}/{path}", timeout=timeout)
        response.raise_for_status()
        return response.json()

\tdef tabbed(self):  # a tab, a NBSP\u00a0here, a combining é
\t\treturn os.path.join(self.base_url, "x") + 'ok'  \n
'''
# folder in shared/tokenizers → FIM template
FAMILIES = {"starcoder": "starcoder", "santacoder": "santacoder", "fim-neox-1.3b": "fim-neox",
            "refact-1_6b-fim": "refact", "starcoder2": "starcoder2",
            "qwen2.5-coder": "qwen2.5-coder", "deepseek-coder": "deepseek-coder"}
_SP = "sentencepiece"  # the tokenizer trained below


def sentencepiece_tokenizer() -> Tokenizer:
    """A SentencePiece-style BPE (Metaspace `▁`, byte-fallback `<0xNN>` tokens, no byte-level
    alphabet) trained on CODE: characters outside its alphabet become byte tokens."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                       prepend_scheme="first")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "),
                                           decoders.ByteFallback(), decoders.Fuse()])
    alphabet = [c for c in dict.fromkeys(CODE) if c.isascii()] + ["\u2581"]
    tokenizer.train_from_iterator([CODE] * 4, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=alphabet, limit_alphabet=len(alphabet),
        special_tokens=["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"],
        show_progress=False))
    state = json.loads(tokenizer.to_str())
    vocab = state["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    state["model"]["byte_fallback"] = True
    tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.encode_special_tokens = True
    return tokenizer


class Named(tuple):  # type: ignore[type-arg]
    """(name, tokenizer), shown by name only in failure reports."""

    def __repr__(self) -> str:
        return str(self[0])


@pytest.fixture(scope="module", params=[*FAMILIES, _SP])
def named(request: pytest.FixtureRequest, shared: Path) -> tuple[str, Tokenizer]:
    if request.param == _SP:
        return Named((_SP, sentencepiece_tokenizer()))
    return Named((request.param, load_tokenizer(str(shared / "tokenizers" / request.param))))


def _spelled(tokenizer: Tokenizer, text: str) -> bytes:
    pieces = index_for(tokenizer).pieces
    return b"".join(pieces[i] for i in tokenizer.encode(text, add_special_tokens=False).ids)


_TEXT = st.text(st.sampled_from(sorted(set(CODE) | set("éü東京🚀\u0301<>0x"))),
                min_size=1, max_size=40)
_FAST = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FAST
@given(text=_TEXT)
def test_token_bytes_spell_what_was_encoded(named: tuple[str, Tokenizer], text: str) -> None:
    """The index's bytes per token, joined, are the text's bytes (after the tokenizer's own
    normalizer; a SentencePiece-style one adds a space before the first word)."""
    name, tokenizer = named
    if tokenizer.normalizer is not None:
        text = unicodedata.normalize("NFC", text)
    spelled = _spelled(tokenizer, text)
    assert spelled in (text.encode(), b" " + text.encode()), (name, text, spelled)


def test_the_sentencepiece_fixture_uses_byte_tokens_and_metaspace() -> None:
    tokenizer = sentencepiece_tokenizer()
    tokens = tokenizer.encode("x = self.session 東", add_special_tokens=False).tokens
    assert any(t.startswith("<0x") for t in tokens), tokens
    assert any(t.startswith("\u2581") and len(t) > 2 for t in tokens), tokens


@_FAST
@given(data=st.data())
def test_consistent_tokens_equal_a_scan_of_the_vocabulary(named: tuple[str, Tokenizer],
                                                          data: st.DataObject) -> None:
    _, tokenizer = named
    index = index_for(tokenizer)
    raw = CODE.encode()
    start = data.draw(st.integers(0, len(raw) - 1))
    rest = raw[start:start + data.draw(st.integers(1, 12))]
    scan = sorted(i for i, p in enumerate(index.pieces)
                  if p and (p.startswith(rest) or (len(p) < len(rest) and rest.startswith(p))))
    assert index.consistent(rest) == scan
    allowed = index.allowed_tensor(rest, torch.device("cpu"))
    assert sorted(allowed.tolist()) == scan


@_FAST
@given(cut=st.integers(1, len(CODE) - 1), seed=st.integers(0, 2**16))
def test_masked_decoding_writes_the_removed_bytes_first(named: tuple[str, Tokenizer], cut: int,
                                                        seed: int) -> None:
    """Without a model: random logits, pushed toward random tokens, go through the mask step by
    step on every tokenizer; the tokens sampled spell the removed bytes and then go on."""
    _, tokenizer = named
    prefix = CODE[:cut]
    heal = back_off(tokenizer, tokenizer.encode(prefix, add_special_tokens=False).ids, prefix)
    if heal is None:
        return
    generator = torch.Generator().manual_seed(seed)
    size = tokenizer.get_vocab_size() + 64  # padded embedding rows, as some models have
    constraint = Constraint(tokenizer, heal)
    pieces = index_for(tokenizer).pieces
    written = b""
    for _ in range(len(heal.data)):
        if not constraint.active:
            break
        logits = torch.randn(size, generator=generator) * 10
        token = int(torch.argmax(constraint.mask(logits)))
        constraint.feed(token)
        written += pieces[token]
    assert not constraint.active and not constraint.failed
    assert written.startswith(heal.data)


def test_the_index_is_built_once_per_tokenizer(shared: Path) -> None:
    tokenizer = load_tokenizer(str(shared / "tokenizers" / "starcoder"))
    assert index_for(tokenizer) is index_for(tokenizer)
    pieces = token_bytes(tokenizer)
    assert pieces[tokenizer.token_to_id("Ġreturn")] == b" return"
    assert pieces[tokenizer.token_to_id("<fim_middle>")] == b""  # special: never healed into


_WORD_END = re.compile(r"(?:\w+|(?<=[^\s])[ \t]+)\Z")


@_FAST
@given(cut=st.integers(1, len(CODE) - 1), spm=st.booleans())
def test_back_off_at_random_cut_points(named: tuple[str, Tokenizer], cut: int,
                                       spm: bool) -> None:
    """The healed prompt is the plain one without the last few prefix tokens, in both orders;
    those tokens spell the end of the prefix and cover the partial word; a cursor at a
    boundary (punctuation, a line break, indentation) is not healed at all."""
    name, tokenizer = named
    template = TEMPLATES["starcoder" if name == _SP else FAMILIES[name]]
    order = "spm" if spm and "spm" in template.orders else template.orders[0]
    cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
    plain = build_prompt(tokenizer, template, order, cursor, 2048, 16)
    healed = build_prompt(tokenizer, template, order, cursor, 2048, 16, heal=True)
    word = _WORD_END.search(cursor.prefix)
    if word is None:
        assert healed.heal is None and healed.ids == plain.ids
        return
    heal = healed.heal
    if heal is None:  # only with nothing before the word, or a cut inside a character
        assert plain.prefix_tokens <= 1 or not cursor.prefix[-64:].isascii(), cursor
        return
    assert cursor.prefix.endswith(heal.text)
    assert len(heal.text) >= len(word.group()) or len(heal.ids) == MAX_TOKENS \
        or healed.prefix_tokens == 1  # the first token always stays
    assert 1 <= len(heal.ids) <= MAX_TOKENS
    assert healed.prefix_tokens == plain.prefix_tokens - len(heal.ids)
    # The plain prompt is the healed one with the removed ids put back where the prefix ends.
    if order == "psm" or template.spm_style == "neox":
        end = plain.ids.index(tokenizer.token_to_id(
            template.suffix if order == "psm" else template.middle))
    else:
        end = len(plain.ids)
    assert tuple(plain.ids[end - len(heal.ids):end]) == heal.ids
    assert plain.ids[:end - len(heal.ids)] + plain.ids[end:] == healed.ids


def test_what_is_backed_off(shared: Path) -> None:
    tokenizer = load_tokenizer(str(shared / "tokenizers" / "starcoder"))

    def removed(prefix: str) -> str | None:
        ids = tokenizer.encode(prefix, add_special_tokens=False).ids
        heal = back_off(tokenizer, ids, prefix)
        return heal.text if heal else None

    assert removed("x = self.reque")is not None and "reque".endswith(
        removed("x = self.reque").lstrip("."))  # type: ignore[union-attr]
    assert removed("return ") == " "  # the trailing space
    assert removed("    ret") == " ret"  # the space BPE glues to the word goes with it
    assert removed("f(") is None and removed("x\n") is None
    assert removed("def f():\n    ") is None  # indentation alone stays
    assert removed("x") is None  # nothing would be left before it


def test_the_suggestion_drops_the_rewritten_text_even_where_the_decoder_drops_a_space() -> None:
    """A SentencePiece decoder strips the first token's `▁`: the removed ` req` comes back
    decoded as `req…`, and the suggestion is still what follows it."""
    tokenizer = sentencepiece_tokenizer()
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "),
                                           decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    prefix = "x = 1\nimport req"
    ids = tokenizer.encode(prefix, add_special_tokens=False).ids
    heal = back_off(tokenizer, ids, prefix)
    assert heal is not None and heal.text.startswith(" ")
    written = tokenizer.encode(" requests.Session,", add_special_tokens=False).ids
    if tokenizer.decode(written).startswith(" "):
        pytest.skip("this tokenizers version keeps the space")
    assert suggestion(tokenizer, written, heal) == " requests.Session,"[len(heal.text):]
    assert suggestion(tokenizer, written[:0], heal) == ""  # nothing written yet
    assert suggestion(tokenizer, written, None) == tokenizer.decode(written)


# -- the constrained decode -----------------------------------------------------------------------


class Forced(LocalEngine):
    """A logits processor in the engine: the logits of every forward go through `push`, with
    the number of tokens the session holds then, so a random-weight model can be made to want
    any token at any step."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.push: Callable[[int, torch.Tensor], torch.Tensor] = lambda fed, logits: logits

    def _forward(self, session, ids, all_logits=False):  # type: ignore[no-untyped-def]
        logits = super()._forward(session, ids, all_logits)
        return self.push(len(session.ids), logits)


@pytest.fixture(scope="module")
def forced(tiny_model: Path) -> tuple[Forced, Tokenizer]:
    spec = resolve_model(str(tiny_model))
    engine = Forced(*_loaded(spec))
    return engine, load_tokenizer(str(tiny_model))


def _loaded(spec):  # type: ignore[no-untyped-def]
    from fimlsp.engine.checkpoint import load_model

    return load_model(spec, Settings(device="cpu", quantization="none"))


def _cuts(count: int, seed: int) -> list[int]:
    """Cut points inside words or after a space on a line."""
    rng = random.Random(seed)
    places = [m.end() - rng.randint(0, len(m.group()) - 1) for m in re.finditer(r"\w+ ?", CODE)]
    return sorted(rng.sample(places, count))


def test_constrained_decode_never_contradicts_the_removed_text(
        forced: tuple[Forced, Tokenizer]) -> None:
    """Biases push the model toward random tokens — most of them inconsistent with the removed
    text, some of them prefixes or extensions of it — at every step; what comes out always
    writes the removed text first, then goes on freely."""
    engine, tokenizer = forced
    template = TEMPLATES["starcoder"]
    rng = random.Random(1)
    vocab = tokenizer.get_vocab_size()
    checked = 0
    for cut in _cuts(25, seed=2):
        cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
        prompt = build_prompt(tokenizer, template, "spm", cursor, 2048, 16, heal=True)
        if prompt.heal is None:
            continue
        consistent = index_for(tokenizer).consistent(prompt.heal.data)
        lures = rng.sample(range(vocab), 300) + rng.sample(consistent, min(5, len(consistent)))
        bias = torch.zeros(engine.model.config.vocab_size)
        bias[lures] = torch.rand(len(lures)) * 40 + 20

        engine.push = lambda fed, logits, bias=bias: logits + bias[:logits.shape[-1]]
        constraint = Constraint(tokenizer, prompt.heal)
        result = engine.generate("doc", prompt.ids, max_new_tokens=12, stop_ids=set(),
                                 constraint=constraint)
        text = tokenizer.decode(result.ids, skip_special_tokens=True)
        assert text.startswith(prompt.heal.text), (prompt.heal.text, text)
        assert not constraint.active and not constraint.failed
        checked += 1
    assert checked >= 15


def test_rewriting_the_removed_tokens_gives_exactly_the_unhealed_answer(
        forced: tuple[Forced, Tokenizer]) -> None:
    """SPM (the prefix ends the prompt): where the constrained decode writes the removed tokens
    again (forced here), the cache then holds the unhealed prompt, so the answer after them is
    the unhealed one, token for token, and the stripped text equals it. (In PSM the removed
    tokens come back after `<fim_middle>`, not where the prefix ended: a different sequence.)"""
    engine, tokenizer = forced
    template = TEMPLATES["starcoder"]
    checked = 0
    for cut in _cuts(10, seed=3):
        cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
        plain = build_prompt(tokenizer, template, "spm", cursor, 2048, 16)
        prompt = build_prompt(tokenizer, template, "spm", cursor, 2048, 16, heal=True)
        if prompt.heal is None:
            continue
        engine.push = lambda fed, logits: logits
        engine.drop_session("doc")
        expected = engine.generate("doc", plain.ids, max_new_tokens=8, stop_ids=set())
        removed = list(prompt.heal.ids)

        def force(fed: int, logits: torch.Tensor, base: int = len(prompt.ids),
                  removed: list[int] = removed) -> torch.Tensor:
            """The removed tokens, one per step after the healed prompt."""
            if 0 <= fed - base < len(removed):
                logits = logits.clone()
                logits[removed[fed - base]] += 1e4
            return logits

        engine.drop_session("doc")
        engine.push = force
        healed = engine.generate("doc", prompt.ids, max_new_tokens=8 + len(removed),
                                 stop_ids=set(), constraint=Constraint(tokenizer, prompt.heal))
        assert healed.ids == removed + expected.ids
        assert strip(tokenizer.decode(healed.ids), prompt.heal) == tokenizer.decode(expected.ids)
        checked += 1
    engine.push = lambda fed, logits: logits
    assert checked >= 5


# -- through the completer ------------------------------------------------------------------------


def _completer(model: Path, **options: object) -> Completer:
    completer = Completer(Settings(model=str(model), device="cpu", quantization="none",
                                   **options))  # type: ignore[arg-type]
    completer.load()
    return completer


def test_a_cursor_at_a_token_boundary_gives_exactly_todays_answer(tiny_model: Path) -> None:
    on = _completer(tiny_model, max_new_tokens=16)
    off = _completer(tiny_model, max_new_tokens=16, token_healing=False)
    boundaries = [m.end() for m in re.finditer(r"[(.:\n\"=]", CODE)][:12]
    for cut in boundaries:
        cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
        assert on.prompt_for(cursor).ids == off.prompt_for(cursor).ids
        a, b = on.complete("a.py", cursor), off.complete("b.py", cursor)
        assert (a.text, a.generated_tokens) == (b.text, b.generated_tokens)
    assert on.stats_report()["healed"] == 0


def test_the_completer_heals_mid_word_and_says_so(tiny_model: Path) -> None:
    completer = _completer(tiny_model, max_new_tokens=8)
    cut = CODE.index("self.session.get") + len("self.sess")
    cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
    prompt = completer.prompt_for(cursor)
    assert prompt.heal is not None and prompt.accounting()["healed"] == prompt.heal.text
    completer.complete("a.py", cursor)
    report = completer.stats_report()
    assert report["healed"] == 1 and report["token_healing"] == "on"
    # Same backed-off ids, different removed text: not answered from the recent answers.
    longer = Cursor(CODE[:cut + 1], CODE[cut + 1:], 0, 0)
    if completer.prompt_for(longer).ids == prompt.ids:
        assert completer.complete("a.py", longer).source == "model"
    off = Completer(Settings(model=str(tiny_model), token_healing=False))
    assert off.stats_report()["token_healing"] == "off (tokenHealing setting)"
    remote = Completer(Settings(model=str(tiny_model), engine="openai"))
    assert remote.stats_report()["token_healing"].startswith("off (the openai engine")
    assert remote.prompt_for(cursor).heal is None


# -- through the server, over stdio ---------------------------------------------------------------


@pytest.mark.slow
async def test_the_server_heals_mid_word_and_the_setting_turns_it_off(
        trained_model: Path, tmp_path: Path) -> None:
    """The real server in a subprocess: a mid-word request is healed (its prompt ends before
    the word, `fimlsp.stats` counts it), and `tokenHealing: false` from the client turns it off
    and says so."""
    from test_lsp import Doc, position_of, running, uri_for

    options = {"contextWindow": 384, "maxNewTokens": 12, "threads": 1, "typingThrough": False}
    async with running(trained_model, tmp_path, options) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        cut = CODE.index("self.session.get") + len("self.sess")
        doc = Doc(client, uri_for(tmp_path, "client.py"), CODE[:cut] + CODE[CODE.index(
            "\n", cut):])
        at = position_of(doc.text, cut)
        prompt = await client.prompt(doc.uri, at)
        assert prompt["healed"] and CODE[:cut].endswith(prompt["healed"])
        await client.inline(doc.uri, at)
        stats = await client.stats()
        assert stats["token_healing"] == "on" and stats["healed"] == 1
        assert stats["source"] == "model"

        client.configure(**options, tokenHealing=False)
        assert (await client.prompt(doc.uri, at))["healed"] == ""
        await client.inline(doc.uri, position_of(doc.text, cut))
        stats = await client.stats()
        assert stats["token_healing"] == "off (tokenHealing setting)" and stats["healed"] == 1


def test_speculation_after_the_constraint_gives_the_same_healed_answer(
        forced: tuple[Forced, Tokenizer]) -> None:
    """Drafts are off while the constraint is active and on after it: the healed answer is the
    same with prompt-lookup speculation as without."""
    model, tokenizer = forced[0].model, forced[1]
    plain = LocalEngine(model, torch.device("cpu"), speculate=0)
    drafting = LocalEngine(model, torch.device("cpu"), speculate=6)
    checked = drafted = 0
    for cut in _cuts(8, seed=4):
        cursor = Cursor(CODE[:cut], CODE[cut:], 0, 0)
        prompt = build_prompt(tokenizer, TEMPLATES["starcoder"], "spm", cursor, 2048, 16,
                              heal=True)
        if prompt.heal is None:
            continue
        answers = [engine.generate("doc", prompt.ids, max_new_tokens=24, stop_ids=set(),
                                   constraint=Constraint(tokenizer, prompt.heal))
                   for engine in (plain, drafting)]
        assert answers[0].ids == answers[1].ids
        assert tokenizer.decode(answers[0].ids).startswith(prompt.heal.text)
        drafted += answers[1].drafted
        checked += 1
    assert checked >= 4 and drafted > 0  # the drafts ran
