"""`fimlsp bench gpu`: the GPU measurements in one command, for the day a GPU machine is lent.

One prepared run that writes one table: `fimlsp bench engine --device cuda` (each configuration
in a subprocess of its own, random weights from the real configs) at the 164M and 1B geometries
in bf16, bitsandbytes 8-bit and 4-bit, and the 15B geometry (StarCoder) in 4-bit, which is how
the preset runs it on CUDA. On a machine without CUDA it says so and exits 0, so that scripts
and CI can call it anywhere.

Not here yet, and said so in the table's notes: CUDA graphs / `torch.compile` of the decode step
and the typing-session replay on the GPU (`fimlsp bench session` is CPU-only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import torch

# (config folder, quantizations): what a user of each preset would run on CUDA.
SUITE: tuple[tuple[str, str], ...] = (
    ("tiny_starcoder_py", "none,8bit,4bit"),
    ("starcoderbase-1b", "none,8bit,4bit"),
    ("starcoder", "4bit"),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated config folders of SUITE")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("fimlsp bench gpu: no CUDA device on this machine; nothing measured")
        return 0
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    rows: list[dict[str, Any]] = []
    for name, quantizations in SUITE:
        if wanted and name not in wanted:
            continue
        command = [sys.executable, "-m", "fimlsp", "bench", "engine", "--device", "cuda",
                   "--models", name, "--quantization", quantizations, "--context",
                   str(args.context), "--new-tokens", str(args.new_tokens), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            rows.append({"model": name, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        rows += json.loads(done.stdout).get("results", [])
    print(f"device: {torch.cuda.get_device_name(0)}; context {args.context}, "
          f"{args.new_tokens} new tokens\n")
    print("| model | quantization | prefill tok/s | decode ms/token | keystroke ms (reuse) | "
          "peak GPU MB |\n|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | failed: {' '.join(row['error'])} | | | | |")
            continue
        print(f"| {row['model']} | {row['quantization']} | "
              f"{row['prefill_tokens_per_s_best']:.0f} | {row['decode_ms_per_token_median']:.1f} "
              f"| {row['keystroke']['reuse_ms']:.0f} | {row.get('peak_gpu_mb', 0):.0f} |")
    print("\nnot measured by this command yet: CUDA graphs / torch.compile of the decode step, "
          "and the typing-session replay on the GPU")
    return 0
