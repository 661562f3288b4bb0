"""Keep Python's full garbage collections short once the model is loaded.

CPython runs a full (generation 2) collection whenever the objects that survived earlier ones
grow by a quarter, and a full collection walks every tracked object while holding the GIL. With
the tokenizer, transformers and the index's first build in the heap, the workspace index, which
grows the heap as it builds, set off collections of 105-137 ms (gc callbacks) that stopped every
other thread: `fimlsp bench context --timing-only` (1,000 files of transformers) measured a
prompt build's max at 163-193 ms while indexing against 20-22 ms alone, and a thread's wake-up
late by up to 69 ms. With `settle()` first, the same runs measured 48-52 ms and 1.1-3.5 ms, and
a full collection during indexing took ~15 ms.

`settle()` collects once and then freezes what is left (`gc.freeze`): the modules, classes and
the model's objects live as long as the model, so later full collections skip them and walk only
what came after. Frozen objects are never collected, so each settle first unfreezes everything:
after a reload, the previous model (if only a cycle still holds it) is collected then. It runs on
the worker thread at the end of a model load, when no request is being served yet.

`growing()` does the same for the workspace index, whose own objects (a record per chunk and
per definition) grew large enough to make a collection of their own long: 168 ms at 2,937 files.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NEVER = 1 << 30  # a generation-2 threshold no count reaches: no full collection meanwhile

_lock = threading.Lock()
_growing = 0
_thresholds: tuple[int, int, int] = gc.get_threshold()


def settle() -> int:
    """Collects, then moves every surviving object out of the collector's way; returns how many
    objects are now frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@contextmanager
def growing() -> Iterator[None]:
    """While a long-lived structure is built (the workspace index): no full collection, since
    each one would walk the whole heap again only because the heap grew; when the last such
    build ends, the young generations are collected and what survived is frozen like the
    model's objects. Cyclic garbage that reached the old generation during the build is frozen
    with it (a build takes seconds: little), and the next `settle()` collects it."""
    global _growing, _thresholds
    with _lock:
        if _growing == 0:
            _thresholds = gc.get_threshold()
            gc.set_threshold(_thresholds[0], _thresholds[1], NEVER)
        _growing += 1
    try:
        yield
    finally:
        with _lock:
            _growing -= 1
            if _growing == 0:
                gc.set_threshold(*_thresholds)
                gc.collect(1)
                gc.freeze()
