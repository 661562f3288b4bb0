"""`fimlsp bench soak`: a typing storm against the real server — latency and memory over time.

A developer who types fast and never stops is the server's worst steady state: every keystroke is
a `didChange` plus an `inlineCompletion`, most requests are superseded before they finish, and
whatever the server keeps per request (caches, prompt windows, neighbour snippets, logs) has
minutes to pile up. This benchmark is that developer, at a fixed rate (default 20 keystrokes per
second for 3 minutes), speaking LSP over stdio to `fimlsp serve` in a subprocess.

The typist retypes real code: it picks a line of the document, deletes it, types it back one
character at a time, and moves on to another line — so the document's size stays constant on
average, and any growth of the server's memory is the server's, not the document's. Requests are
sent without waiting for the previous one (as editors do); the server supersedes what is stale.

Reported: keystroke→answer latency (p50 / p95 / max) overall and per 30-second slice, how many
answers carried a suggestion, the server's resident memory (VmRSS from /proc) sampled every
second, and the slope of a least-squares line through the RSS of the second half of the run, in
MB per minute (the first half includes warm-up: model pages faulting in, caches filling to their
bounds). A PNG with both over time is written when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as t

from fimlsp_bench._plot import pyplot, save


@dataclass
class Storm:
    """What the run observed; times are seconds since the first keystroke."""

    sent: int = 0
    answered: int = 0
    with_suggestion: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (at, MB)
    popups: list[str] = field(default_factory=list)  # window/showMessage texts, in order


def default_document() -> Path:
    """Real code no one here wrote: a held-out module of the standard library."""
    import argparse as module

    return Path(module.__file__)


def default_model() -> str:
    """The small trained model from shared/ when present (real suggestion lengths), else the
    tiny random one the tests use."""
    from fimlsp.tools.tiny import build_tiny_model, default_tiny_dir, shared_dir

    shared = shared_dir()
    trained = shared / "models" / "tiny-fim-starcoder" if shared else None
    if trained is not None and (trained / "config.json").is_file():
        return str(trained)
    return str(build_tiny_model(default_tiny_dir(), "tiny_starcoder_py"))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope through the second half of the samples, in MB per minute."""
    half = samples[len(samples) // 2:]
    if len(half) < 3:
        return None
    xs, ys = [s[0] for s in half], [s[1] for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60


def keystrokes(text: str, seed: int) -> Iterator[tuple[int, int, int, int, str]]:
    """Edits that retype random lines forever: (line, start char, line, end char, new text).

    Positions are UTF-16 code units; lines are chosen among those that are plain ASCII so the
    typist's arithmetic stays simple (the server's encoding handling is tested elsewhere).
    """
    rng = random.Random(seed)
    lines = text.split("\n")
    candidates = [i for i, line in enumerate(lines) if 8 <= len(line.strip()) <= 100
                  and line.isascii() and "\r" not in line]
    while True:
        number = rng.choice(candidates)
        line = lines[number]
        indent = len(line) - len(line.lstrip())
        body = line[indent:]
        yield number, indent, number, len(line), ""  # delete the line's code
        for i, ch in enumerate(body):
            yield number, indent + i, number, indent + i, ch


async def storm(model: str, document: Path, rate: float, seconds: float, seed: int,
                options: dict[str, Any]) -> tuple[Storm, dict[str, Any]]:
    from fimlsp.tools.lspclient import did_change, editor_client, initialize_and_open

    client, loaded, shown = editor_client("fimlsp-soak", echo=True)

    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", model,
                          "--log-level", "warning")
    assert client._server is not None
    pid = client._server.pid
    text = document.read_text(encoding="utf-8")
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-soak-"))
    uri = (folder / document.name).as_uri()
    result = Storm()
    pending: set[asyncio.Task[None]] = set()
    try:
        await initialize_and_open(client, loaded, folder, options, uri, text, 600)
        start = time.perf_counter()

        async def ask(sent_at: float, line: int, character: int) -> None:
            try:
                answer = await client.text_document_inline_completion_async(
                    t.InlineCompletionParams(
                        text_document=t.TextDocumentIdentifier(uri=uri),
                        position=t.Position(line=line, character=character),
                        context=t.InlineCompletionContext(
                            trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
            except Exception as error:  # an error answer is an answer; count it by kind
                name = type(error).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
            else:
                if answer is not None and answer.items:
                    result.with_suggestion += 1
            result.answered += 1
            result.latencies.append((sent_at, (time.perf_counter() - start - sent_at) * 1000))

        async def sample_rss() -> None:
            while True:
                mb = rss_mb(pid)
                if mb is not None:
                    result.rss.append((time.perf_counter() - start, mb))
                await asyncio.sleep(1.0)  # the sampling period, not synchronisation

        sampler = asyncio.create_task(sample_rss())
        version = 1
        edits = keystrokes(text, seed)
        period = 1.0 / rate
        while (now := time.perf_counter() - start) < seconds:
            line, a, line_end, b, new = next(edits)
            version += 1
            did_change(client, uri, version, (line, a), (line_end, b), new)
            task = asyncio.create_task(ask(now, line, a + len(new)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            result.sent += 1
            # Keep the rate: sleep until this keystroke's slot ends (a pacing delay).
            await asyncio.sleep(max(0.0, (result.sent * period) - (time.perf_counter() - start)))
        await asyncio.wait_for(asyncio.gather(*pending), timeout=120)
        sampler.cancel()
        stats = await client.workspace_execute_command_async(
            t.ExecuteCommandParams(command="fimlsp.stats"))
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
        result.popups = list(shown)
    return result, dict(stats or {})


def summarize(run: Storm, seconds: float, slice_s: float = 30.0) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    ms = [m for _, m in run.latencies]
    slices = []
    for k in range(int(seconds // slice_s) + 1):
        part = [m for at, m in run.latencies if k * slice_s <= at < (k + 1) * slice_s]
        if part:
            slices.append({"from_s": k * slice_s, "n": len(part), "p50_ms": round(pct(part, .5), 1),
                           "p95_ms": round(pct(part, .95), 1)})
    rss = [mb for _, mb in run.rss]
    return {
        "sent": run.sent, "answered": run.answered, "with_suggestion": run.with_suggestion,
        "errors": run.errors,
        # What the user would have seen pop up: the acceptance is one per distinct problem.
        "popups": len(run.popups), "distinct_popups": sorted(set(run.popups)),
        "p50_ms": round(pct(ms, .5), 1), "p95_ms": round(pct(ms, .95), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "rss_start_mb": round(rss[0], 1) if rss else None,
        "rss_end_mb": round(rss[-1], 1) if rss else None,
        "rss_max_mb": round(max(rss), 1) if rss else None,
        "rss_slope_mb_per_min": (None if (s := slope_mb_per_min(run.rss)) is None
                                 else round(s, 2)),
        "slices": slices,
    }


def plot(run: Storm, path: Path, title: str) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.scatter([a for a, _ in run.latencies], [m for _, m in run.latencies], s=2, alpha=.4)
    top.set_yscale("log")
    top.set_ylabel("keystroke → answer (ms)")
    top.set_title(title)
    bottom.plot([a for a, _ in run.rss], [m for _, m in run.rss])
    bottom.set_ylabel("server RSS (MB)")
    bottom.set_xlabel("seconds into the storm")
    save(plt, fig, path)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="default: shared/models/tiny-fim-starcoder if present, "
                        "else the tests' tiny random model")
    parser.add_argument("--document", type=Path, help="file to retype (default: argparse.py)")
    parser.add_argument("--rate", type=float, default=20.0, help="keystrokes per second")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--plot", type=Path, help="PNG path (needs matplotlib)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model = args.model or default_model()
    document = args.document or default_document()
    options = {"quantization": args.quantization, "maxNewTokens": 32}
    run, stats = asyncio.run(storm(model, document, args.rate, args.seconds, args.seed, options))
    report = {"model": model, "document": str(document), "rate": args.rate,
              "seconds": args.seconds, **summarize(run, args.seconds),
              "server_stats": {k: stats.get(k) for k in ("requests", "cancelled", "errors",
                                                          "cache_share") if k in stats}}
    if args.plot and plot(run, args.plot, f"typing storm: {args.rate:g} keystrokes/s, "
                          f"{Path(model).name}, {document.name}"):
        report["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "slices":
                print(f"{key:>22}: {value}")
        for s in report["slices"]:
            print(f"  {s['from_s']:>5.0f}s  n={s['n']:<5} p50 {s['p50_ms']:>7} ms  "
                  f"p95 {s['p95_ms']:>7} ms")
    return 0 if run.answered == run.sent else 1
