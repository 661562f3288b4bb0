"""`heap.settle()`: what a model load leaves is frozen out of the collector's way, and what comes
after is still collected (fimlsp/heap.py says why: full collections walked the whole heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from fimlsp import heap
from fimlsp.completer import Completer
from fimlsp.config import Settings


class Node:
    """A cycle: only the collector frees it, reference counting never does."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_collects_first_freezes_the_rest_and_later_garbage_is_still_collected(
        unfrozen: None) -> None:
    kept = Node()
    garbage = Node()
    gone_before = weakref.ref(garbage)
    del garbage
    frozen = heap.settle()
    assert gone_before() is None  # collected before the freeze: nothing dead is frozen
    assert frozen == gc.get_freeze_count() > 0
    assert kept.me is kept
    later = Node()
    gone_later = weakref.ref(later)
    del later
    gc.collect()
    assert gone_later() is None


def test_loading_a_model_settles_the_heap(unfrozen: None, tiny_model: Path) -> None:
    assert gc.get_freeze_count() == 0
    completer = Completer(Settings(model=str(tiny_model), device="cpu", quantization="none",
                                   threads=1, context_window=384))
    completer.load()
    assert gc.get_freeze_count() > 0


def test_a_second_settle_collects_what_the_first_froze_and_then_lost(unfrozen: None) -> None:
    """A reload: the old model was frozen by the first settle; once nothing holds it but its own
    cycles, the next settle frees it."""
    old = Node()
    gone = weakref.ref(old)
    heap.settle()
    del old
    gc.collect()
    assert gone() is not None  # frozen: the collector does not see it
    heap.settle()
    assert gone() is None


def test_while_a_structure_grows_no_full_collection_runs_and_then_it_is_frozen(
        unfrozen: None) -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with heap.growing():
        assert gc.get_threshold()[2] == heap.NEVER
        with heap.growing():  # nested or concurrent builds: the outermost restores
            built = [Node() for _ in range(1000)]
        assert gc.get_threshold()[2] == heap.NEVER
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() >= frozen_before + len(built)
