"""Mid-word cursors: `fimlsp bench quality --mid-word N` (issue 23, token healing).

A user pauses inside a word (`self.reque|`) and the prompt ends with a piece of a token the model
rarely saw. This mode places N cursors inside identifiers of held-out code — identifiers that
already appear earlier in the same file, so the model can know them — with the rest of the line
deleted (the user is writing that line), and asks the real server once per cursor with token
healing off and on: two servers, asked in turn for every cursor (the order alternates), so load
from other processes falls on both alike. The same identifiers with the cursor at their start
are the word-start reference.

Per row: identifiers finished (the suggestion writes the identifier's rest and then not another
identifier character), identifier characters matched (the common start of suggestion and rest,
over all rests), goes on with the word (the suggestion starts with an identifier character),
empty suggestions, latency of the model requests, and tokens re-evaluated at the next keystroke
(the user types the identifier's next character and asks again: prompt tokens the cache did not
hold, from `fimlsp.stats`) — what KV reuse costs with and without healing.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fimlsp_bench.quality import (
    LANGUAGES,
    LspEditor,
    _code_rows,
    _python_statement_rows,
    _start_server,
    _stop,
    machine,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIN_LENGTH = 4  # shorter identifiers leave no room inside them
PER_FILE = 12  # cursors at most per file, so a few long files do not make the sample


@dataclass
class Cursor:
    """Inside identifier `text[start:end]` of `path`, at `cut`; the line ends at `line_end`."""

    path: str
    start: int
    cut: int
    end: int
    line_end: int


def cursors_in(path: str, text: str, rng: random.Random, limit: int = PER_FILE) -> list[Cursor]:
    """Cursors inside identifiers on statement lines (as `quality.spans_in` picks lines) that
    already occur earlier in the file; one per identifier occurrence chosen, seeded."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    python_rows = _python_statement_rows(text) if path.endswith(".py") else None
    first_row: dict[str, int] = {}
    for row, line in enumerate(lines):
        for match in _IDENTIFIER.finditer(line):
            first_row.setdefault(match.group(), row)
    candidates = []
    for row in _code_rows(lines, python_rows):
        for match in _IDENTIFIER.finditer(lines[row]):
            name = match.group()
            if len(name) >= MIN_LENGTH and first_row[name] < row:
                candidates.append((row, match))
    chosen = sorted(rng.sample(candidates, min(limit, len(candidates))),
                    key=lambda c: (c[0], c[1].start()))
    out = []
    for row, match in chosen:
        start, end = starts[row] + match.start(), starts[row] + match.end()
        cut = rng.randint(start + 1, end - 1)
        out.append(Cursor(path, start, cut, end, starts[row] + len(lines[row])))
    return out


def sample_cursors(files: Sequence[Path], count: int, seed: int) -> list[Cursor]:
    """`count` cursors from the files, at most PER_FILE from each, seeded."""
    rng = random.Random(seed)
    pool: list[Cursor] = []
    for path in sorted(files):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        pool.extend(cursors_in(str(path), text, rng))
    picked = rng.sample(pool, min(count, len(pool)))
    return sorted(picked, key=lambda c: (c.path, c.start))


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@dataclass
class Outcome:
    """One suggestion at one cursor."""

    rest: str  # the identifier's characters after the cursor
    text: str  # the suggestion
    latency_ms: float
    source: str
    reevaluated: int | None = None  # prompt tokens fed at the next keystroke (mid-word only)

    @property
    def finished(self) -> bool:
        after = self.text[len(self.rest):len(self.rest) + 1]
        return self.text.startswith(self.rest) and not (after.isalnum() or after == "_")

    @property
    def matched(self) -> int:
        return _common(self.text, self.rest)

    @property
    def goes_on(self) -> bool:
        return bool(self.text) and (self.text[0].isalnum() or self.text[0] == "_")


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    n = max(len(outcomes), 1)
    latencies = sorted(o.latency_ms for o in outcomes if o.source == "model")
    fed = [o.reevaluated for o in outcomes if o.reevaluated is not None]
    return {
        "cursors": len(outcomes),
        "finished": sum(o.finished for o in outcomes) / n,
        "chars_matched": sum(o.matched for o in outcomes) / max(sum(len(o.rest)
                                                                   for o in outcomes), 1),
        "goes_on": sum(o.goes_on for o in outcomes) / n,
        "empty": sum(not o.text for o in outcomes) / n,
        "p50_ms": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p90_ms": latencies[int(len(latencies) * 0.9)] if latencies else float("nan"),
        "reevaluated_mean": sum(fed) / len(fed) if fed else float("nan"),
        "reevaluated_median": sorted(fed)[len(fed) // 2] if fed else float("nan"),
    }


async def _ask(editor: LspEditor) -> tuple[str, float, dict[str, Any]]:
    """One automatic inlineCompletion at the editor's cursor: (text, ms, fimlsp.stats)."""
    text, _request_id, latency, stats = await editor.request()
    return text, latency, stats


async def _at(editor: LspEditor, text: str, cursor: Cursor,
              mid_word: bool) -> Outcome:
    """The suggestion at the cursor (or at the identifier's start), the line's rest deleted;
    mid-word, also the next keystroke's re-evaluated tokens. Leaves the file whole again."""
    at = cursor.cut if mid_word else cursor.start
    editor.replace(at, cursor.line_end, "")
    suggestion, latency, stats = await _ask(editor)
    outcome = Outcome(text[at:cursor.end], suggestion, latency, stats.get("source") or "model")
    if mid_word:
        editor.replace(at, at, text[at])  # the user types the next character of the word
        _, _, after = await _ask(editor)
        if after.get("source") == "model" and after.get("prompt_tokens"):
            outcome.reevaluated = after["prompt_tokens"] - after["reused_tokens"]
        at += 1
    editor.replace(at, at, text[at:cursor.line_end])
    if editor.text != text:
        raise AssertionError(f"{cursor.path}: the file was not restored")
    return outcome


VARIANTS = (("mid-word", "off"), ("mid-word", "on"), ("word start", "off"), ("word start", "on"))


async def run(model: str, base: dict[str, Any], cursors: Sequence[Cursor]
              ) -> dict[tuple[str, str], list[Outcome]]:
    """Both servers, every cursor, healing off and on asked in turn."""
    root = Path(tempfile.mkdtemp(prefix="fimlsp-bench-midword-"))
    options = {**base, "typingThrough": False}  # every keystroke asks the model
    servers = {
        "off": await _start_server(model, {**options, "tokenHealing": False}, root),
        "on": await _start_server(model, {**options, "tokenHealing": True}, root),
    }
    results: dict[tuple[str, str], list[Outcome]] = {v: [] for v in VARIANTS}
    try:
        by_file: dict[str, list[Cursor]] = {}
        for cursor in cursors:
            by_file.setdefault(cursor.path, []).append(cursor)
        turn = 0
        for path, here in by_file.items():
            text = Path(path).read_text(encoding="utf-8")
            editors = {h: LspEditor(client, Path(path).as_uri(), text)
                       for h, client in servers.items()}
            for cursor in here:
                for mid_word in (True, False):
                    order = ("off", "on") if turn % 2 == 0 else ("on", "off")
                    turn += 1
                    for healing in order:
                        kind = "mid-word" if mid_word else "word start"
                        results[(kind, healing)].append(
                            await _at(editors[healing], text, cursor, mid_word))
            for editor in editors.values():
                editor.close()
        for healing, client in servers.items():
            from lsprotocol import types

            stats = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="fimlsp.stats"))
            want = "on" if healing == "on" else "off (tokenHealing setting)"
            if (stats or {}).get("token_healing") != want:
                raise AssertionError(f"the server with healing {healing} says "
                                     f"{(stats or {}).get('token_healing')!r}")
    finally:
        for client in servers.values():
            await _stop(client)
    return results


def table(rows: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = ["| cursor | token healing | identifiers finished % | identifier chars matched % | "
             "goes on with the word % | empty % | p50 / p90 ms | re-evaluated tokens at the "
             "next keystroke, mean / median |",
             "|---|---|---|---|---|---|---|---|"]
    for (kind, healing), s in rows.items():
        fed = (f"{s['reevaluated_mean']:.1f} / {s['reevaluated_median']:.0f}"
               if s["reevaluated_mean"] == s["reevaluated_mean"] else "—")
        lines.append(f"| {kind} | {healing} | {100 * s['finished']:.1f} | "
                     f"{100 * s['chars_matched']:.1f} | {100 * s['goes_on']:.1f} | "
                     f"{100 * s['empty']:.1f} | {s['p50_ms']:.0f} / {s['p90_ms']:.0f} | "
                     f"{fed} |")
    return "\n".join(lines)


def latency_ratio(results: dict[tuple[str, str], list[Outcome]], kind: str) -> float:
    """Median over cursors of (healing on ms / healing off ms): paired, so a slow moment of the
    machine falls on both."""
    ratios = sorted(on.latency_ms / off.latency_ms for on, off in
                    zip(results[(kind, "on")], results[(kind, "off")], strict=True)
                    if on.source == off.source == "model" and off.latency_ms > 0)
    return ratios[len(ratios) // 2] if ratios else float("nan")


def main(model: str, files: Sequence[Path], count: int, seed: int, base: dict[str, Any],
         json_path: Path | None) -> int:
    cursors = sample_cursors([f for f in files if f.suffix in LANGUAGES], count, seed)
    if not cursors:
        raise SystemExit("fimlsp bench quality --mid-word: no identifiers to place cursors in")
    print(f"fimlsp bench quality --mid-word: model {model}; {len(cursors)} cursors from "
          f"{len({c.path for c in cursors})} files, seed {seed}; options {base}", file=sys.stderr)
    started = time.perf_counter()
    results = asyncio.run(run(model, base, cursors))
    rows = {variant: summarize(outcomes) for variant, outcomes in results.items()}
    info = machine()
    print(f"\n{len(cursors)} cursors inside identifiers of held-out code; model {model}; "
          f"{time.perf_counter() - started:.0f}s on {info.get('cpu', '?')} "
          f"({info.get('cores')} cores, load {' '.join(info.get('load', []))})\n")
    print(table(rows))
    print(f"\np50 latency, healing on / off (median of paired ratios): mid-word "
          f"{latency_ratio(results, 'mid-word'):.2f}, word start "
          f"{latency_ratio(results, 'word start'):.2f}")
    if json_path:
        json_path.write_text(json.dumps({
            "model": model, "seed": seed, "options": base, "machine": info,
            "cursors": [asdict(c) for c in cursors],
            "rows": [{"cursor": k, "healing": h, **s} for (k, h), s in rows.items()],
            "outcomes": [{"cursor": k, "healing": h, **asdict(o)}
                         for (k, h), outs in results.items() for o in outs]}, indent=1))
    return 0
