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
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collects, then moves every surviving object out of the collector's way; returns how many
    objects are now frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
