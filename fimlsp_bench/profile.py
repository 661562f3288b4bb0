"""`fimlsp bench profile`: where a keystroke's time goes, by kind of work.

The question it answers is the one `bench session` leaves open: when a keystroke costs more than
llama.cpp's, is it the matmul kernels (torch's dynamic int8 against ggml's Q8_0), attention,
the output head, or our own Python between the kernels? Those need different fixes, and only
the first is out of our hands.

One full-size geometry with random weights (built once, as `bench engine` does), loaded through
the real `LocalEngine` with the server's settings for a CPU (int8 unless told, the lean forward).
A --context-token prompt is read once, then --keystrokes keystrokes are profiled: the same prompt
plus one more token each time, --new-tokens tokens each (the session's reuse path: crop, one
token of prefill, decode). torch's profiler gives each operator's self time; the ops are put into
a few kinds (`KINDS`), and what the operators do not account for is the Python around them.
The same keystrokes are then timed without the profiler, next to the floor a decode step cannot
beat on this machine: the bytes of weights it reads ÷ the read bandwidth (`bench engine`'s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

KINDS: list[tuple[str, re.Pattern[str]]] = [  # the first that matches an operator's name wins
    ("int8 linears (fbgemm)", re.compile(r"quantized::|fbgemm|_weight_int8pack|_int_mm")),
    # The lean forward's decode attention is two batched matmuls around a softmax.
    ("attention", re.compile(r"scaled_dot_product|attention|softmax|aten::bmm$")),
    ("float matmuls (fp32 linears and head)", re.compile(r"aten::(addmm|mm|matmul|linear)$")),
    ("norms", re.compile(r"layer_norm|rms_norm")),
    ("KV cache writes and copies", re.compile(r"aten::(copy_|index_copy_|index_put_|cat|"
                                              r"slice_scatter|narrow_copy)")),
    ("activations and elementwise", re.compile(r"aten::(gelu|silu|add|mul|sub|div|tanh|pow|"
                                               r"neg|rsqrt|where|masked_fill)")),
    ("argmax and sampling", re.compile(r"aten::(argmax|max|topk|sort|item|_local_scalar)")),
]
OTHER = "other operators (views, allocations, embedding…)"
PYTHON = "outside any operator (Python, the decode loop)"


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return OTHER


def breakdown(events: list[tuple[str, float, int]], wall_ms: float) -> dict[str, Any]:
    """`events`: (operator, self ms, calls) over the profiled keystrokes. Per kind: ms and
    share of `wall_ms`; the remainder is time outside any operator."""
    kinds: dict[str, dict[str, float]] = {}
    for name, ms, calls in events:
        cell = kinds.setdefault(kind_of(name), {"ms": 0.0, "calls": 0})
        cell["ms"] += ms
        cell["calls"] += calls
    inside = sum(cell["ms"] for cell in kinds.values())
    kinds[PYTHON] = {"ms": max(wall_ms - inside, 0.0), "calls": 0}
    for cell in kinds.values():
        cell["share"] = cell["ms"] / wall_ms if wall_ms else 0.0
    return dict(sorted(kinds.items(), key=lambda item: -item[1]["ms"]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fimlsp bench profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--geometry", default="tiny_starcoder_py",
                        help="a folder of shared/model-configs, or a model directory")
    parser.add_argument("--tiny", action="store_true", help="2 layers × 64 wide (for tests)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the random model is built (default: bench engine's)")
    parser.add_argument("--quantization", default="int8", choices=("int8", "none"))
    parser.add_argument("--context", type=int, default=1790, help="prompt tokens (a 2048 "
                        "window's prompt with room for the answer)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--keystrokes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--top", type=int, default=8, help="operators listed by self time")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from fimlsp.config import Settings
    from fimlsp.engine.local import LocalEngine
    from fimlsp.models import resolve_model
    from fimlsp_bench.engine import full_size_model, measure_bandwidth, weight_bytes

    settings = Settings(device="cpu", quantization=args.quantization, threads=args.threads,
                        speculate=0)
    folder = full_size_model(args.geometry, args.tiny, args.cache_dir)
    engine = LocalEngine.load(resolve_model(folder), settings)
    vocab = engine.model.config.vocab_size
    rng = random.Random(0)
    prompt = [rng.randrange(1000, vocab) for _ in range(args.context)]
    engine.generate("k", prompt, max_new_tokens=args.new_tokens, stop_ids=set())  # read once
    keystrokes = [[*prompt, 1000 + i] for i in range(args.keystrokes + 1)]
    engine.generate("k", keystrokes[0], max_new_tokens=args.new_tokens, stop_ids=set())
    generated = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for ids in keystrokes[1:]:
            result = engine.generate("k", ids, max_new_tokens=args.new_tokens, stop_ids=set())
            generated += len(result.ids)
        wall_ms = (time.perf_counter() - started) * 1000
    events = [(e.key, e.self_cpu_time_total / 1000, e.count) for e in prof.key_averages()]
    kinds = breakdown(events, wall_ms)
    per = args.keystrokes
    # Unprofiled, for the floor: a decode step has to read every weight once.
    started = time.perf_counter()
    steps = sum(len(engine.generate("k", ids, max_new_tokens=args.new_tokens, stop_ids=set()).ids)
                for ids in keystrokes[1:])
    plain_ms = (time.perf_counter() - started) * 1000
    _, decode_bytes, _ = weight_bytes(engine.model)
    bandwidth = measure_bandwidth(torch.device("cpu"), 1024)
    return {
        "geometry": args.geometry, "quantization": args.quantization, "threads": args.threads,
        "lean": engine.lean is not None, "context": args.context,
        "keystrokes": per, "new_tokens": generated / per,
        "keystroke_ms": wall_ms / per,
        "keystroke_ms_unprofiled": plain_ms / per,
        "ms_per_token_unprofiled": plain_ms / steps,
        "decode_weight_mb": decode_bytes / 1e6, "bandwidth_gbs": bandwidth,
        "floor_ms_per_token": decode_bytes / (bandwidth * 1e9) * 1000,
        "kinds": {k: {"ms_per_keystroke": v["ms"] / per, "share": v["share"],
                      "calls_per_keystroke": v["calls"] / per} for k, v in kinds.items()},
        "top": [{"op": name, "ms_per_keystroke": ms / per, "calls_per_keystroke": calls / per}
                for name, ms, calls in sorted(events, key=lambda e: -e[1])[: args.top]],
        "torch": torch.__version__,
        "note": "profiler overhead is included in the wall time; compare shares, not totals",
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['geometry']}, {report['quantization']}, {report['threads']} threads, "
             f"{report['context']}-token prompt, {report['new_tokens']:.0f} tokens per keystroke: "
             f"{report['keystroke_ms']:.0f} ms per keystroke profiled, "
             f"{report['keystroke_ms_unprofiled']:.0f} ms not; "
             f"{report['ms_per_token_unprofiled']:.1f} ms per token against a floor of "
             f"{report['floor_ms_per_token']:.1f} ms (reading {report['decode_weight_mb']:.0f} MB "
             f"of weights at {report['bandwidth_gbs']:.1f} GB/s)", "",
             "| kind of work | ms per keystroke | share | calls per keystroke |",
             "|---|---|---|---|"]
    for kind, cell in report["kinds"].items():
        lines.append(f"| {kind} | {cell['ms_per_keystroke']:.1f} | {100 * cell['share']:.0f} % "
                     f"| {cell['calls_per_keystroke']:.0f} |")
    lines += ["", "| operator | self ms per keystroke | calls |", "|---|---|---|"]
    for op in report["top"]:
        lines.append(f"| `{op['op']}` | {op['ms_per_keystroke']:.1f} | "
                     f"{op['calls_per_keystroke']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    if args.keystrokes < 1 or args.new_tokens < 1:
        print("fimlsp bench profile: --keystrokes and --new-tokens must be at least 1",
              file=sys.stderr)
        return 2
    report = run(args)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0
