"""`fimlsp bench remote`: N editors typing at once against one vLLM, and in-process at N = 1.

Each simulated editor is what a developer's editor is: its own `fimlsp serve` subprocess with
`engine: openai`, spoken to over stdio, retyping lines of a held-out standard-library module
(didChange + inlineCompletion per keystroke). All of them share one vLLM server, as a team
shares a GPU box. Each editor waits for a keystroke's answer before the next keystroke (which
comes at the typing rate, or at once when the answer came later), so every keystroke's latency
is measured and none is superseded.

Reported per N: keystroke→suggestion p50 / p95 / max, the share answered without the engine
(typing-through, recent answers), and vLLM's prefix-cache hit rate (hits / queried prompt
tokens, from its metrics) over the run. The same typing against the in-process engine at N = 1
is the baseline. A PNG plots p50/p95 against N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as t

from fimlsp_bench._plot import pyplot, save
from fimlsp_bench._vllm import INSTALL, VllmServer, hit_rate, vllm_python
from fimlsp_bench.soak import keystrokes

DOCUMENTS = ("argparse.py", "textwrap.py", "shlex.py", "csv.py", "fractions.py",
             "dataclasses.py")  # held out from the trained model


class Start:
    """Everyone starts typing together, once every editor's server has loaded (asyncio.Barrier
    is 3.11+; we support 3.10)."""

    def __init__(self, n: int) -> None:
        self.n, self.arrived, self.go = n, 0, asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.n:
            self.go.set()
        await self.go.wait()


@dataclass
class Typist:
    """What one editor saw."""

    sent: int = 0
    waited: list[float] = field(default_factory=list)  # ms, answers the user waited for
    from_cache: int = 0
    with_suggestion: int = 0
    errors: int = 0


async def type_along(model: str, options: dict[str, Any], document: Path, rate: float,
                     seconds: float, seed: int, ready: Start) -> tuple[Typist, dict]:
    """One editor: starts its server, waits for the others, types for `seconds`."""
    from fimlsp.tools.lspclient import did_change, editor_client, initialize_and_open

    client, loaded, _shown = editor_client(f"fimlsp-remote-{seed}")
    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", model,
                          "--log-level", "warning")
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-remote-"))
    uri = (folder / document.name).as_uri()
    text = document.read_text(encoding="utf-8")
    typist = Typist()
    try:
        await initialize_and_open(client, loaded, folder, options, uri, text, 600)
        await ready.wait()
        start = time.perf_counter()
        edits = keystrokes(text, seed)
        version = 1
        while time.perf_counter() - start < seconds:
            line, a, line_end, b, new = next(edits)
            version += 1
            did_change(client, uri, version, (line, a), (line_end, b), new)
            typist.sent += 1
            sent = time.perf_counter()
            try:
                answer = await client.text_document_inline_completion_async(
                    t.InlineCompletionParams(
                        text_document=t.TextDocumentIdentifier(uri=uri),
                        position=t.Position(line=line, character=a + len(new)),
                        context=t.InlineCompletionContext(
                            trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
            except Exception:
                typist.errors += 1
            else:
                typist.waited.append((time.perf_counter() - sent) * 1000)
                typist.with_suggestion += bool(answer is not None and answer.items)
            # The next keystroke comes at the typing rate, or at once if the answer was later
            # (a pacing delay).
            await asyncio.sleep(max(0.0, typist.sent / rate - (time.perf_counter() - start)))
        stats = await client.workspace_execute_command_async(
            t.ExecuteCommandParams(command="fimlsp.stats"))
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    typist.from_cache = int((stats or {}).get("answered_from_cache", 0))
    return typist, dict(stats or {})


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None


async def round_of(n: int, model: str, options: dict[str, Any], documents: list[Path],
                   rate: float, seconds: float) -> list[tuple[Typist, dict]]:
    ready = Start(n)
    return list(await asyncio.gather(*(
        type_along(model, options, documents[i % len(documents)], rate, seconds, i, ready)
        for i in range(n))))


def summarize(label: str, n: int, typists: list[Typist], rate: float | None,
              seconds: float) -> dict[str, Any]:
    waited = [ms for typist in typists for ms in typist.waited]
    sent = sum(typist.sent for typist in typists)
    return {"engine": label, "editors": n, "keystrokes": sent,
            "answers_per_s": round(len(waited) / seconds, 1),
            "waited_for": len(waited),
            "errors": sum(x.errors for x in typists),
            "without_engine": round(sum(x.from_cache for x in typists) / sent, 3) if sent else 0,
            "with_suggestion": sum(x.with_suggestion for x in typists),
            "p50_ms": pct(waited, .5), "p95_ms": pct(waited, .95),
            "max_ms": round(max(waited), 1) if waited else None,
            "mean_ms": round(statistics.fmean(waited), 1) if waited else None,
            "prefix_cache_hit_rate": None if rate is None else round(rate, 3)}


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    remote = [r for r in rows if r["engine"] == "vllm" and r["p50_ms"] is not None]
    local = [r for r in rows if r["engine"] == "in-process" and r["p50_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ns = [r["editors"] for r in remote]
    ax.plot(ns, [r["p50_ms"] for r in remote], "o-", label="vLLM p50")
    ax.plot(ns, [r["p95_ms"] for r in remote], "o--", label="vLLM p95")
    for r in local:
        ax.plot([1], [r["p50_ms"]], "s", label="in-process p50")
        ax.plot([1], [r["p95_ms"]], "^", label="in-process p95")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("editors typing at once")
    ax.set_ylabel("keystroke → suggestion (ms)")
    ax.legend()
    ax.grid(alpha=.3)
    save(plt, fig, path)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench remote",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: shared/models/"
                        "tiny-fim-starcoder); vLLM serves it and fimlsp tokenizes with it")
    parser.add_argument("--editors", default="1,2,4,8,16", help="N values, comma-separated")
    parser.add_argument("--rate", type=float, default=5.0, help="keystrokes per second each")
    parser.add_argument("--seconds", type=float, default=30.0, help="typing time per N")
    parser.add_argument("--endpoint", help="a vLLM already running (its /metrics must be "
                        "reachable); default: start one from .venv-vllm")
    parser.add_argument("--no-local", action="store_true", help="skip the in-process baseline")
    parser.add_argument("--plot", type=Path, help="PNG path (needs matplotlib)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from fimlsp_bench.soak import default_model

    model = args.model or default_model()
    import argparse as stdlib_argparse

    lib = Path(stdlib_argparse.__file__).parent
    documents = [lib / name for name in DOCUMENTS if (lib / name).is_file()]
    options = {"maxNewTokens": 32, "threads": 1, "engine": "openai"}
    rows: list[dict[str, Any]] = []
    python = vllm_python()
    if args.endpoint:
        server = VllmServer.attach(args.endpoint)
    elif python is None:
        print(f"fimlsp bench remote: vLLM is not installed ({INSTALL})", file=sys.stderr)
        return 1
    else:
        log = Path(tempfile.mkdtemp(prefix="fimlsp-vllm-")) / "vllm.log"
        server = VllmServer(Path(model), python, log=log)
    with server as vllm:
        options["endpoint"] = vllm.endpoint
        for n in [int(x) for x in args.editors.split(",")]:
            before = vllm.metrics()
            typists = asyncio.run(round_of(n, model, options, documents, args.rate, args.seconds))
            rows.append(summarize("vllm", n, [x for x, _ in typists],
                                  hit_rate(before, vllm.metrics()), args.seconds))
            print(json.dumps(rows[-1]), file=sys.stderr)
    if not args.no_local:
        local = {**options, "engine": "local"}
        local.pop("endpoint")
        typists = asyncio.run(round_of(1, model, local, documents, args.rate, args.seconds))
        rows.append(summarize("in-process", 1, [x for x, _ in typists], None, args.seconds))
        print(json.dumps(rows[-1]), file=sys.stderr)
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("| engine | editors | keystrokes | answers/s (all editors) | p50 ms | p95 ms | "
              "max ms | answered without the engine | prefix-cache hit rate |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            hit = "—" if r["prefix_cache_hit_rate"] is None else f"{r['prefix_cache_hit_rate']:.1%}"
            print(f"| {r['engine']} | {r['editors']} | {r['keystrokes']} | {r['answers_per_s']} | "
                  f"{r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | "
                  f"{r['without_engine']:.0%} | {hit} |")
    return 0
