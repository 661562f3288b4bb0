"""`fimlsp bench threads`: how torch's OpenMP threads should wait, on cores the model shares.

fimlsp sets `OMP_WAIT_POLICY=PASSIVE` before torch loads (`fimlsp/__init__.py`): threads waiting
for work sleep instead of spinning. This measures that choice against libgomp's default (spin
300,000 times, then sleep: `GOMP_SPINCOUNT=300000`, which is what torch gets when nothing is set),
at 1 and 2 threads, on a quiet machine and with other programs busy — `--busy N` processes each
spinning on a core, the stand-in for an editor, its language servers or a build.

Each configuration runs in a subprocess of its own (the policy is read when torch loads), the
configurations take turns round by round, and each reports the median keystroke: a
`--context`-token prompt plus one token on a warm session (what typing a character costs an
SPM prompt), then `--new-tokens` greedy tokens, through the real `LocalEngine` (int8, the CPU
default) on a random-weight model of the real geometry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

POLICIES = {"spin (torch's default)": {"GOMP_SPINCOUNT": "300000"},
            "passive (fimlsp's)": {"OMP_WAIT_POLICY": "PASSIVE"}}

_CHILD = r"""
import json, statistics, sys, time
from fimlsp.config import Settings
from fimlsp.engine.local import LocalEngine
from fimlsp.models import resolve_model
model, threads, context, new, repeats = sys.argv[1], *map(int, sys.argv[2:6])
engine = LocalEngine.load(resolve_model(model), Settings(device="cpu", quantization="int8",
                                                         threads=threads, speculate=0))
prompt = [1000 + (7 * i) % 30000 for i in range(context)]
engine.generate("k", prompt, max_new_tokens=2, stop_ids=set())
times = []
for r in range(repeats):
    started = time.perf_counter()
    engine.generate("k", prompt + [5 + r], max_new_tokens=new, stop_ids=set())
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps({"keystroke_ms": statistics.median(times)}))
"""


def busy(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` processes spinning on a core each: other programs that want the CPU."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench threads",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny_starcoder_py",
                        help="a config folder of shared/model-configs (random weights) or a "
                        "model directory")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="keystrokes per configuration")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--busy", default="0,1", help="comma-separated counts of busy cores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from fimlsp_bench.engine import full_size_model

    model = full_size_model(args.model)
    threads = [int(t) for t in args.threads.split(",")]
    loads = [int(b) for b in args.busy.split(",")]
    results: dict[tuple[str, int, int], list[float]] = {}
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    for _ in range(args.rounds):
        for load in loads:
            spinning = busy(load)
            try:
                for count in threads:
                    for name, env in POLICIES.items():
                        done = subprocess.run(
                            [sys.executable, "-c", _CHILD, model, str(count), str(args.context),
                             str(args.new_tokens), str(args.repeats)],
                            env={**base, **env}, capture_output=True, text=True, check=True)
                        ms = json.loads(done.stdout.strip().splitlines()[-1])["keystroke_ms"]
                        results.setdefault((name, count, load), []).append(ms)
                        print(f"{name}, {count} threads, {load} busy: {ms:.0f} ms",
                              file=sys.stderr, flush=True)
            finally:
                for process in spinning:
                    process.kill()
                    process.wait()
    rows: list[dict[str, Any]] = [
        {"policy": name, "threads": count, "busy_cores": load,
         "keystroke_ms": round(statistics.median(values), 1)}
        for (name, count, load), values in results.items()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    spin, passive = POLICIES
    print(f"{Path(model).name}, int8, {args.context}-token prompt + 1, {args.new_tokens} new "
          f"tokens; median keystroke ms over {args.rounds} rounds × {args.repeats}\n")
    print("| busy cores | threads | spin (torch's default) | passive (fimlsp's) | passive ÷ spin |")
    print("|---|---|---|---|---|")
    for load in loads:
        for count in threads:
            a = statistics.median(results[(spin, count, load)])
            b = statistics.median(results[(passive, count, load)])
            print(f"| {load} | {count} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    return 0
