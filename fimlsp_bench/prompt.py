"""`fimlsp bench prompt`: how long building a prompt takes, and what typing costs the cache.

1. Prompt building time for a 10k-line file at an 8192-token window, median over 100 seeded cursor
   positions (stateless: every edge cut anew, the worst case).
2. A typing run: 200 characters typed one by one in the middle of that file, with sticky edges as
   the server keeps them; per keystroke, the prompt tokens that are new (not a prefix of the
   previous prompt) — what the engine has to prefill. Reported per preset family and order.

Real tokenizers from shared/tokenizers (or --shared); no model weights needed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import statistics
import time
from pathlib import Path

from fimlsp.context import Cursor, split_at
from fimlsp.engine.decoding import common_prefix
from fimlsp.models import PRESETS, TEMPLATES, load_tokenizer
from fimlsp.prompt import Edges, build_prompt
from fimlsp.tools.tiny import shared_dir

TOKENIZER_FOLDER = {  # template → folder in shared/tokenizers
    "starcoder": "starcoder", "santacoder": "santacoder", "fim-neox": "fim-neox-1.3b",
    "refact": "refact-1_6b-fim", "starcoder2": "starcoder2", "qwen2.5-coder": "qwen2.5-coder",
    "deepseek-coder": "deepseek-coder",
}
TYPED = ("        if not isinstance(value, (int, float)):\n"
         "            raise TypeError(f'expected a number, got {type(value).__name__}')\n"
         "        total = sum(v * w for v, w in zip(values, weights)) / len(values)\n")[:200]


def ten_thousand_lines() -> str:
    """Real Python source from the standard library, concatenated to 10,000 lines."""
    import argparse as a
    import email.message as b
    import inspect as c
    import json.decoder as d
    import logging as e
    import pathlib as f
    import typing as g

    lines: list[str] = []
    while len(lines) < 10_000:
        for module in (a, b, c, d, e, f, g):
            lines += Path(inspect.getsourcefile(module) or "").read_text().splitlines()
    return "\n".join(lines[:10_000]) + "\n"


def build_times(text: str, folder: Path, runs: int, seed: int) -> dict[str, float]:
    tok = load_tokenizer(str(folder / "starcoder"))
    template = TEMPLATES["starcoder"]
    rng = random.Random(seed)
    line_count = text.count("\n")
    lines = text.split("\n")
    times = []
    for _ in range(runs):
        line = rng.randrange(line_count)
        cursor = split_at(text, line, rng.randint(0, len(lines[line])))
        started = time.perf_counter()
        build_prompt(tok, template, "spm", cursor, 8192, 64)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))],
            "max_ms": times[-1]}


def typing_run(text: str, folder: Path, template_name: str, order: str, window: int
               ) -> dict[str, float]:
    tok = load_tokenizer(str(folder / TOKENIZER_FOLDER[template_name]))
    template = TEMPLATES[template_name]
    start = split_at(text, text.count("\n") // 2, 0)
    edges = Edges()
    previous: list[int] | None = None
    new_tokens: list[int] = []
    times: list[float] = []
    for i in range(len(TYPED) + 1):
        cursor = Cursor(start.prefix + TYPED[:i], start.suffix, 0, 0)
        began = time.perf_counter()
        ids = build_prompt(tok, template, order, cursor, window, 64, edges).ids
        times.append((time.perf_counter() - began) * 1000)
        if previous is not None:
            new_tokens.append(len(ids) - common_prefix(previous, ids))
        previous = ids
    return {"mean_new_tokens": statistics.fmean(new_tokens), "max_new_tokens": max(new_tokens),
            "full_reprefills": sum(n > window // 4 for n in new_tokens),
            "median_build_ms": statistics.median(times), "prompt_tokens": len(previous or [])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench prompt", description=__doc__)
    parser.add_argument("--shared", type=Path, default=None, help="the shared/ folder")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shared = args.shared or shared_dir()
    if shared is None:
        raise SystemExit("shared/ with real tokenizers not found: pass --shared")
    folder = shared / "tokenizers"
    text = ten_thousand_lines()
    result: dict[str, object] = {"build_8192_10k_lines": build_times(text, folder, args.runs,
                                                                     args.seed)}
    rows = []
    seen = set()
    for preset in PRESETS.values():
        template = TEMPLATES[preset.template]
        for order in template.orders:
            if (preset.template, order) in seen:
                continue
            seen.add((preset.template, order))
            window = min(preset.window, 8192)
            rows.append({"template": preset.template, "order": order, "window": window,
                         **typing_run(text, folder, preset.template, order, window)})
    result["typing_200_chars"] = rows
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    build = result["build_8192_10k_lines"]
    print(f"prompt build, 10k-line file, 8192 window, {args.runs} cursors: median "
          f"{build['median_ms']:.2f} ms, p90 {build['p90_ms']:.2f} ms, "
          f"max {build['max_ms']:.2f} ms")
    print(f"\ntyping {len(TYPED)} characters one by one (sticky edges), new prompt tokens per "
          "keystroke:")
    print(f"{'template':<16}{'order':<7}{'window':>7}{'mean new':>10}{'max new':>9}"
          f"{'re-prefills':>12}{'build ms':>10}")
    for r in rows:
        print(f"{r['template']:<16}{r['order']:<7}{r['window']:>7}{r['mean_new_tokens']:>10.2f}"
              f"{r['max_new_tokens']:>9}{r['full_reprefills']:>12}{r['median_build_ms']:>10.2f}")
    return 0
