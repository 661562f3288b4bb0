"""`fimlsp bench agreement`: does int8 suggest what fp32 suggests? (The CPU default, issue 19.)

`quantization: auto` picks dynamic int8 on the CPU because fp32 is too slow per keystroke. That
is only right if the suggestions stay the same: this benchmark deletes spans of held-out code
(the spans `fimlsp bench quality` retypes), asks the completer for the suggestion at each span's
start with fp32 weights and with int8 weights, greedy, and counts how often the cleaned
suggestions are identical, how often their first lines are, and how many tokens the raw greedy
generations share before they part. In process (no server): the same `Completer` the server
uses, so prompts, policy and windows are the shipped ones.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from fimlsp import postprocess, surroundings
from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.engine.decoding import common_prefix
from fimlsp.scheduler import CancelToken
from fimlsp_bench.quality import held_out_files, machine, sample


def _completer(model: str, quantization: str, window: int, threads: int) -> Completer:
    settings = Settings(model=model, quantization=quantization, device="cpu",
                        context_window=window, threads=threads or None)
    completer = Completer(settings)
    completer.load()
    return completer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench agreement",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="default: the trained fixture (shared/models)")
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--per-file", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="0: the server's choice")
    args = parser.parse_args(argv)
    if args.model is None:
        from fimlsp.tools.tiny import trained_model_dir

        trained = trained_model_dir()
        if trained is None:
            raise SystemExit("fimlsp bench agreement: no --model and no trained fixture")
        args.model = str(trained)
    picked = sample(held_out_files(args.stdlib), args.files, args.per_file, args.seed)
    engines = {name: _completer(args.model, name, args.window, args.threads)
               for name in ("none", "int8")}
    rows: list[dict[str, Any]] = []
    for path, spans in picked.items():
        text = path.read_text(encoding="utf-8")
        for span in spans:
            document = text[:span.start] + text[span.end:]
            line = document.count("\n", 0, span.start)
            character = span.start - (document.rfind("\n", 0, span.start) + 1)
            answers: dict[str, Any] = {}
            for name, completer in engines.items():
                cursor = completer.cursor_for(document, line, character)
                prompt = completer.prompt_for(cursor)
                started = time.perf_counter()
                # A fresh key per span and engine: no KV reuse between the two, nor from the
                # last span (int8 logits depend on how the prompt was chunked).
                key = f"{name}:{path}:{span.start}"
                mode = surroundings.mode_for(cursor, completer.settings.multiline, str(path))
                generator = completer.generator
                generation = generator.generate(key, cursor, prompt.ids, mode, CancelToken())
                completer.engine.drop_session(key)  # type: ignore[union-attr]
                clean = postprocess.clean(generator.decode(generation.ids), cursor, mode,
                                          str(path))
                answers[name] = (generation.ids, clean, time.perf_counter() - started)
            (ids32, text32, _), (ids8, text8, _) = answers["none"], answers["int8"]
            rows.append({"kind": span.kind, "same": text32 == text8,
                         "first_line": text32.split("\n")[0] == text8.split("\n")[0],
                         "shared_tokens": common_prefix(ids32, ids8),
                         "tokens": max(len(ids32), len(ids8))})
    n = len(rows)
    same = sum(r["same"] for r in rows)
    first = sum(r["first_line"] for r in rows)
    shared = sum(r["shared_tokens"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    info = machine()
    print(f"model {args.model}; {n} cursors in {len(picked)} held-out files (seed {args.seed}); "
          f"window {args.window}; {info.get('cpu', '?')}, load {' '.join(info.get('load', []))}")
    print("| | cursors | same suggestion | same first line | greedy tokens shared before "
          "they part |")
    print("|---|---|---|---|---|")
    for kind in ("all", *sorted({r["kind"] for r in rows})):
        part = [r for r in rows if kind in ("all", r["kind"])]
        k = len(part)
        print(f"| {kind} | {k} | {100 * sum(r['same'] for r in part) / k:.1f} % | "
              f"{100 * sum(r['first_line'] for r in part) / k:.1f} % | "
              f"{sum(r['shared_tokens'] for r in part)} / {sum(r['tokens'] for r in part)} |")
    print(f"\nint8 = fp32: {same}/{n} suggestions, {first}/{n} first lines, "
          f"{shared}/{tokens} greedy tokens", file=sys.stderr)
    return 0
