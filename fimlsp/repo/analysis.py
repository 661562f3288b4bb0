"""What indexing one file computes, apart from the index: its definitions and chunks (parse.py)
and its chunks' terms, inverted into postings ready to merge (`analyse`). Run in the index's
worker process (or its thread when there is none), so it shares no state with `RepoIndex`;
`terms` is also how a query's text becomes index terms (choose.py).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from fimlsp.repo import files as repo_files
from fimlsp.repo.parse import Chunk, Definition, parse

MERGE_SLICE = 64  # terms merged per hold of the index's lock (and of the GIL)
_IDENT3 = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")  # the identifiers worth a term
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOP = frozenset("""  # keywords and words every file has: no signal
and as assert async await break class continue def del elif else except false finally for from
global if import in is lambda none nonlocal not or pass raise return true try while with yield
self cls this const let var function new typeof instanceof null undefined void delete switch
case default export extends implements interface package private protected public static super
throw throws func type struct impl pub mut use mod crate enum trait where match loop int str
bool float string any args kwargs the
""".split())  # noqa: SIM905 (a paragraph reads better than 90 quoted words)


@lru_cache(maxsize=65536)
def _split(identifier: str) -> tuple[str, ...]:
    """An identifier's index terms: itself, lowercased, and its snake/camel parts."""
    low = identifier.lower()
    if low in _STOP:
        return ()
    parts = [p.lower() for p in _PART.findall(identifier)]
    out = [low]
    if len(parts) > 1:
        out += [p for p in parts if len(p) >= 3 and p != low and p not in _STOP]
    return tuple(out)


def terms(text: str) -> Counter[str]:
    """Index terms of a text: identifiers of 3+ characters and their parts. Each distinct
    identifier is split once (counted in C first): a chunk repeats its names many times, and
    this is most of the time a file's indexing takes after the parse."""
    counts: dict[str, int] = {}
    get = counts.get
    for identifier, count in Counter(_IDENT3.findall(text)).items():
        for term in _split(identifier):
            counts[term] = get(term, 0) + count
    return Counter(counts)


CHUNK_ID_SPAN = 1 << 16  # chunk ids reserved per indexed file version (more than a file has)

# What the worker sends back for one file: parser, definitions, chunks, each chunk's length in
# terms, and the file's postings already inverted (term → {chunk id: count}, ids from `base`),
# pickled in slices of MERGE_SLICE terms: the result arrives on the executor's own thread, whose
# unpickling holds the GIL in one C call; the slices are unpickled one at a time as they are
# merged, so no single step holds it long (a 300 kB file's postings: 2.5 ms in one piece).
Analysis = tuple[str, list[Definition], list[Chunk], list[int], list[bytes]]


def analyse(path: str, base: int = 0) -> Analysis | None:
    """Reads and parses one file: the CPU-heavy part of indexing, run in the worker process
    so that it never holds the server's GIL (the event loop and the model's thread need it).
    The postings come inverted, with the chunk ids the index gave (`base` on): merging them is
    then one dict operation per term of the file, not one per term of each chunk, and what the
    index thread does under the GIL is what costs least. None when the file is not indexable
    source (binary, too large, generated)."""
    file = Path(path)
    text = repo_files.read_source(file)
    if text is None:
        return None
    parsed = parse(text, repo_files.extension(file.name))
    chunks = parsed.chunks[:CHUNK_ID_SPAN]
    lengths = []
    inverted: dict[str, dict[int, int]] = {}
    for number, chunk in enumerate(chunks):
        counts = terms(chunk.text)
        lengths.append(sum(counts.values()))
        for term, count in counts.items():
            posting = inverted.get(term)
            if posting is None:
                inverted[term] = {base + number: count}
            else:
                posting[base + number] = count
    items = list(inverted.items())
    slices = [pickle.dumps(items[start:start + MERGE_SLICE], pickle.HIGHEST_PROTOCOL)
              for start in range(0, len(items), MERGE_SLICE)]
    return parsed.parser, parsed.definitions, chunks, lengths, slices


def lower_priority() -> None:
    """The worker yields the CPU to the editor and the model: indexing can wait."""
    with contextlib.suppress(OSError):
        os.nice(19)
