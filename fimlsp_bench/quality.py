"""Characters a developer saves: `fimlsp bench quality`.

A simulated developer retypes code the model never saw — the standard-library modules the model's
README names as held out, or any `--paths` — through the real server (`fimlsp serve` as a
subprocess, JSON-RPC over stdio, as an editor drives it). The span to retype is deleted, and then,
keystroke by keystroke, the developer sends `didChange` and asks `textDocument/inlineCompletion`:

- where the suggestion on screen is exactly how the text goes on, they take all of it (Tab:
  the insert, then the item's `fimlsp.accept` command, as editors do);
- else, where it starts the right way, they take it word by word as far as it is right (VS Code's
  accept-next-word: each step an insert and `fimlsp.partialAccept [id, characters so far]`);
- else they type one more character (a line break together with the indentation after it, as
  an editor's Enter inserts it).

Reported per run: characters saved (share of the text that came from accepted suggestions),
acceptance rate per suggestion shown, exact first-line match of suggestions shown, suggestions
shown but never accepted — plain, and **under real time**: at `--typing-ms` per keystroke a
suggestion whose measured round trip is longer than that arrives after the next keystroke and is
never seen. That runs on the wall clock — a key every `--typing-ms`, the pending request
cancelled when the next key is due, as editors cancel it — because what the server does with
the time between keys (a cancelled generation that the next key types into, a suggestion
computed ahead while the developer reads) shows only in real time; a virtual clock built from
each request's latency alone cannot show it. Confidence intervals: bootstrap over files
(seeded), so spans of one file move together.

Why not replay a log of real typing: there is none that is free to use, and the rules above are
what an editor's accept keys do; the one thing a person does differently — reading a suggestion
takes time — only makes real time stricter.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import platform
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

# The trained fixture's held-out modules (shared/models/README.md): never seen in training.
HELD_OUT = ("/json/", "/email/", "argparse.py", "/asyncio/", "textwrap.py", "/http/", "csv.py",
            "dataclasses.py", "fractions.py", "shlex.py")
KINDS = ("line", "mid-line", "block")
LANGUAGES = {".py": "python", ".js": "javascript", ".ts": "typescript", ".c": "c", ".h": "c",
             ".go": "go", ".rs": "rust", ".java": "java"}
MAX_LINE = 100  # longest line retyped (characters)
_TOKEN = re.compile(r"\w+|\S")
_WORD = re.compile(r"\w+")

# Variants of `--sweep`: what each changes from the shipped defaults.
SERVER_MODULE = "_server_module"  # in a variant: the module run instead of `fimlsp`
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "int8": {"quantization": "int8"},
    "fp32": {"quantization": "none"},  # the CPU default before issue 19
    "no prefetch": {"prefetch": False},
    "psm": {"order": "psm"},
    "raw (no policy)": {"policy": "raw"},
    "no neighbours": {"neighbourShare": 0},
    "window 384": {"contextWindow": 384},
    "window 1024": {"contextWindow": 1024},
    "maxNewTokens 16": {"maxNewTokens": 16},
    "maxNewTokens 32": {"maxNewTokens": 32},
    "multiline always": {"multiline": "always"},
    "multiline never": {"multiline": "never"},
    "no typing-through": {"typingThrough": False},
    "no token healing": {"tokenHealing": False},
    "no repo context": {"repoContext": False},
    # Not a setting: the server as it was before a cancelled generation ran on (inflight.py).
    "cancel stops": {SERVER_MODULE: "fimlsp_bench._cancel_stops"},
}


# -- what to retype -------------------------------------------------------------------------------


@dataclass
class Span:
    """`text[start:end]` of file `path` is deleted and retyped."""

    path: str
    kind: str
    start: int
    end: int
    target: str


def held_out_files(stdlib: Path) -> list[Path]:
    """The held-out modules of the trained fixture, as found in `stdlib`."""
    found = []
    for path in sorted(stdlib.rglob("*.py")):
        name = "/" + path.relative_to(stdlib).as_posix()
        if "/test" in name or "site-packages" in name:
            continue
        if any(part in name for part in HELD_OUT):
            found.append(path)
    return found


def _python_statement_rows(text: str) -> set[int] | None:
    """0-based rows that hold one whole simple statement (no docstrings): the lines a developer
    writes. None when the file does not parse (then every code-looking line counts)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    rows = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or node.lineno != node.end_lineno:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstrings and bare constants
        if not hasattr(node, "body"):
            rows.add(node.lineno - 1)
    return rows


def _code_rows(lines: list[str], python_rows: set[int] | None) -> list[int]:
    rows = []
    for row, line in enumerate(lines):
        body = line.strip()
        if not body or len(line.rstrip()) > MAX_LINE or body.startswith(("#", "//", "/*", "*")):
            continue
        if python_rows is not None and row not in python_rows:
            continue
        if line != line.rstrip() or "\t" in line:
            continue  # trailing whitespace or tabs: not what anyone retypes
        rows.append(row)
    return rows


def spans_in(path: str, text: str, kinds: Sequence[str], rng: random.Random) -> list[Span]:
    """One span per entry of `kinds` (fewer when the file has no place for one), seeded.

    line: a whole line after its indentation (the cursor on a line the editor has indented);
    mid-line: one to eight tokens inside a line, with the rest of the line after the cursor;
    block: two or three consecutive lines at one indentation, from the first one's indentation.
    """
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    python_rows = _python_statement_rows(text) if path.endswith(".py") else None
    rows = _code_rows(lines, python_rows)
    if not rows:
        return []
    rowset = set(rows)
    spans: list[Span] = []
    used: set[int] = set()

    def indent(row: int) -> int:
        return len(lines[row]) - len(lines[row].lstrip())

    for kind in kinds:
        free = [r for r in rows if r not in used]
        if kind == "block":
            free = [r for r in free if r + 1 in rowset and indent(r + 1) == indent(r)
                    and r + 1 not in used]
        if kind == "mid-line":
            free = [r for r in free if len(_TOKEN.findall(lines[r])) >= 4]
        if not free:
            continue
        row = rng.choice(free)
        begin = starts[row] + indent(row)
        if kind == "line":
            end = starts[row] + len(lines[row])
            used.add(row)
        elif kind == "block":
            last = row + 1
            if last + 1 in rowset and indent(last + 1) == indent(row) and rng.random() < 0.5:
                last += 1
            end = starts[last] + len(lines[last])
            used.update(range(row, last + 1))
        else:
            tokens = list(_TOKEN.finditer(lines[row]))
            i = rng.randrange(1, len(tokens) - 1)
            j = rng.randrange(i, min(len(tokens) - 1, i + 8))
            begin, end = starts[row] + tokens[i].start(), starts[row] + tokens[j].end()
            used.add(row)
        spans.append(Span(path, kind, begin, end, text[begin:end]))
    return sorted(spans, key=lambda s: s.start)


def sample(files: Sequence[Path], count: int, per_file: int, seed: int) -> dict[Path, list[Span]]:
    """`count` files (seeded), `per_file` spans in each, kinds in turn across the sample."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(list(files), min(count, len(files))))
    turn = 0
    picked: dict[Path, list[Span]] = {}
    for path in chosen:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        kinds = [KINDS[(turn + k) % len(KINDS)] for k in range(per_file)]
        spans = spans_in(str(path), text, kinds, rng)
        if spans:
            turn += len(spans)
            picked[path] = spans
    return picked


# -- the developer ---------------------------------------------------------------------------------


def word_step(text: str) -> int:
    """How much of `text` one accept-next-word takes, as VS Code does it: a word when the text
    starts with one, else up to the next word — but never past the first run of whitespace."""
    if not text:
        return 0
    word = _WORD.match(text)
    if word:
        end = word.end()
    else:
        after = _WORD.search(text)
        end = after.start() if after else len(text)
    space = re.search(r"\s+", text)
    if space and space.end() < end:
        end = space.end()
    return max(end, 1)


def next_unit(target: str, at: int) -> str:
    """The next keystroke's text: one character, or a line break with the indentation after it
    (what Enter inserts in an editor that indents)."""
    if target[at] == "\n":
        rest = target[at + 1:]
        return "\n" + rest[: len(rest) - len(rest.lstrip(" \t"))]
    return target[at]


def unaided_keys(target: str) -> int:
    """Keystrokes `target` takes typed by hand, one `next_unit` each."""
    keys, at = 0, 0
    while at < len(target):
        at += len(next_unit(target, at))
        keys += 1
    return keys


def accept_plan(suggestion: str, rest: str) -> tuple[list[str], bool]:
    """What the developer takes of `suggestion` when `rest` is what they are about to type:
    ([all of it], True) when it matches whole, else the words that match, one per partial
    accept, and False."""
    if suggestion and rest.startswith(suggestion):
        return [suggestion], True
    pieces: list[str] = []
    taken = 0
    while taken < len(suggestion):
        step = word_step(suggestion[taken:])
        if not rest.startswith(suggestion[: taken + step]):
            break
        pieces.append(suggestion[taken: taken + step])
        taken += step
    return pieces, False


AT_ONCE = ("prefetch", "typed", "cache")  # answer sources that did not wait for the model


@dataclass
class Answer:
    """One inlineCompletion answer as the developer's editor got it."""

    text: str
    request_id: int | None
    latency_ms: float  # the request's round trip, measured by the client
    source: str = "model"  # "model", "cache" (recent prompt) or "typed" (typing-through)
    fed: int | None = None  # prompt tokens the model's cache did not hold (model answers)


class Editor(Protocol):
    """What the developer does to the document; `LspEditor` does it to the real server."""

    async def insert(self, text: str) -> None: ...

    async def ask(self, limit_ms: float | None = None) -> Answer:
        """The suggestion at the cursor. `limit_ms`: the editor gives up after that long (the
        user's next keystroke is due) and cancels the request, as editors do; the answer then
        has a latency over the limit and no text."""

    async def command(self, name: str, *args: Any) -> None: ...

    async def wait_ms(self, ms: float) -> None:
        """Real time passes (the developer reads, or has not pressed the next key yet)."""


@dataclass
class SpanResult:
    path: str
    kind: str
    chars: int
    unaided_keys: int = 0  # keystrokes the text takes without suggestions (Enter indents)
    accepted_chars: int = 0
    typed_units: int = 0  # keystrokes typing characters
    accept_actions: int = 0  # Tab or accept-next-word presses
    shown: int = 0  # distinct suggestions seen
    accepted: int = 0  # ... of which something was taken
    fully_accepted: int = 0  # ... of which everything was taken
    first_line_exact: int = 0  # ... whose first line was exactly the text's next line
    requests: int = 0
    model_calls: int = 0
    late: int = 0  # model answers that arrived after the next keystroke (real time)
    latencies_ms: list[float] = field(default_factory=list)  # of model calls
    fed: list[int] = field(default_factory=list)  # tokens re-evaluated, per model call
    after_accept: int = 0  # answers asked for right after a whole suggestion was accepted
    after_accept_prefetched: int = 0  # ... that had been computed ahead (`prefetch`)
    prefetched_ms: list[float] = field(default_factory=list)  # their round trips
    after_line: int = 0  # answers asked for right after the first line of a block was taken
    after_line_at_once: int = 0  # ... answered without the model (the rest on screen, ahead)
    at_once_ms: list[float] = field(default_factory=list)  # their round trips


async def retype(target: str, editor: Editor, typing_ms: float | None, path: str = "",
                 kind: str = "", accept_ms: float = 0.0) -> SpanResult:
    """The developer types `target` at the cursor of `editor`, taking suggestions as they fit.

    `typing_ms` None: every answer is awaited and seen. Else real time, on the wall clock: a
    key every `typing_ms`; a request not answered by the time the next key is due is cancelled
    (late) and never seen, and the key is pressed. Whatever the server answers in time is seen —
    the rest of the suggestion on screen, a generation an earlier key started and this one typed
    into, one computed ahead. `accept_ms`: how long the developer reads a suggestion before
    taking it (the model's idle time).
    """
    result = SpanResult(path, kind, len(target), unaided_keys(target))
    at = 0
    screen = ""  # the rest of the suggestion on screen
    item: int | None = None  # the LSP item on screen, for the accept commands
    item_taken = 0  # characters of that item taken (partialAccept's running total)
    taken_whole = False  # the suggestion on screen had something taken / was taken whole
    taken_any = False
    accepted_whole = False  # the last action took a whole suggestion
    accepted_line = False  # ... the first line of a longer one (not all of it)
    limit = 4 * len(target) + 8
    key_at = time.perf_counter()  # when the last key (or accept) was pressed

    def since_key_ms() -> float:
        return (time.perf_counter() - key_at) * 1000

    while at < len(target) and result.requests < limit:
        wait = None if typing_ms is None else max(1.0, typing_ms - since_key_ms())
        answer = await editor.ask(wait)
        result.requests += 1
        late = wait is not None and answer.latency_ms > wait
        if answer.source == "model" and not late:
            result.model_calls += 1
            result.latencies_ms.append(answer.latency_ms)
            if answer.fed is not None:
                result.fed.append(answer.fed)
        if accepted_whole:
            result.after_accept += 1
            if answer.source == "prefetch":
                result.after_accept_prefetched += 1
                result.prefetched_ms.append(answer.latency_ms)
        if accepted_line:
            result.after_line += 1
            if answer.source in AT_ONCE and not late:
                result.after_line_at_once += 1
                result.at_once_ms.append(answer.latency_ms)
        accepted_whole = accepted_line = False
        rest = target[at:]
        continues = bool(screen) and answer.text == screen
        result.late += late
        seen = bool(answer.text) and not late
        if seen and not continues:
            result.shown += 1
            taken_any = taken_whole = False
            result.first_line_exact += answer.text.split("\n")[0] == rest.split("\n")[0]
        if seen:
            screen, item, item_taken = answer.text, answer.request_id, 0
        else:
            screen, item = "", None
        pieces, whole = accept_plan(screen, rest) if screen else ([], False)
        if pieces:
            if accept_ms > 0:
                await editor.wait_ms(accept_ms)  # reading it: the model is idle
            accepted_whole = whole
            first_line = screen.split("\n")[0]
            accepted_line = not whole and "\n" in screen and \
                len("".join(pieces)) >= len(first_line)
            for piece in pieces:
                await editor.insert(piece)
                item_taken += len(piece)
                if whole:
                    await editor.command("fimlsp.accept", item)
                else:
                    await editor.command("fimlsp.partialAccept", item, item_taken)
                result.accept_actions += 1
            key_at = time.perf_counter()
            took = sum(map(len, pieces))
            at += took
            result.accepted_chars += took
            screen = screen[took:]
            if not taken_any:
                result.accepted += 1
                taken_any = True
            if (whole or not screen) and not taken_whole:
                result.fully_accepted += 1
                taken_whole = True
            continue
        if typing_ms is not None:
            await editor.wait_ms(typing_ms - since_key_ms())  # the next key is not due yet
        unit = next_unit(target, at)
        await editor.insert(unit)
        key_at = time.perf_counter()
        result.typed_units += 1
        at += len(unit)
        screen = screen[len(unit):] if screen.startswith(unit) else ""
    return result


# -- the real server -------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def position_of(text: str, index: int) -> Any:
    from lsprotocol import types

    before = text[:index]
    line = before.count("\n")
    return types.Position(line=line, character=utf16_len(before[before.rfind("\n") + 1:]))


class LspEditor:
    """A document open in the real server, edited at one cursor."""

    _asked = 0  # requests sent by every editor: their JSON-RPC ids

    def __init__(self, client: Any, uri: str, text: str) -> None:
        from lsprotocol import types

        self.client, self.uri, self.text, self.version, self.cursor = client, uri, text, 1, 0
        language = LANGUAGES.get(Path(uri).suffix, "plaintext")
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1,
                                                 text=text)))

    def replace(self, start: int, end: int, new: str) -> None:
        from lsprotocol import types

        rng = types.Range(start=position_of(self.text, start), end=position_of(self.text, end))
        self.text = self.text[:start] + new + self.text[end:]
        self.version += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri,
                                                                version=self.version),
            content_changes=[types.TextDocumentContentChangePartial(range=rng, text=new)]))
        self.cursor = start + len(new)

    async def insert(self, text: str) -> None:
        self.replace(self.cursor, self.cursor, text)

    async def wait_ms(self, ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    async def ask(self, limit_ms: float | None = None) -> Answer:
        text, request_id, latency, stats = await self.request(limit_ms)
        if latency == math.inf:
            return Answer("", None, latency, "late")
        source = stats.get("source") or "model"
        if source == "cache" and not stats.get("prompt_tokens"):
            source = "typed"
        fed = None
        if source == "model" and isinstance(stats.get("reused_tokens"), int):
            fed = stats["prompt_tokens"] - stats["reused_tokens"]
        return Answer(text, request_id, latency, source, fed)

    async def request(self, limit_ms: float | None = None
                      ) -> tuple[str, int | None, float, dict[str, Any]]:
        """One automatic inlineCompletion at the cursor: (text, the item's request id, round
        trip ms, `fimlsp.stats` after it). `limit_ms`: cancelled (`$/cancelRequest`, as an
        editor cancels when the next key comes) if not answered by then; the latency is then
        infinite."""
        from lsprotocol import types

        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=position_of(self.text, self.cursor),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic))
        LspEditor._asked += 1
        msg_id = f"bench-{LspEditor._asked}"
        started = time.perf_counter()
        pending = self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        try:
            answer = await asyncio.wait_for(asyncio.shield(pending), limit_ms / 1000) \
                if limit_ms is not None else await pending
        except asyncio.TimeoutError:
            self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # consumed
            return "", None, math.inf, {}
        latency = (time.perf_counter() - started) * 1000
        items = list(answer.items) if answer else []
        text, request_id = "", None
        if items:
            text = items[0].insert_text if isinstance(items[0].insert_text, str) else ""
            args = items[0].command.arguments if items[0].command else None
            request_id = args[0] if args else None
        stats = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="fimlsp.stats"))
        return text, request_id, latency, dict(stats or {})

    async def command(self, name: str, *args: Any) -> None:
        from lsprotocol import types

        await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args)))

    def close(self) -> None:
        from lsprotocol import types

        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri)))


async def _start_server(model: str, options: dict[str, Any], root: Path) -> Any:
    from lsprotocol import types

    from fimlsp.tools.lspclient import editor_client

    client, loaded, problems = editor_client("fimlsp-bench-quality")
    options = dict(options)
    module = options.pop(SERVER_MODULE, "fimlsp")
    await client.start_io(sys.executable, "-m", module, "serve", "--model", model)
    server = client._server
    stderr: list[bytes] = []

    async def drain() -> None:  # an unread stderr pipe would fill up and stall the server
        while line := await server.stderr.readline():
            stderr[:] = [*stderr[-40:], line]

    client.bench_drain = asyncio.ensure_future(drain())  # type: ignore[attr-defined]
    client.bench_stderr = stderr  # type: ignore[attr-defined]
    await client.initialize_async(types.InitializeParams(
        process_id=None, root_uri=root.as_uri(),
        capabilities=types.ClientCapabilities(
            window=types.WindowClientCapabilities(work_done_progress=True)),
        initialization_options=options))
    client.initialized(types.InitializedParams())
    await asyncio.wait_for(loaded.wait(), timeout=600)
    stats = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="fimlsp.stats"))
    if (stats or {}).get("state") != "ready" or problems:
        tail = b"".join(stderr).decode(errors="replace")[-2000:]
        await _stop(client)
        raise SystemExit(f"fimlsp bench quality: the server did not get ready with {options}: "
                         f"{problems or stats}\n{tail}")
    return client


async def _wait_indexed(client: Any, timeout_s: float = 600) -> None:
    """Until the workspace index has read the folder (polling `fimlsp.stats`)."""
    from lsprotocol import types

    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        stats = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="fimlsp.stats"))
        if (stats or {}).get("repo_index", {}).get("state") in ("ready", "off"):
            return
        await asyncio.sleep(0.2)


async def _stop(client: Any) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
    await client.stop()


async def run_once(model: str, options: dict[str, Any], picked: dict[Path, list[Span]],
                   neighbours: dict[Path, list[Path]], typing_ms: float | None,
                   accept_ms: float = 0.0, root: Path | None = None
                   ) -> tuple[list[SpanResult], dict[str, Any]]:
    """One server, every span; returns the results and the server's own counters. `root`: the
    workspace folder (the workspace index reads it); default an empty temporary one."""
    root = root or Path(tempfile.mkdtemp(prefix="fimlsp-bench-quality-"))
    client = await _start_server(model, options, root)
    if options.get("repoContext", True) is not False and any(root.iterdir()):
        await _wait_indexed(client)
    results: list[SpanResult] = []
    try:
        for path, spans in picked.items():
            text = path.read_text(encoding="utf-8")
            others = []
            for other in neighbours.get(path, []):
                with_text = LspEditor(client, other.as_uri(), other.read_text(encoding="utf-8"))
                others.append(with_text)
            editor = LspEditor(client, path.as_uri(), text)
            for span in spans:
                editor.replace(span.start, span.end, "")
                results.append(await retype(span.target, editor, typing_ms, span.path,
                                            span.kind, accept_ms))
                if editor.text != text:  # the developer typed it back: the file is whole again
                    raise AssertionError(f"{path}: the retyped text differs")
            for opened in [editor, *others]:
                opened.close()
        from lsprotocol import types

        stats = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="fimlsp.stats"))
    finally:
        await _stop(client)
    return results, dict(stats or {})


def neighbours_for(picked: Iterable[Path], files: Sequence[Path], seed: int,
                   count: int = 2) -> dict[Path, list[Path]]:
    """Other files open beside each one (as in an editor): siblings in its folder, else others."""
    rng = random.Random(seed + 1)
    chosen = {}
    for path in picked:
        siblings = [f for f in files if f.parent == path.parent and f != path]
        pool = siblings if len(siblings) >= count else [f for f in files if f != path]
        chosen[path] = sorted(rng.sample(pool, min(count, len(pool))))
    return chosen


# -- the numbers -----------------------------------------------------------------------------------


METRICS = {  # name: (numerator, denominator) summed over spans
    "chars_saved": ("accepted_chars", "chars"),
    "acceptance": ("accepted", "shown"),
    "first_line_exact": ("first_line_exact", "shown"),
    "never_accepted": ("never", "shown"),
    "keystrokes_saved": ("saved_keys", "unaided_keys"),
}


def _counts(r: SpanResult) -> dict[str, float]:
    counts = {k: float(v) for k, v in asdict(r).items() if isinstance(v, (int, float))}
    counts["never"] = r.shown - r.accepted
    counts["saved_keys"] = r.unaided_keys - r.typed_units - r.accept_actions
    return counts


def summarize(results: Sequence[SpanResult], boot: int = 2000, seed: int = 0,
              files_order: Sequence[str] | None = None) -> dict[str, Any]:
    """Ratios of sums, with 95 % bootstrap intervals resampling whole files."""
    import numpy as np

    names = list(files_order) if files_order else sorted({r.path for r in results})
    index = {name: k for k, name in enumerate(names)}
    keys = sorted({k for r in results for k in _counts(r)})
    per_file = np.zeros((len(names), len(keys)))
    for r in results:
        counts = _counts(r)
        per_file[index[r.path]] += [counts[k] for k in keys]
    col = {k: i for i, k in enumerate(keys)}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(boot, len(names)))
    sums = per_file[draws].sum(axis=1)  # boot × keys
    total = per_file.sum(axis=0)
    out: dict[str, Any] = {"spans": len(results), "files": len(names)}
    for metric, (num, den) in METRICS.items():
        value = total[col[num]] / total[col[den]] if total[col[den]] else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = sums[:, col[num]] / sums[:, col[den]]
        ratios = ratios[np.isfinite(ratios)]
        low, high = (np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (np.nan, np.nan))
        out[metric] = {"value": float(value), "low": float(low), "high": float(high)}
    for name in ("chars", "accepted_chars", "shown", "accepted", "fully_accepted", "requests",
                 "model_calls", "late", "typed_units", "accept_actions"):
        out[name] = int(total[col[name]])
    fed = sorted(x for r in results for x in r.fed)
    if fed:  # tokens re-evaluated per model call: what KV reuse left to feed
        out["fed_tokens"] = {"median": fed[len(fed) // 2], "mean": sum(fed) / len(fed)}
    out["after_accept"] = sum(r.after_accept for r in results)
    out["after_accept_prefetched"] = sum(r.after_accept_prefetched for r in results)
    out["after_line"] = sum(r.after_line for r in results)
    out["after_line_at_once"] = sum(r.after_line_at_once for r in results)
    for name, values in (("latency_ms", [x for r in results for x in r.latencies_ms]),
                         ("prefetched_ms", [x for r in results for x in r.prefetched_ms]),
                         ("at_once_ms", [x for r in results for x in r.at_once_ms])):
        values = sorted(values)
        if values:
            out[name] = {"median": values[len(values) // 2],
                         "p90": values[int(len(values) * 0.9)],
                         "mean": sum(values) / len(values)}
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["cpu"] = value.strip()
        if key.strip() == "Flags":
            info["avx512"] = sorted(f for f in value.split() if f.startswith("avx512"))
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads_default"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        with open("/proc/loadavg") as handle:
            info["load"] = handle.read().split()[:3]
    except OSError:
        pass
    import os

    info["cores"] = os.cpu_count()
    return info


def _pct(cell: dict[str, float]) -> str:
    return (f"{100 * cell['value']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"
            if cell["value"] == cell["value"] else "—")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of a run: one line per variant."""
    lines = ["| variant | chars saved % [95 % CI] | real time: chars saved % [CI] | "
             "keystrokes saved % [CI] | acceptance % of shown [CI] | first line exact % | "
             "shown, never accepted % | shown | model calls | median / p90 ms | "
             "late (real time) | after an accept: computed ahead | ... p50 ms | "
             "after a first-line accept: at once | ... p50 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        plain, real = row.get("plain"), row.get("realtime")
        base = plain or real
        assert base is not None
        lat = base.get("latency_ms") or {}
        lines.append(
            f"| {row['variant']} | {_pct(plain['chars_saved']) if plain else '—'} | "
            f"{_pct(real['chars_saved']) if real else '—'} | "
            f"{_pct(base['keystrokes_saved'])} | {_pct(base['acceptance'])} | "
            f"{100 * base['first_line_exact']['value']:.1f} | "
            f"{100 * base['never_accepted']['value']:.1f} | {base['shown']} | "
            f"{base['model_calls']} | {lat.get('median', 0):.0f} / {lat.get('p90', 0):.0f} | "
            f"{(real or {}).get('late', '—')} | {_ahead(real or base)} | "
            f"{_median(real or base, 'prefetched_ms')} | "
            f"{_ahead(real or base, 'after_line', 'after_line_at_once')} | "
            f"{_median(real or base, 'at_once_ms')} |")
    return "\n".join(lines)


def _ahead(cell: dict[str, Any], asked: str = "after_accept",
           ready: str = "after_accept_prefetched") -> str:
    """Answers after an accept that did not wait for the model: `k / n (p %)`."""
    n, k = cell.get(asked, 0), cell.get(ready, 0)
    return f"{k} / {n} ({100 * k / n:.0f} %)" if n else "—"


def _median(cell: dict[str, Any], name: str) -> str:
    return f"{(cell.get(name) or {}).get('median', float('nan')):.1f}"


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Characters saved per variant, plain and under real time, with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["variant"] for row in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    for offset, mode, color in ((-0.18, "plain", "#3b6ea8"), (0.18, "realtime", "#d08c2b")):
        ys, xs, lows, highs = [], [], [], []
        for k, row in enumerate(rows):
            cell = (row.get(mode) or {}).get("chars_saved")
            if not cell:
                continue
            ys.append(k + offset)
            xs.append(100 * cell["value"])
            lows.append(100 * (cell["value"] - cell["low"]))
            highs.append(100 * (cell["high"] - cell["value"]))
        if not ys:
            continue
        ax.barh(ys, xs, height=0.34, color=color, xerr=[lows, highs], capsize=3,
                label="every suggestion seen" if mode == "plain" else "real time")
        for y, x, high in zip(ys, xs, highs, strict=True):
            ax.text(x + high + 0.2, y, f"{x:.1f}", va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("characters saved, % of the retyped text (95 % bootstrap CI over files)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(rows)), ncol=2,
              fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command -----------------------------------------------------------------------------------


def _default_model() -> str:
    from fimlsp.tools.tiny import trained_model_dir

    trained = trained_model_dir()
    if trained is None:
        raise SystemExit("fimlsp bench quality: no --model given and the trained fixture "
                         "(shared/models/tiny-fim-starcoder) is not there")
    return str(trained)


MODES = ("plain", "realtime")


def parse_modes(text: str) -> list[str]:
    """`--modes`: names from MODES, comma-separated, `both` for all; anything else is refused
    here with the names, not later in the table."""
    modes: list[str] = []
    for name in (m.strip().lower() for m in text.split(",") if m.strip()):
        for mode in MODES if name == "both" else (name,):
            if mode not in MODES:
                raise SystemExit(f"fimlsp bench quality: unknown mode {name!r} (have: "
                                 f"{', '.join(MODES)}, both)")
            if mode not in modes:
                modes.append(mode)
    if not modes:
        raise SystemExit("fimlsp bench quality: --modes names no mode")
    return modes


def _parse_variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    if args.sweep:
        return list(VARIANTS.items())
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"fimlsp bench quality: unknown variants {unknown} "
                         f"(have: {', '.join(VARIANTS)})")
    return [(n, VARIANTS[n]) for n in names]


def paired_difference(runs: dict[tuple[str, str], list[dict[str, Any]]], variant: str,
                      mode: str, boot: int = 2000, seed: int = 0) -> dict[str, float] | None:
    """Characters saved, `variant` minus defaults, on the same spans: a bootstrap over files that
    draws the same files for both, so the spans' own difficulty cancels out."""
    import numpy as np

    ours, base = runs.get((variant, mode)), runs.get(("defaults", mode))
    if not ours or not base or variant == "defaults":
        return None
    files = sorted({r["path"] for r in base})
    index = {f: k for k, f in enumerate(files)}
    sums = np.zeros((2, len(files), 2))  # (variant, defaults) × file × (accepted, chars)
    for which, spans in enumerate((ours, base)):
        for r in spans:
            sums[which, index[r["path"]]] += (r["accepted_chars"], r["chars"])
    draws = np.random.default_rng(seed).integers(0, len(files), size=(boot, len(files)))
    drawn = sums[:, draws].sum(axis=2)  # 2 × boot × 2
    diffs = drawn[0, :, 0] / drawn[0, :, 1] - drawn[1, :, 0] / drawn[1, :, 1]
    total = sums.sum(axis=1)
    value = total[0, 0] / total[0, 1] - total[1, 0] / total[1, 1]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"value": float(value), "low": float(low), "high": float(high)}


def report(paths: Sequence[Path], plot_path: Path | None) -> int:
    """Merges runs saved with --json (a sweep split over several commands) by variant."""
    rows: dict[str, dict[str, Any]] = {}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    first: dict[str, Any] = {}
    for path in paths:
        saved = json.loads(path.read_text())
        first = first or saved
        for row in saved["rows"]:
            merged = rows.setdefault(row["variant"], {"variant": row["variant"],
                                                      "options": row["options"]})
            merged.update({k: v for k, v in row.items() if k in ("plain", "realtime")})
        for run in saved.get("runs", []):
            runs[(run["variant"], run["mode"])] = run["spans"]
            row = rows[run["variant"]]
            seconds = (row.get(run["mode"]) or {}).get("seconds")
            # From the spans, so that every table is computed by today's code.
            row[run["mode"]] = {**summarize([SpanResult(**r) for r in run["spans"]]),
                                "seconds": seconds}
    ordered = [rows[n] for n in VARIANTS if n in rows] + [
        r for n, r in rows.items() if n not in VARIANTS]
    print(table(ordered))
    print("\ncharacters saved, variant − defaults on the same spans (paired bootstrap over "
          "files), percentage points [95 % CI]:\n")
    print("| variant | plain | real time |\n|---|---|---|")
    for row in ordered:
        cells = []
        for mode in ("plain", "realtime"):
            diff = paired_difference(runs, row["variant"], mode)
            cells.append(f"{100 * diff['value']:+.1f} [{100 * diff['low']:+.1f}, "
                         f"{100 * diff['high']:+.1f}]" if diff else "—")
        if row["variant"] != "defaults":
            print(f"| {row['variant']} | {cells[0]} | {cells[1]} |")
    if plot_path:
        spans = (ordered[0].get("plain") or ordered[0].get("realtime") or {}).get("spans", 0)
        plot(ordered, plot_path, f"{Path(first['model']).name}: {spans} spans of held-out "
             f"code, {first['typing_ms']:g} ms per keystroke")
    return 0


def _save(path: Path, model: str, args: argparse.Namespace, base: dict[str, Any],
          rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"model": model, "seed": args.seed, "files": args.files,
                                "per_file": args.per_file, "typing_ms": args.typing_ms,
                                "base": base, "machine": machine(), "rows": rows,
                                "runs": runs}, indent=1))


def _base_options(args: argparse.Namespace) -> dict[str, Any]:
    """The server options every variant starts from: quiet logs, `--threads`, each `--set`."""
    base: dict[str, Any] = {"logLevel": "warning"}
    if args.threads:
        base["threads"] = args.threads
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            base[key] = json.loads(value)
        except json.JSONDecodeError:
            base[key] = value
    return base


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench quality",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="any model the server takes (default: the trained "
                        "fixture in shared/models/tiny-fim-starcoder)")
    parser.add_argument("--paths", nargs="*", default=[],
                        help="files or folders to retype instead of the held-out stdlib modules")
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="the Python standard library holding the held-out modules")
    parser.add_argument("--files", type=int, default=8, help="files sampled")
    parser.add_argument("--per-file", type=int, default=2, help="spans per file (kinds in turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--typing-ms", type=float, default=150.0,
                        help="milliseconds between keystrokes under real time")
    parser.add_argument("--accept-ms", type=float, default=300.0,
                        help="how long the developer reads a suggestion before accepting it "
                        "(real time, in which the server may compute ahead)")
    parser.add_argument("--variants", default="defaults,int8",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--sweep", action="store_true", help="every variant")
    parser.add_argument("--modes", default="plain,realtime",
                        help="comma-separated: plain (every answer awaited), realtime (answers "
                        "later than --typing-ms are not seen); `both` is plain,realtime")
    parser.add_argument("--threads", type=int, default=0,
                        help="the server's CPU threads; 0 (the default): the server's own choice, "
                        "as shipped. On a machine shared with other jobs, 1 is steadier")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=JSON",
                        help="a server option for every variant, e.g. --set contextWindow=384")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--root", type=Path, default=None,
                        help="the workspace folder the server is given (its index reads it); "
                             "default: an empty temporary folder")
    parser.add_argument("--json", type=Path, help="write every span's result here")
    parser.add_argument("--plot", type=Path, help="write the PNG plot here (needs matplotlib)")
    parser.add_argument("--mid-word", type=int, default=0, metavar="N",
                        help="instead of retyping: N cursors inside identifiers, token healing "
                        "off and on side by side, and the word-start reference (bench/midword.py)")
    parser.add_argument("--alternatives", type=int, default=0, metavar="N",
                        help="instead of retyping: N identifiers (a cursor inside and one at "
                        "the start of each), servers with alternatives off and on side by side: "
                        "how many alternatives, and the first answer's latency "
                        "(bench/alternatives.py)")
    parser.add_argument("--from-json", type=Path, nargs="+", metavar="JSON",
                        help="no run: the table (and --plot) from earlier --json files, merged")
    args = parser.parse_args(argv)
    if args.from_json:
        return report(args.from_json, args.plot)

    model = args.model or _default_model()
    if args.paths:
        files = []
        for given in args.paths:
            path = Path(given)
            files += sorted(p for p in (path.rglob("*") if path.is_dir() else [path])
                            if p.is_file() and p.suffix in LANGUAGES)
    else:
        files = held_out_files(args.stdlib)
    if not files:
        raise SystemExit("fimlsp bench quality: no files to retype")
    if args.mid_word:
        from fimlsp_bench import midword

        return midword.main(model, files, args.mid_word, args.seed, _base_options(args),
                            args.json)
    if args.alternatives:
        from fimlsp_bench import alternatives

        return alternatives.main(model, files, args.alternatives, args.seed,
                                 _base_options(args), args.json)
    picked = sample(files, args.files, args.per_file, args.seed)
    neighbours = neighbours_for(picked, files, args.seed)
    order = [str(p) for p in picked]
    base = _base_options(args)
    modes = parse_modes(args.modes)
    spans = sum(len(s) for s in picked.values())
    chars = sum(len(s.target) for v in picked.values() for s in v)
    print(f"fimlsp bench quality: model {model}; {spans} spans ({chars} characters) from "
          f"{len(picked)} files, seed {args.seed}; typing {args.typing_ms:g} ms per keystroke; "
          f"base options {base}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    for name, options in _parse_variants(args):
        row: dict[str, Any] = {"variant": name, "options": options}
        for mode in modes:
            started = time.perf_counter()
            typing_ms = args.typing_ms if mode == "realtime" else None
            results, stats = asyncio.run(run_once(model, {**base, **options}, picked,
                                                  neighbours, typing_ms, args.accept_ms,
                                                  args.root))
            summary = summarize(results, args.boot, args.seed, order)
            summary["seconds"] = round(time.perf_counter() - started, 1)
            summary["server_accepted_chars"] = stats.get("accepted_chars")
            row[mode] = summary
            raw.append({"variant": name, "mode": mode, "options": options,
                        "spans": [asdict(r) for r in results]})
            if args.json:  # after every run: a long sweep can stop without losing runs
                _save(args.json, model, args, base, [*rows, row], raw)
            print(f"  {name:<20} {mode:<8} chars saved {_pct(summary['chars_saved'])} % "
                  f"acceptance {_pct(summary['acceptance'])} % shown {summary['shown']} "
                  f"model calls {summary['model_calls']} late {summary['late']} "
                  f"fed tokens {summary.get('fed_tokens', {}).get('mean', 0):.1f} "
                  f"({summary['seconds']:.0f}s)", file=sys.stderr)
        rows.append(row)
    info = machine()
    print(f"\n{spans} spans, {chars} characters, {len(picked)} held-out files; model {model}; "
          f"{time.perf_counter() - started_all:.0f}s on {info.get('cpu', '?')} "
          f"({info.get('cores')} cores, load {' '.join(info.get('load', []))})\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot, f"{Path(model).name}: {spans} spans of held-out code, "
             f"{args.typing_ms:g} ms per keystroke")
    return 0
