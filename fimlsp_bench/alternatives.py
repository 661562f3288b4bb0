"""Alternatives: `fimlsp bench quality --alternatives N` (issue 23).

Two real servers on the same model, `alternatives` 0 and 2, asked in turn at N cursors of
held-out code (inside identifiers and at their start, as `--mid-word` places them; the rest of
the line deleted: the user is writing it). Per cursor and server, the order alternating:

1. an automatic request at the cursor: the first answer's latency and text;
2. at once, the next keystroke (the code's next character) and its automatic request: on the
   server with alternatives, they are being computed when it arrives, so its latency is what
   yielding costs a real request;
3. the keystroke undone and an invoked request at the cursor (what a client sends when the user
   cycles): the first answer again, then the alternatives.

Every keystroke asks the model (`typingThrough` off) and nothing is computed ahead (`prefetch`
off), so after step 3 both servers are idle and one server's background work never falls on the
other's measurement. Reported: the share of multi-token first answers (2+ generated tokens) with
at least 2 distinct alternatives, the first answers that differ between the servers, and the
latency ratios (alternatives on / off, median over cursors, paired) of steps 1 and 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fimlsp_bench.midword import Cursor, sample_cursors
from fimlsp_bench.quality import (
    LANGUAGES,
    LspEditor,
    _start_server,
    _stop,
    machine,
    position_of,
)

WANTED = 2  # the alternatives setting of the server that computes them (the default)


@dataclass
class Outcome:
    """One server at one cursor."""

    first: str
    first_ms: float
    generated: int  # tokens of the first answer
    next_ms: float  # the keystroke right after it
    alternatives: list[str] = field(default_factory=list)


async def _inline(editor: LspEditor, invoked: bool) -> tuple[list[str], float, dict[str, Any]]:
    """One inlineCompletion at the editor's cursor: (the items' texts, ms, fimlsp.stats)."""
    from lsprotocol import types

    kind = types.InlineCompletionTriggerKind.Invoked if invoked else \
        types.InlineCompletionTriggerKind.Automatic
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=editor.uri),
        position=position_of(editor.text, editor.cursor),
        context=types.InlineCompletionContext(trigger_kind=kind))
    started = time.perf_counter()
    answer = await editor.client.text_document_inline_completion_async(params)
    latency = (time.perf_counter() - started) * 1000
    texts = [i.insert_text for i in (answer.items if answer else [])
             if isinstance(i.insert_text, str)]
    stats = await editor.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="fimlsp.stats"))
    return texts, latency, dict(stats or {})


async def _at(editor: LspEditor, text: str, at: int, line_end: int) -> Outcome:
    """Steps 1-3 at `at`; leaves the file whole again."""
    editor.replace(at, line_end, "")
    first, first_ms, stats = await _inline(editor, invoked=False)
    generated = int(stats.get("generated_tokens") or 0) if stats.get("source") == "model" else 0
    editor.replace(at, at, text[at])  # the next keystroke, at once
    _, next_ms, _ = await _inline(editor, invoked=False)
    editor.replace(at, at + 1, "")
    again, _, _ = await _inline(editor, invoked=True)
    editor.replace(at, at, text[at:line_end])
    if editor.text != text:
        raise AssertionError("the file was not restored")
    main = first[0] if first else ""
    others = again[1:] if again and again[0] == main else []
    return Outcome(main, first_ms, generated, next_ms, others)


async def run(model: str, base: dict[str, Any], cursors: Sequence[Cursor]
              ) -> dict[str, list[Outcome]]:
    root = Path(tempfile.mkdtemp(prefix="fimlsp-bench-alternatives-"))
    options = {**base, "typingThrough": False, "prefetch": False}
    servers = {"off": await _start_server(model, {**options, "alternatives": 0}, root),
               "on": await _start_server(model, {**options, "alternatives": WANTED}, root)}
    results: dict[str, list[Outcome]] = {"off": [], "on": []}
    try:
        by_file: dict[str, list[Cursor]] = {}
        for cursor in cursors:
            by_file.setdefault(cursor.path, []).append(cursor)
        turn = 0
        for path, here in by_file.items():
            text = Path(path).read_text(encoding="utf-8")
            editors = {name: LspEditor(client, Path(path).as_uri(), text)
                       for name, client in servers.items()}
            for cursor in here:
                for at in (cursor.cut, cursor.start):
                    order = ("off", "on") if turn % 2 == 0 else ("on", "off")
                    turn += 1
                    for name in order:
                        results[name].append(await _at(editors[name], text, at,
                                                       cursor.line_end))
            for editor in editors.values():
                editor.close()
    finally:
        for client in servers.values():
            await _stop(client)
    return results


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def summarize(results: dict[str, list[Outcome]]) -> dict[str, Any]:
    on, off = results["on"], results["off"]
    multi = [o for o in on if o.generated >= 2 and o.first]
    pairs = list(zip(on, off, strict=True))
    return {
        "cursors": len(on),
        "multi_token": len(multi),
        "with_2_alternatives": sum(len(set(o.alternatives)) >= 2 for o in multi) / max(
            len(multi), 1),
        "with_1_alternative": sum(len(set(o.alternatives)) >= 1 for o in multi) / max(
            len(multi), 1),
        "mean_alternatives": sum(len(o.alternatives) for o in multi) / max(len(multi), 1),
        "first_differs": sum(a.first != b.first for a, b in pairs) / max(len(pairs), 1),
        "first_p50_ms": {"off": _median([o.first_ms for o in off]),
                         "on": _median([o.first_ms for o in on])},
        "first_ratio": _median([a.first_ms / b.first_ms for a, b in pairs if b.first_ms > 0]),
        "next_p50_ms": {"off": _median([o.next_ms for o in off]),
                        "on": _median([o.next_ms for o in on])},
        "next_ratio": _median([a.next_ms / b.next_ms for a, b in pairs if b.next_ms > 0]),
    }


def main(model: str, files: Sequence[Path], count: int, seed: int, base: dict[str, Any],
         json_path: Path | None) -> int:
    cursors = sample_cursors([f for f in files if f.suffix in LANGUAGES], count, seed)
    if not cursors:
        raise SystemExit("fimlsp bench quality --alternatives: no identifiers to place cursors in")
    print(f"fimlsp bench quality --alternatives: model {model}; {len(cursors)} identifiers "
          f"(2 cursors each) from {len({c.path for c in cursors})} files, seed {seed}; "
          f"options {base}", file=sys.stderr)
    started = time.perf_counter()
    results = asyncio.run(run(model, base, cursors))
    s = summarize(results)
    info = machine()
    print(f"\n{s['cursors']} cursors; model {model}; {time.perf_counter() - started:.0f}s on "
          f"{info.get('cpu', '?')} ({info.get('cores')} cores, load "
          f"{' '.join(info.get('load', []))})\n")
    print("| multi-token first answers | with ≥ 2 distinct alternatives | with ≥ 1 | "
          "alternatives per answer | first answer differs on/off | first answer p50 ms off / "
          "on, ratio | next keystroke p50 ms off / on, ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {s['multi_token']} of {s['cursors']} | {100 * s['with_2_alternatives']:.1f} % | "
          f"{100 * s['with_1_alternative']:.1f} % | {s['mean_alternatives']:.2f} | "
          f"{100 * s['first_differs']:.1f} % | {s['first_p50_ms']['off']:.0f} / "
          f"{s['first_p50_ms']['on']:.0f}, {s['first_ratio']:.2f}× | "
          f"{s['next_p50_ms']['off']:.0f} / {s['next_p50_ms']['on']:.0f}, "
          f"{s['next_ratio']:.2f}× |")
    if json_path is not None:
        json_path.write_text(json.dumps({"model": model, "options": base, "summary": s,
                                         "machine": info,
                                         "results": {k: [asdict(o) for o in v]
                                                     for k, v in results.items()}},
                                        indent=1), encoding="utf-8")
    return 0
