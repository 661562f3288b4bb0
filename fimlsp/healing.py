"""Token healing: a prompt that ends inside a word is backed off to the token boundary before
the word, and the model writes the word's start again under a constraint.

Why: BPE spells `requests` as one or two tokens; a cursor at `self.reque|` leaves the prompt
ending in `re` `que`, a split the model almost never saw in training, so its next token goes
astray (a space, an operator, a newline). Backing off those tokens and allowing the first
generated tokens only where their text agrees with what was removed lets the model pick the
spelling it knows (`requests`), and the removed text is stripped from the suggestion again.

Everything is in bytes: byte-level BPE (`Ġ`) splits characters across tokens, and
SentencePiece-style vocabularies (`▁`, `<0x0A>` byte-fallback tokens) do too. The prefix index
over the vocabulary is built once per tokenizer: a sorted array of token byte strings answers
"every token that starts with these bytes" with two bisections, and a dict answers "every token
that is a proper prefix of them" with one lookup per byte — never a scan of the vocabulary per
step.

A cursor at a token boundary (after punctuation, a line break, the end of the file's text) is
left alone, so its prompt and answer are exactly what they are without healing. In SPM order
(the prefix ends the prompt), where the constrained decode writes the removed tokens again, the
cache then holds exactly the unhealed prompt, so the answer is the unhealed one.
"""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

if TYPE_CHECKING:
    import torch

MAX_TOKENS = 3  # tokens backed off at most: the end of a long word is all the model needs
# The partial word at the cursor: identifier characters, or horizontal whitespace after
# something on the same line (`x = |`: BPE glues a space to the word after it, ` foo`, so a
# prompt ending in a bare space is rare). Indentation alone is left as it is: the editor wrote
# it, and a suggestion that began with more of it would move the user's line.
_WORD = re.compile(r"(?:\w+|(?<=[^\s])[ \t]+)\Z")
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-to-printable-character map, inverted: `Ġ` → 0x20. The map is a fixed
    published construction (printable Latin-1 bytes stand for themselves, the others are
    shifted to U+0100 and up), so it is rebuilt here rather than read from a private API."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1),
                 *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shift)
            shift += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_kinds(tokenizer: Tokenizer) -> set[str]:
    """The types of the tokenizer's decoder and of the decoders in its sequence."""
    try:
        state = json.loads(tokenizer.decoder.__getstate__()) if tokenizer.decoder else {}
    except (AttributeError, TypeError, ValueError):
        return set()
    kinds = set()
    for part in [state, *state.get("decoders", [])]:
        if isinstance(part, dict) and isinstance(part.get("type"), str):
            kinds.add(part["type"])
    return kinds


def token_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """Each token id's text as bytes, as it appears in the middle of a text; b"" for added
    (special) tokens, which never come from document text, and for ids without a token.

    Byte-level vocabularies map every byte to a printable character; SentencePiece-style ones
    write a space as `▁` and bytes without a token of their own as `<0xNN>`.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    pieces = [b""] * size
    added = tokenizer.get_added_tokens_decoder()
    for token_id, token in added.items():
        # Added tokens match the raw text (DeepSeek-Coder adds `ö`, `ü`, … as plain ones).
        if not token.special and 0 <= token_id < size and not token.normalized:
            pieces[token_id] = token.content.encode("utf-8")
    byte_level = "ByteLevel" in _decoder_kinds(tokenizer)
    table = _byte_level_table() if byte_level else {}
    # str.translate to one character per byte, then latin-1: C speed for 150k tokens.
    to_latin1 = {ord(c): b for c, b in table.items()}
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    # Every character a byte-level spelling: no token needs checking on its own.
    spelled = byte_level and set("".join(vocab)) <= table.keys()
    for text, token_id in vocab.items():
        if token_id in added or not 0 <= token_id < size:
            continue
        if byte_level:
            if spelled or all(c in table for c in text):
                pieces[token_id] = text.translate(to_latin1).encode("latin-1")
            # else: not a byte-level spelling; left out of healing
        elif (match := _BYTE_TOKEN.fullmatch(text)) is not None:
            pieces[token_id] = bytes([int(match.group(1), 16)])
        else:
            pieces[token_id] = text.replace("\u2581", " ").encode("utf-8")
    return pieces


def _after(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with `prefix`, or None
    (all 0xFF)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass
class VocabIndex:
    """Every token's bytes, sorted, to find the tokens consistent with a piece of text."""

    pieces: list[bytes]  # by id
    sorted_pieces: list[bytes] = field(init=False, repr=False)
    order: list[int] = field(init=False, repr=False)  # ids in the order of `sorted_pieces`
    exact: dict[bytes, list[int]] = field(init=False, repr=False)
    _order_tensor: Any = field(default=None, init=False, repr=False)
    # Masks of allowed ids by rest and vocabulary size: a rest like b" " allows 16k tokens,
    # and recurs on every keystroke after a space.
    _masks: OrderedDict[tuple[bytes, int, str], Any] = field(default_factory=OrderedDict,
                                                             init=False, repr=False)

    def __post_init__(self) -> None:
        self.order = sorted((i for i, p in enumerate(self.pieces) if p),
                            key=self.pieces.__getitem__)  # C-speed comparisons of bytes
        self.sorted_pieces = [self.pieces[i] for i in self.order]
        self.exact = {}
        for token_id in self.order:
            self.exact.setdefault(self.pieces[token_id], []).append(token_id)

    def starting_with(self, text: bytes) -> tuple[int, int]:
        """The range of `order` whose tokens start with `text`."""
        low = bisect.bisect_left(self.sorted_pieces, text)
        after = _after(text)
        high = len(self.sorted_pieces) if after is None else \
            bisect.bisect_left(self.sorted_pieces, after, low)
        return low, high

    def prefixes_of(self, text: bytes) -> list[int]:
        """Tokens whose bytes are a proper prefix of `text`."""
        return [i for n in range(1, len(text)) for i in self.exact.get(text[:n], ())]

    def consistent(self, rest: bytes) -> list[int]:
        """Every token that may come next when `rest` is still to be written: its bytes start
        with `rest`, or are a prefix of it (sorted ids; for tests and remote engines)."""
        low, high = self.starting_with(rest)
        return sorted([*self.order[low:high], *self.prefixes_of(rest)])

    def prepare(self, device: torch.device) -> None:
        """Puts the sorted ids on `device` now (tens of milliseconds on a busy CPU), so that
        the first healed request does not pay for it."""
        import torch

        if self._order_tensor is None or self._order_tensor.device != device:
            self._order_tensor = torch.tensor(self.order, dtype=torch.long, device=device)

    def allowed_tensor(self, rest: bytes, device: torch.device) -> torch.Tensor:
        """`consistent(rest)` as a tensor of ids, from a slice of the sorted order (no list of
        thousands of ids built per step when `rest` is one space)."""
        import torch

        self.prepare(device)
        low, high = self.starting_with(rest)
        extra = self.prefixes_of(rest)
        ids = self._order_tensor[low:high]
        if extra:
            ids = torch.cat([ids, torch.tensor(extra, dtype=torch.long, device=device)])
        return ids

    def blocked(self, rest: bytes, size: int, device: torch.device) -> torch.Tensor:
        """A [size] bool mask, True where a token is not consistent with `rest` (ids past the
        tokenizer's vocabulary, such as padded embedding rows, are blocked too)."""
        import torch

        key = (rest, size, str(device))
        mask = self._masks.get(key)
        if mask is None:
            allowed = self.allowed_tensor(rest, device)
            mask = torch.ones(size, dtype=torch.bool, device=device)
            mask[allowed[allowed < size]] = False
            self._masks[key] = mask
            if len(self._masks) > 256:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(key)
        return mask


_indexes: dict[int, tuple[Tokenizer, VocabIndex]] = {}
_lock = threading.Lock()


def index_for(tokenizer: Tokenizer) -> VocabIndex:
    """The tokenizer's index, built on first use (a fraction of a second for 150k tokens) and
    kept while the tokenizer lives (the entry holds it, so its id is never reused)."""
    with _lock:
        entry = _indexes.get(id(tokenizer))
        if entry is None:
            if len(_indexes) >= 8:  # models switched many times: drop the oldest
                _indexes.pop(next(iter(_indexes)))
            entry = (tokenizer, VocabIndex(token_bytes(tokenizer)))
            _indexes[id(tokenizer)] = entry
        return entry[1]


@dataclass(frozen=True)
class Heal:
    """What was backed off the end of a prompt's prefix."""

    ids: tuple[int, ...]  # the removed tokens, in order
    text: str  # their text: the end of the document's prefix

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")


def back_off(tokenizer: Tokenizer, prefix_ids: list[int], prefix: str,
             max_tokens: int = MAX_TOKENS) -> Heal | None:
    """The tokens to remove from the end of `prefix_ids` (the tokens of the end of `prefix`)
    when the cursor is inside a word or after a space, or None: the cursor is at a boundary
    (punctuation, a line break), or the tokens do not spell the text (a normalizer changed it),
    or nothing would be left before them."""
    word = _WORD.search(prefix[-64:])
    if word is None or len(prefix_ids) < 2:
        return None
    pieces = index_for(tokenizer).pieces
    need = len(word.group().encode("utf-8"))
    count, covered = 0, 0
    while covered < need and count < min(max_tokens, len(prefix_ids) - 1):
        count += 1
        token = prefix_ids[-count]
        piece = pieces[token] if 0 <= token < len(pieces) else b""
        if not piece:
            return None
        covered += len(piece)
    removed = b"".join(pieces[i] for i in prefix_ids[-count:])
    tail = prefix[-len(removed):].encode("utf-8")  # ≥ len(removed) bytes
    if not tail.endswith(removed):
        return None
    try:
        text = removed.decode("utf-8")  # a boundary inside a character: not healable here
    except UnicodeDecodeError:
        return None
    return Heal(tuple(prefix_ids[-count:]), text)


class Constraint:
    """The decode-time half: until the removed bytes are written again, only tokens consistent
    with what is left of them may be sampled; then decoding is free."""

    def __init__(self, tokenizer: Tokenizer, heal: Heal) -> None:
        self.index = index_for(tokenizer)
        self.removed = heal.data
        self.covered = 0  # bytes of `removed` the generated tokens have written
        self.failed = False  # no token fits (a vocabulary without byte tokens): gave up

    @property
    def active(self) -> bool:
        return not self.failed and self.covered < len(self.removed)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` [vocab] with every token inconsistent with the rest at -inf."""
        blocked = self.index.blocked(self.removed[self.covered:], logits.shape[-1],
                                     logits.device)
        if bool(blocked.all()):
            self.failed = True
            return logits
        return logits.masked_fill(blocked, float("-inf"))

    def feed(self, token: int) -> None:
        """Advances over a sampled token (one `mask` allowed)."""
        if self.active:
            pieces = self.index.pieces
            self.covered += len(pieces[token]) if 0 <= token < len(pieces) else 0


def strip(text: str, heal: Heal | None) -> str:
    """The suggestion without the re-written text; "" while it is not all written yet (a
    generation stopped early), since the user already has it."""
    if heal is None:
        return text
    return text[len(heal.text):] if text.startswith(heal.text) else ""


def suggestion(tokenizer: Tokenizer, ids: list[int], heal: Heal | None) -> str:
    """The text of generated `ids` without the re-written text. Decoded by the tokenizer, as
    without healing; where that does not start with the removed text although the tokens do —
    SentencePiece decoders drop the first token's `▁` (a removed ` foo` decodes as `foo`) —
    from the tokens' bytes."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if heal is None or text.startswith(heal.text):
        return strip(text, heal)
    pieces = index_for(tokenizer).pieces
    data = b"".join(pieces[i] for i in ids if 0 <= i < len(pieces))
    if not data.startswith(heal.data):
        return ""
    return data[len(heal.data):].decode("utf-8", "replace")
