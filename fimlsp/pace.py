"""The user's typing pace, from the didChange stream: how long an answer may take.

A fixed time budget is wrong both ways: while the user types a key every 150 ms, an answer that
takes two seconds is superseded long before it could be seen, and the model's time is better
spent on a short one (a first line, whose next line the prefetch after an accept brings); when
the user pauses, a whole block is worth waiting for. So per document we keep the intervals
between recent keystrokes, and while the user is typing (the last keystroke came within a few of
their usual intervals) an automatic request gets `PACE_FACTOR` × the usual interval, at least
`MIN_BUDGET_MS`, never more than the `timeBudgetMs` setting; after a pause it gets the setting.
An answer cut by that budget keeps its finished lines only (`Completer.complete`). Within it, a
block (several lines) is answered with the lines it has finished as soon as the next keystroke is
due (`first_lines_ms`): a first line the user can see in time beats a block that comes after
they typed on, and the rest is generated in the background (`Completer.finish`). A line is never
cut in the middle for this.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque

BURST_GAP_S = 2.0  # a gap longer than this is a pause, not typing: not one of the intervals
PACE_FACTOR = 6.0  # an answer may take this many usual keystroke intervals while typing
MIN_BUDGET_MS = 1000.0  # ... but never less: a first line needs a prefill and some tokens
TYPING_WITHIN = 3.0  # the user is typing when the last keystroke came within this many intervals
INTERVALS = 16  # recent intervals kept per document
FIRST_LINES_FACTOR = 0.8  # a block shows its finished lines after this many intervals ...
MIN_FIRST_LINES_MS = 80.0  # ... and no sooner than this


class TypingPace:
    """Keystroke intervals per document (event loop only), bounded and dropped on close."""

    def __init__(self, documents: int = 64) -> None:
        self._last: OrderedDict[str, float] = OrderedDict()
        self._intervals: dict[str, deque[float]] = {}
        self._documents = documents

    def keystroke(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        last = self._last.pop(key, None)
        self._last[key] = now
        if last is not None and 0 <= now - last <= BURST_GAP_S:
            self._intervals.setdefault(key, deque(maxlen=INTERVALS)).append(now - last)
        while len(self._last) > self._documents:
            gone, _ = self._last.popitem(last=False)
            self._intervals.pop(gone, None)

    def usual_interval(self, key: str) -> float | None:
        """The median of the recent intervals between keystrokes (seconds); None before 3."""
        intervals = self._intervals.get(key)
        if not intervals or len(intervals) < 3:
            return None
        return statistics.median(intervals)

    def budget_ms(self, key: str, setting_ms: float, now: float | None = None) -> float:
        """How long an automatic request for document `key` may take (see the module)."""
        usual = self.usual_interval(key)
        if usual is None:
            return setting_ms
        now = time.monotonic() if now is None else now
        if now - self._last.get(key, float("-inf")) > TYPING_WITHIN * usual:
            return setting_ms  # a pause: the user waits, a block is worth it
        return min(setting_ms, max(MIN_BUDGET_MS, PACE_FACTOR * usual * 1000))

    def first_lines_ms(self, key: str, now: float | None = None) -> float | None:
        """While the user types: how long a block may take before it is answered with the lines
        it has finished (one usual interval, at least `MIN_FIRST_LINES_MS`; the rest goes on in
        the background and joins the suggestion on screen). None after a pause: the whole
        block is worth the wait."""
        usual = self.usual_interval(key)
        if usual is None:
            return None
        now = time.monotonic() if now is None else now
        if now - self._last.get(key, float("-inf")) > TYPING_WITHIN * usual:
            return None
        return max(MIN_FIRST_LINES_MS, FIRST_LINES_FACTOR * usual * 1000)

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
        self._intervals.pop(key, None)
