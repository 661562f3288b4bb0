"""`fimlsp bench context`: the workspace index on real repositories nobody here wrote.

For each repository (by default a few pure-Python packages installed next to fimlsp; any folder
with `--repo`, e.g. a TypeScript package unpacked from npm):

1. Index: wall and CPU seconds, files, chunks, definitions, and the memory it holds (tracemalloc,
   in a second build), scaled per 1,000 files.
2. Definition recall: cursors right after `name(` where `name` is a function or class defined
   at the top level of exactly one *other* file of the repository (a symbol from a file that is
   not open); recall is the share of prompts (real tokenizer, the family's repository format,
   packed exactly to the budget) that hold the defining line. Also the tokens spent on
   repository context, and what choosing costs per request (the delay added to a completion).
3. The cache: the rest of the cursor's line typed character by character, prompts built as the
   server builds them (sticky edges, the snippets chosen per keystroke): tokens re-evaluated per
   keystroke with the index on and off.
4. Delay while indexing: how late a thread that slept 2 ms wakes up, and the time to build a
   prompt on the main thread, alone and while the index builds on its thread (the GIL is
   shared): p50 / p95 / max. `--timing-only` measures only this and the index time.

Needs shared/tokenizers (or --shared). No model weights.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import random
import re
import resource
import statistics
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fimlsp import heap
from fimlsp.context import Cursor
from fimlsp.engine.decoding import common_prefix
from fimlsp.models import TEMPLATES, load_tokenizer
from fimlsp.prompt import Edges, build_prompt
from fimlsp.repo.choose import RepoContext
from fimlsp.repo.index import RepoIndex
from fimlsp.tools.tiny import shared_dir

DEFAULT_PACKAGES = ("huggingface_hub", "_pytest", "hypothesis", "rich", "networkx")
TIMING_PACKAGE = "transformers"  # the largest at hand: index time and memory per 1,000 files
_CALL = re.compile(r"\b([A-Za-z_]\w*)\(")


@dataclass
class Site:
    path: Path
    offset: int  # just after `name(`
    name: str
    defining_line: str


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def build(root: Path, max_files: int,
          settle: bool = True) -> tuple[RepoIndex, float, float]:
    """The index of `root`, built on this thread; (index, wall s, CPU s of this thread and the
    parsing process together: the cost, whatever the machine's load)."""
    index = RepoIndex(max_files=max_files, max_bytes=1 << 40)  # the files cap only
    index.roots[root] = root.name
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter(), time.thread_time()
    with heap.growing() if settle else contextlib.nullcontext():
        found = index.candidates([root])
        for start in range(0, len(found), 32):  # as the server does (repo/service.py)
            index.index_files(found[start:start + 32])
        index.release_worker(wait=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return index, time.perf_counter() - wall, time.thread_time() - cpu + worker


def held_memory(root: Path, max_files: int) -> int:
    """Bytes the index holds once built (tracemalloc: what stays allocated)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index, _w, _c = build(root, max_files)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del index
    return after - before


def sites(index: RepoIndex, rng: random.Random, count: int, per_file: int) -> list[Site]:
    """Cursors after a call of a top-level symbol defined in exactly one other file."""
    unique: dict[str, tuple[Path, str]] = {}
    for name in list(index._definitions):
        found = [(e, d) for e, d in index.definitions(name) if not d.container
                 and d.kind in ("function", "class")]
        if len(found) == 1 and len(index.definitions(name)) == 1 and len(name) >= 4:
            entry, definition = found[0]
            lines = definition.text.splitlines()
            if lines:
                unique[name] = (entry.path, lines[0].strip())
    out: list[Site] = []
    paths = sorted(index.files)
    rng.shuffle(paths)
    for path in paths:
        if path.suffix not in (".py", ".ts", ".tsx", ".js"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        own = {d.name for d in index.files[path].definitions}
        found = []
        for match in _CALL.finditer(text):
            name = match.group(1)
            if name not in unique or name in own or unique[name][0] == path:
                continue
            line_start = text.rfind("\n", 0, match.start()) + 1
            line = text[line_start:match.end()].lstrip()
            if line.startswith(("#", "from ", "import ", "def ", "class ", "@", "//", "*", "/*",
                                 "export ", "function ", "async function ")) or \
                    line.count('"') % 2 or line.count("'") % 2 or line.count("`") % 2:
                continue
            before = text[:match.start()]
            if before.count('"""') % 2 or before.count("'''") % 2 or \
                    before.rfind("/*") > before.rfind("*/"):
                continue  # in a docstring or a block comment
            found.append(Site(path, match.end(), name, unique[name][1]))
        rng.shuffle(found)
        out += found[:per_file]
        if len(out) >= count:
            break
    return out[:count]


def recall(index: RepoIndex, picked: list[Site], tok: Any, template_name: str, window: int,
           share: float) -> dict[str, Any]:
    template = TEMPLATES[template_name]
    order = "spm" if "spm" in template.orders else template.orders[0]  # as the presets
    hits = chosen_hits = 0
    tokens: list[int] = []
    choose_ms: list[float] = []
    added_ms: list[float] = []
    for site in picked:
        text = site.path.read_text(encoding="utf-8", errors="replace")
        prefix, suffix = text[:site.offset], text[site.offset:]
        cursor = Cursor(prefix, suffix, prefix.count("\n"), 0)
        context = RepoContext()  # a fresh editor: nothing chosen before
        key = site.path.as_uri()
        rel = site.path.relative_to(next(iter(index.roots))).as_posix()
        began = time.perf_counter()
        snippets = context.choose(index, key, cursor, int(window * share) * 3)
        chose = time.perf_counter()
        prompt = build_prompt(tok, template, order, cursor, window, 64, None, snippets, rel,
                              share, next(iter(index.roots.values())))
        built = time.perf_counter()
        build_prompt(tok, template, order, cursor, window, 64, None, [], rel, share)
        plain = time.perf_counter()
        choose_ms.append((chose - began) * 1000)
        added_ms.append((chose - began + (built - chose) - (plain - built)) * 1000)
        chosen_hits += any(site.defining_line in s.text for s in snippets)
        hits += site.defining_line in prompt.text
        tokens.append(prompt.neighbour_tokens)
    n = max(len(picked), 1)
    return {"sites": len(picked), "recall": hits / n, "chosen_recall": chosen_hits / n,
            "repo_tokens_mean": statistics.fmean(tokens) if tokens else 0,
            "choose_ms_median": statistics.median(choose_ms) if choose_ms else 0,
            "choose_ms_max": max(choose_ms, default=0),
            "added_ms_median": statistics.median(added_ms) if added_ms else 0}


def typing(index: RepoIndex | None, picked: list[Site], tok: Any, template_name: str,
           window: int, share: float, chars: int = 24) -> dict[str, float]:
    """Types the rest of each site's line; tokens of each prompt not shared with the previous."""
    template = TEMPLATES[template_name]
    order = "spm" if "spm" in template.orders else template.orders[0]  # as the presets
    new: list[int] = []
    choose_ms: list[float] = []
    for site in picked:
        text = site.path.read_text(encoding="utf-8", errors="replace")
        end = text.find("\n", site.offset)
        typed = text[site.offset:end if end >= 0 else len(text)][:chars]
        start = site.offset
        # As in the editor: the site's line typed from the cursor on, the rest of the file after.
        prefix, suffix = text[:start], text[start + len(typed):]
        edges, context, previous = Edges(), RepoContext(), None
        key = site.path.as_uri()
        for i in range(len(typed) + 1):
            cursor = Cursor(prefix + typed[:i], suffix, prefix.count("\n"), 0)
            began = time.perf_counter()
            snippets = context.choose(index, key, cursor, int(window * share) * 3) \
                if index is not None else []
            if index is not None and i:
                choose_ms.append((time.perf_counter() - began) * 1000)
            ids = build_prompt(tok, template, order, cursor, window, 64, edges, snippets,
                               site.path.name, share if snippets else 0.0,
                               next(iter(index.roots.values())) if index else None).ids
            if previous is not None:
                new.append(len(ids) - common_prefix(previous, ids))
            previous = ids
    return {"keystrokes": len(new), "mean_new_tokens": statistics.fmean(new) if new else 0,
            "full_reprefills": sum(n > window // 4 for n in new),
            "choose_ms_median": statistics.median(choose_ms) if choose_ms else 0,
            "choose_ms_p90": sorted(choose_ms)[int(0.9 * len(choose_ms))] if choose_ms else 0}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    return {"p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
            "max": round(ordered[-1], 3)}


def delay_while_indexing(root: Path, tok: Any, template_name: str, window: int,
                         max_files: int, settle: bool = True) -> dict[str, Any]:
    """What indexing costs a completion on this process's other threads (the GIL is shared
    with the index thread, which merges what the parsing process sends), alone and while an
    index of `root` builds, at an editor's pace:

    - *wake*: how much later than asked a thread that slept 2 ms runs again. A completion gives
      the GIL up and takes it back many times (every torch call, every tokenizer call), and
      each time it may wait for the index thread like this.
    - *build*: a stateless prompt build (4096 window, a 20 kB file): tokenizing and packing,
      the Python part of a completion.
    Reported as p50 / p95 / max in ms, and the extra while indexing (during minus alone)."""
    template = TEMPLATES[template_name]
    sample = next(p for p in sorted(root.rglob("*.py")) if p.stat().st_size > 20_000)
    text = sample.read_text(encoding="utf-8", errors="replace")
    cursor = Cursor(text[:len(text) // 2], text[len(text) // 2:], 0, 0)

    def probe(stop: threading.Event | None, count: int) -> tuple[list[float], list[float]]:
        wake, build_ms = [], []
        for _ in range(count):
            if stop is not None and stop.is_set():
                break
            began = time.perf_counter()
            time.sleep(0.002)
            wake.append((time.perf_counter() - began - 0.002) * 1000)
            began = time.perf_counter()
            build_prompt(tok, template, "psm", cursor, window, 64)
            build_ms.append((time.perf_counter() - began) * 1000)
            time.sleep(0.01)  # an editor's pace, not a busy loop
        return wake, build_ms

    if settle:
        heap.settle()  # as the server does once its model is loaded (fimlsp/heap.py)
    wake_alone, build_alone = probe(None, 80)
    done = threading.Event()
    timing: dict[str, float] = {}
    # The index outlives the probe, as the server's does: freed on the index thread when
    # `index` returned, its ~400 MB of records took the GIL for 200-300 ms right after `done`
    # was set, and a probe still asleep then counted it as indexing's delay (2,937 files).
    built: list[Any] = []

    def index() -> None:
        built.append(build(root, max_files, settle))
        timing["wall"], timing["cpu"] = built[0][1], built[0][2]
        timing["files"] = len(built[0][0].files)
        done.set()

    worker = threading.Thread(target=index)
    worker.start()
    wake_during, build_during = probe(done, 100_000)
    worker.join()
    built.clear()  # freed here, after the probe
    out: dict[str, Any] = {"index_s": timing["wall"], "index_cpu_s": timing["cpu"],
                           "files": timing["files"], "samples_during": len(build_during)}
    for name, alone, during in (("wake", wake_alone, wake_during),
                                ("build", build_alone, build_during)):
        a, d = _percentiles(alone), _percentiles(during)
        out[name] = {"alone": a, "indexing": d,
                     "extra": {k: round(d[k] - a[k], 3) for k in ("p50", "p95")}}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench context", description=__doc__)
    parser.add_argument("--repo", type=Path, action="append", default=None,
                        help="a repository folder (repeatable); default: installed packages "
                             + ", ".join(DEFAULT_PACKAGES))
    parser.add_argument("--timing-repo", type=Path, default=None,
                        help=f"the folder for index time and memory (default: {TIMING_PACKAGE})")
    parser.add_argument("--max-files", type=int, default=3000)
    parser.add_argument("--sites", type=int, default=60, help="cursors per repository")
    parser.add_argument("--typing-sites", type=int, default=8)
    parser.add_argument("--template", default="starcoder2")
    parser.add_argument("--tokenizer", default=None, help="folder in shared/tokenizers")
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--share", type=float, default=0.15, help="repoShare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared", type=Path, default=None)
    parser.add_argument("--timing-only", action="store_true",
                        help="only the index time, memory and delay (on --timing-repo)")
    parser.add_argument("--no-settle", action="store_true",
                        help="without the server's heap.settle() and heap.growing()")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shared = args.shared or shared_dir()
    if shared is None:
        raise SystemExit("shared/ with real tokenizers not found: pass --shared")
    tok = load_tokenizer(str(shared / "tokenizers" / (args.tokenizer or args.template)))
    repos = [r.resolve() for r in args.repo] if args.repo else \
        [p for p in map(package_dir, DEFAULT_PACKAGES) if p is not None]
    from fimlsp_bench.quality import machine

    result: dict[str, Any] = {"machine": machine(), "template": args.template,
                              "window": args.window, "share": args.share, "repos": []}
    rng = random.Random(args.seed)
    for root in [] if args.timing_only else repos:
        index, wall, cpu = build(root, args.max_files)
        picked = sites(index, rng, args.sites, 3)
        name = root.parent.name if root.name == "package" else root.name  # npm's tarballs
        row = {"repo": name, "files": len(index.files), "chunks": len(index._chunks),
               "definitions": sum(len(e.definitions) for e in index.files.values()),
               "index_s": wall, "index_cpu_s": cpu,
               **recall(index, picked, tok, args.template, args.window, args.share)}
        few = picked[:args.typing_sites]
        row["typing_on"] = typing(index, few, tok, args.template, args.window, args.share)
        row["typing_off"] = typing(None, few, tok, args.template, args.window, args.share)
        result["repos"].append(row)
        print(json.dumps(row), flush=True) if not args.json else None
    timing_root = args.timing_repo or package_dir(TIMING_PACKAGE)
    if timing_root is not None:
        index, wall, cpu = build(timing_root, args.max_files)
        files = len(index.files)
        memory = 0 if args.timing_only else held_memory(timing_root, args.max_files)
        result["timing"] = {
            "repo": timing_root.name, "files": files, "bytes": index._bytes,
            "index_s": wall, "index_cpu_s": cpu,
            "s_per_1000_files": wall / files * 1000 if files else None,
            "cpu_s_per_1000_files": cpu / files * 1000 if files else None,
            "memory_mb": memory / 2**20 if memory else None,
            "mb_per_1000_files": memory / 2**20 / files * 1000 if files and memory else None,
            "memory_estimate_mb": index.memory_estimate() / 2**20,
            "delay": delay_while_indexing(timing_root, tok, args.template, args.window,
                                          args.max_files, settle=not args.no_settle)}
    result["machine"]["load_after"] = machine().get("load")
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


def _table(result: dict[str, Any]) -> str:
    out = [f"template {result['template']}, window {result['window']}, "
           f"repoShare {result['share']}; machine {result['machine']}", "",
           "| repo | files | index s | sites | recall | chosen | repo tokens | first request: "
           "choose ms (median/max), added ms | per keystroke: choose ms (median/p90) | new "
           "tokens/keystroke on / off | re-prefills on / off |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["repos"]:
        on, off = r["typing_on"], r["typing_off"]
        out.append(f"| {r['repo']} | {r['files']} | {r['index_s']:.1f} | {r['sites']} | "
                   f"{r['recall']:.0%} | {r['chosen_recall']:.0%} | "
                   f"{r['repo_tokens_mean']:.0f} | {r['choose_ms_median']:.2f}/"
                   f"{r['choose_ms_max']:.1f}, {r['added_ms_median']:.2f} | "
                   f"{on['choose_ms_median']:.2f}/{on['choose_ms_p90']:.2f} | "
                   f"{on['mean_new_tokens']:.1f} / {off['mean_new_tokens']:.1f} | "
                   f"{on['full_reprefills']} / {off['full_reprefills']} |")
    timing = result.get("timing")
    if timing:
        d = timing["delay"]
        out += ["", f"index of {timing['repo']}: {timing['files']} files, "
                f"{timing['bytes'] / 2**20:.1f} MB of source in {timing['index_s']:.1f} s "
                f"({timing['index_cpu_s']:.1f} s CPU, the parsing process's included): "
                f"{timing['s_per_1000_files']:.1f} s per 1,000 files "
                f"({timing['cpu_s_per_1000_files']:.1f} s CPU); memory held "
                + (f"{timing['memory_mb']:.1f} MB ({timing['mb_per_1000_files']:.1f} MB per "
                   "1,000 files; " if timing["memory_mb"] else "(not measured; ")
                + f"estimate {timing['memory_estimate_mb']:.1f} MB)",
                f"while indexing ({d['files']} files in {d['index_s']:.1f} s, "
                f"{d['index_cpu_s']:.1f} s CPU; {d['samples_during']} samples), p50 / p95 / "
                "max ms, alone → indexing (extra p50 / p95):"]
        for name, what in (("wake", "a thread's wake-up after a 2 ms sleep, late by"),
                           ("build", "a prompt build on the main thread")):
            a, i, e = d[name]["alone"], d[name]["indexing"], d[name]["extra"]
            out.append(f"- {what}: {a['p50']:.2f} / {a['p95']:.2f} / {a['max']:.1f} → "
                       f"{i['p50']:.2f} / {i['p95']:.2f} / {i['max']:.1f} "
                       f"(extra {e['p50']:+.2f} / {e['p95']:+.2f})")
    return "\n".join(out)
