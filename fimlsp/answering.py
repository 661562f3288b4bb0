"""What answer a keystroke gets, and what the model does while the answer is on screen.

In order of cost: the rest of the suggestion on screen when the user typed into it
(typing-through, cache.py); the running generation of an earlier keystroke when the user typed
what it is writing (in-flight takeover, inflight.py); the suggestion computed ahead for after an
accept (prefetch); and only then the model, within a time budget that follows the user's pace
(pace.py), from a short prompt first where the whole one would take long to read (quick starts).
Once an answer is shown, the model's idle time goes to what comes next: the whole prompt after a
quick start, the rest of an answer the budget cut, or the suggestion after accepting it and the
alternatives to it. The `Completer` does the model work; this module decides which, on the event
loop, and puts it on the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from fimlsp.completer import Completer
from fimlsp.completion import Completion
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.inflight import Flights, InFlight, Progress
from fimlsp.pace import TypingPace
from fimlsp.scheduler import Cancelled, CancelToken, Scheduler

log = logging.getLogger("fimlsp")

SHOWN_KEPT = 256  # suggestions remembered for their accepts


class Host(Protocol):
    """What the answers need of the server that owns them: its current settings, completer
    (both change when the settings do) and scheduler, whether the model is ready, and its log."""

    settings: Settings
    completer: Completer
    scheduler: Scheduler

    async def model_ready(self, invoked: bool) -> bool: ...

    def engine_answers(self) -> None: ...

    def request_log(self, line: str) -> None: ...


@dataclasses.dataclass
class Ahead:
    """The background job computing, after a suggestion was shown at a cursor, the suggestion
    after accepting it and (`alternatives`) the suggestion's alternatives."""

    prefix: str
    suffix: str
    alternatives: bool
    token: CancelToken
    ended: asyncio.Future[None]  # set on the event loop once the job is over, however it ended

    def at(self, cursor: Cursor) -> bool:
        return (self.prefix, self.suffix) == (cursor.prefix, cursor.suffix)


class Answerer:
    """Answers the completion requests of one server's documents (`complete`) and keeps what
    the answers need across keystrokes: the running generation per document, the typing pace,
    the suggestions shown (for their accepts) and the alternatives being computed."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.pace = TypingPace()  # keystroke intervals per document: the time an answer may take
        self.flights = Flights()  # the running model request per document (inflight.py)
        self._shown: OrderedDict[int, str] = OrderedDict()  # request id → suggestion shown
        self._taken: dict[int, int] = {}  # request id → characters of it the user accepted
        # Per document: the job working ahead of the suggestion on screen (`_prefetch`), until
        # it ends. A cycling client's request waits for its alternatives; a warm start at its
        # cursor is not run (it would stop that work and read nothing new).
        self._ahead: dict[str, Ahead] = {}

    def forget(self, uri: str) -> None:
        """Document `uri` was closed: its pace, suggestion on screen and running generation go
        (the completer's own state is dropped on the model's thread, `Completer.forget`)."""
        self.pace.forget(uri)
        self.host.completer.typing.forget(uri)  # the event loop's; the rest is the model's
        self.flights.forget(uri)

    async def complete(self, uri: str, cursor: Cursor, invoked: bool = False
                       ) -> Completion | None:
        """`invoked`: the user asked (a key, a command), so the answer is worth waiting for."""
        host = self.host
        if not await host.model_ready(invoked):
            return None
        completer, settings = host.completer, host.settings
        typed = completer.typed_through(uri, cursor)
        if typed is not None:  # typed into the suggestion on screen: its rest, no model call
            host.request_log(typed.log_line(uri, completer.stats.cache_share))
            self._note_shown(typed)
            return typed
        taken = await self._take_over(uri, cursor)
        if taken is not None:  # the generation of an earlier keystroke, which this one typed
            return self._show(uri, cursor, taken)
        ahead = completer.answer_ahead(uri, cursor)
        if ahead is not None:  # computed while the last one was on screen: no model call
            host.request_log(ahead.log_line(uri, completer.stats.cache_share))
            return self._show(uri, cursor, ahead)
        request_id = completer.next_id()
        # An automatic request while the user types may take a few of their keystrokes, no more;
        # one they asked for, or after a pause, the whole budget (pace.py).
        budget = settings.time_budget_ms if invoked else self.pace.budget_ms(
            uri, settings.time_budget_ms)
        lines_by = None if invoked else self.pace.first_lines_ms(uri)
        progress = Progress()
        future, token = host.scheduler.submit(
            uri, lambda tok: completer.complete(uri, cursor, tok, request_id, progress=progress,
                                                quick=not invoked, lines_by_ms=lines_by),
            budget / 1000)
        flight = InFlight(cursor, request_id, completer.answer_settings, future, token, progress)
        if settings.engine == "local":  # a serving engine's time is not ours to spend
            self.flights.start(uri, flight)
            loop = asyncio.get_running_loop()
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(
                self._landed, uri, flight))
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if self.flights.get(uri) is flight and not future.done():
                flight.orphan = True  # runs on: the next keystroke may type into it
                host.scheduler.orphan(token, future)
                completer.stats.add(orphaned=1)
                host.request_log(f"request {request_id} {uri}: cancelled by the client; "
                                 "its generation runs on for the next keystroke")
                raise
            token.cancel("cancelled")
            # If the job had not started, the worker raises Cancelled into a future nobody awaits.
            future.add_done_callback(lambda f: f.cancelled() or (isinstance(
                f.exception(), Cancelled) and _count_cancelled(completer)))
            host.request_log(f"request {request_id} {uri}: cancelled by the client")
            raise
        except Cancelled as cancelled:
            completer.stats.add(cancelled=1)
            host.request_log(f"request {request_id} {uri}: {cancelled.reason} before it started")
            return None
        host.request_log(result.log_line(uri, completer.stats.cache_share))
        if result.source == "model":
            host.engine_answers()
        if result.stop_reason in ("cancelled", "superseded"):
            return None
        return self._show(uri, cursor, result)

    async def _take_over(self, uri: str, cursor: Cursor) -> Completion | None:
        """The answer from the document's running generation when the user has only typed what
        it is writing (inflight.py; its text may be empty); None when it cannot answer (the
        request then goes to the model, which supersedes it)."""
        flight = self.flights.get(uri)
        if flight is None:
            return None
        completer = self.host.completer
        typed = flight.follows(cursor, completer.answer_settings)
        if typed is None:
            return None
        started = time.perf_counter()
        try:  # shielded: if this request is cancelled too, the generation still runs on
            result = await asyncio.shield(asyncio.wrap_future(flight.future))
        except Cancelled:
            return None
        if result.stop_reason in ("cancelled", "superseded") or \
                not result.text.startswith(typed):
            return None
        rest = result.text[len(typed):]
        answer = dataclasses.replace(result, text=rest if rest.strip() else "",
                                     request_id=completer.next_id(), source="model",
                                     total_ms=(time.perf_counter() - started) * 1000)
        completer.stats.add(requests=1, taken_over=1)
        self.host.request_log(f"request {answer.request_id} {uri}: taken over from request "
                              f"{flight.request_id}, {len(typed)} chars typed into it; "
                              f"waited={answer.total_ms:.0f}ms chars={len(answer.text)}")
        return answer

    def _landed(self, uri: str, flight: InFlight) -> None:
        """A local generation ended (on the event loop). An orphan that nobody took over is the
        document's suggestion for the next keystroke to type into (typing-through)."""
        if not self.flights.ended(uri, flight) or not flight.orphan:
            return
        future = flight.future
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        if result.text and result.stop_reason not in ("cancelled", "superseded"):
            self.host.completer.shown(uri, flight.cursor, result)
            self._note_shown(result)

    def _show(self, uri: str, cursor: Cursor, result: Completion) -> Completion | None:
        """`result` goes on screen (nothing, if it is empty); while it is there, the model
        computes what follows accepting it."""
        self.host.completer.shown(uri, cursor, result if result.text else None)
        if not result.text:
            return None
        self._note_shown(result)
        if result.quick:  # from a short prompt: now the whole one is read, in idle time
            self.warm(uri, cursor)
        elif result.unfinished is not None:
            self._finish(uri, cursor, result)
        else:
            self._prefetch(uri, cursor, result.text, result.request_id)
        return result

    def _finish(self, uri: str, cursor: Cursor, shown: Completion) -> None:
        """`shown` (at `cursor`) is the first lines of a block the time budget cut: the model
        goes on with it in its idle time, and the rest joins the suggestion on screen
        (typing-through and accepts then have it), then the prefetch after the whole of it runs.
        The cut may have been made for an earlier keystroke that this one typed into."""
        completer, loop = self.host.completer, asyncio.get_running_loop()
        cut = shown.unfinished
        assert cut is not None
        typed = len(cursor.prefix) - len(cut.cursor.prefix)
        future, _token = self.host.scheduler.submit_background(
            lambda token: completer.finish(uri, cut, token))

        def extend(whole: str) -> None:  # on the event loop, which owns `typing`
            if completer.typing.extend(uri, shown.request_id, cut.cursor.prefix, whole):
                completer.stats.add(finished=1)
                self._shown[shown.request_id] = whole[typed:]
                self._prefetch(uri, cut.cursor, whole, shown.request_id)

        def done(f: Any) -> None:
            error = None if f.cancelled() else f.exception()
            if error is not None and not isinstance(error, Cancelled):
                log.warning("finishing an answer failed: %s", error)
            elif not f.cancelled() and error is None and f.result():
                loop.call_soon_threadsafe(extend, f.result())

        future.add_done_callback(done)

    def _prefetch(self, uri: str, cursor: Cursor, shown: str, request_id: int) -> None:
        """The suggestion after accepting `shown` (request `request_id`'s), then the
        alternatives to `shown` at `cursor`, computed as one background job (a second would
        cancel the first): any request stops it, so it only ever uses time in which the model
        would have waited. The prefetch goes first: accepting is what users do most. The log
        says when the alternatives are ready, or what stopped them."""
        settings, completer = self.host.settings, self.host.completer
        # A serving engine is shared: guesses would cost other people's time.
        ahead = settings.prefetch and settings.engine == "local"
        others = completer.offers_alternatives
        if not ahead and not others:
            return
        loop = asyncio.get_running_loop()

        def job(token: Any) -> None:
            if ahead:
                completer.prefetch(uri, cursor, shown, token)
            if others and not token():
                started = time.perf_counter()
                found = completer.alternatives(uri, cursor, shown, token)
                spent = (time.perf_counter() - started) * 1000
                if found is not None:
                    log.info(f"alternatives to request {request_id} {uri}: {len(found)} ready "
                             f"in {spent:.0f}ms")
                elif token():
                    log.info(f"alternatives to request {request_id} {uri}: stopped "
                             f"({token()}) after {spent:.0f}ms")

        future, token = self.host.scheduler.submit_background(job)
        record = Ahead(cursor.prefix, cursor.suffix, others, token, loop.create_future())
        self._ahead[uri] = record

        def settle() -> None:  # on the event loop
            if self._ahead.get(uri) is record:
                del self._ahead[uri]
            record.ended.set_result(None)

        def done(f: Any) -> None:
            if ahead and (f.cancelled() or isinstance(f.exception(), Cancelled)):
                completer.stats.add(prefetch_interrupted=1)
            elif not f.cancelled() and f.exception() is not None and \
                    not isinstance(f.exception(), Cancelled):
                log.warning("computing ahead failed: %s", f.exception())
            loop.call_soon_threadsafe(settle)

        future.add_done_callback(done)

    async def alternatives(self, uri: str, cursor: Cursor, first: Completion, invoked: bool
                           ) -> list[Completion]:
        """The alternatives to `first` at `cursor` that are ready. A request the user made
        (cycling asks again, invoked) waits for those being computed for this very cursor, up
        to the time budget; an automatic one never waits."""
        pending = self._ahead.get(uri)
        if invoked and pending is not None and pending.alternatives and pending.at(cursor):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending.ended),
                                       self.host.settings.time_budget_ms / 1000)
        found = self.host.completer.alternatives_for(uri, cursor, first.text)
        for other in found:
            self._note_shown(other)
        return found

    def warm(self, uri: str, cursor: Cursor) -> None:
        """Reads the prompt at `cursor` in the model's idle time (`Completer.warm`). Nothing
        waits for it: its log line says what it prefilled, or that a request came first.

        Not where the model is working ahead of the suggestion on screen (`_prefetch`): the
        answer has just read that prompt, and a warm start, being background work too, would
        stop the prefetch and the alternatives. VS Code asks for one wherever the cursor rests,
        so after every suggestion; with a model slower than its pause, cycling would then never
        find an alternative."""
        ahead = self._ahead.get(uri)
        if ahead is not None and ahead.at(cursor) and not ahead.token():
            log.debug(f"warm start {uri}: not needed, the model is working ahead there")
            return
        completer = self.host.completer
        future, _token = self.host.scheduler.submit_background(
            lambda token: completer.warm(uri, cursor, token))

        def done(f: Any) -> None:
            if f.cancelled() or isinstance(f.exception(), Cancelled):
                completer.stats.add(warm_interrupted=1)
            elif f.exception() is not None:
                log.warning("warm start failed: %s", f.exception())
            else:
                log.info(f.result().log_line(uri))

        future.add_done_callback(done)

    def _note_shown(self, result: Completion) -> None:
        self._shown[result.request_id] = result.text
        while len(self._shown) > SHOWN_KEPT:
            self._taken.pop(self._shown.popitem(last=False)[0], None)

    def accepted(self, request_id: int, partial: bool, chars: int | None = None) -> None:
        """Records what the user took; the text comes from what we showed, not from the client.

        `fimlsp.partialAccept [id, chars]` gives the characters of suggestion `id` taken so far
        (a running total, as VS Code and Emacs report it); `fimlsp.accept [id]` means all of it.
        Repeats and a final accept after partial ones count each character once. The protocol
        has checked the types (an id that is no integer is -32602 and counts nothing); an id
        no longer remembered counts the accept without its characters.
        """
        completer = self.host.completer
        if request_id not in self._shown:
            completer.accepted("", partial)
            return
        text = self._shown[request_id]
        total = len(text)
        if partial and chars is not None:
            total = max(0, min(chars, len(text)))
        before = self._taken.get(request_id, 0)
        if total <= before:
            return  # nothing new: a repeat, or an accept after everything was taken
        self._taken[request_id] = max(total, before)
        completer.typing.advance(request_id, max(0, total - before))  # document text now
        completer.accepted(text[before:total], partial)


def _count_cancelled(completer: Completer) -> None:
    completer.stats.add(cancelled=1)
