"""`fimlsp bench engine`: what the local engine costs per request, fp32 against int8.

Full-size architectures with random weights (the compute cost does not depend on the values),
built once into --cache-dir from the real configs in shared/model-configs. Everything runs through
the real `LocalEngine` (sessions, crop, chunked prefill, our decode loop); nothing is a separate
loop. The prompt is tokenizer-free: seeded random ids in [1000, vocab) — no special or stop ids,
and stop ids are disabled, so every request generates exactly --new-tokens tokens.

Per model and quantization:

- weights: bytes in memory, and the bytes one decode step has to read (every linear layer and
  norm, the tied output head once; embedding tables only by row, so they are left out);
- prefill tokens/s: a --context-token prompt on a cold session (empty cache; the process is
  warmed up first so one-time kernel setup is not counted), and the better of that and the
  keystroke-without-reuse request, which is a second full prefill (machines are shared);
- decode ms/token at that context: the mean over the steps of the cold request (the first token
  comes from the prefill's logits, so --new-tokens − 1 forward steps) and the median over every
  step of every request here (robust to bursts of other work), next to the memory-bandwidth
  floor: decode bytes ÷ the bandwidth measured once (a sum over a large tensor, best of 5);
- the keystroke: the same prompt plus one token at its end (what typing one character does to an
  SPM prompt), --new-tokens new tokens, total wall time with reuse (same session: crop, prefill
  one token) against without (a fresh session: full prefill), and the ratio;
- peak resident memory while loading and running that configuration: each runs in a subprocess
  of its own (unless --in-process, where VmHWM is reset between configurations and what an
  earlier one left behind counts too); at the end, the anonymous part of it (the weights are
  memory-mapped from the file, and those pages count as resident too); on CUDA also the peak
  allocated GPU memory.

Timings are wall clock around `LocalEngine.generate` and at the first token (its callback), so
they hold on CUDA too, where a forward returns before the GPU has finished.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import random
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fimlsp.config import Settings
from fimlsp.engine import choices
from fimlsp.engine.local import LocalEngine
from fimlsp.models import resolve_model
from fimlsp.tools.tiny import build_tiny_model

TINY = {"layers": 2, "width": 64, "heads": 4}  # --tiny: the test's geometry, seconds not minutes
FIRST_ID = 1000  # random prompt ids start here: StarCoder-family special tokens are all below


# -- the machine -------------------------------------------------------------------------------


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "ram_gb": _ram_gb(), "threads": threads,
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": _version("transformers"), "device": str(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "-"


def _ram_gb() -> float | None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def measure_bandwidth(device: torch.device, megabytes: int, runs: int = 5) -> float:
    """Read bandwidth in GB/s: the best of `runs` sums over a tensor of `megabytes` MB."""
    data = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(runs + 1):  # the first run only warms up
        _sync(device)
        started = time.perf_counter()
        data.sum().item()
        _sync(device)
        best = min(best, time.perf_counter() - started)
    nbytes = data.numel() * data.element_size()
    del data
    return nbytes / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- memory ------------------------------------------------------------------------------------


def reset_peak_rss(device: torch.device) -> None:
    """VmHWM can be reset on Linux (clear_refs 5); ru_maxrss cannot, so it is the fallback."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rss_mb(field: str = "VmHWM") -> float:
    """A memory line of /proc/self/status in MiB: VmHWM (peak resident), VmRSS, RssAnon,
    RssFile. Without /proc, the peak from getrusage whatever the field."""
    with contextlib.suppress(OSError, AttributeError):
        found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
        if found:
            return int(found.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def weight_bytes(model: torch.nn.Module) -> tuple[int, int, int]:
    """(bytes of all weights in memory, bytes one decode step reads, number of weights).

    A decode step reads every weight once except embedding tables, of which it reads one row;
    a tied output head shares the embedding's tensor and is counted once, as the head. Dynamic
    int8 linears keep their weights packed, outside `parameters()`: they are counted as int8.
    """
    seen: dict[Any, int] = {}  # storage → bytes, for all weights
    count: dict[Any, int] = {}  # storage → elements
    read: set[Any] = set()  # what a decode step reads
    for module in model.modules():
        is_table = isinstance(module, torch.nn.Embedding)
        found = [(t.data_ptr(), t) for t in module.parameters(recurse=False)]  # not buffers
        weight_fn = getattr(module, "weight", None)
        if callable(weight_fn) and not isinstance(weight_fn, torch.Tensor):  # packed int8
            # Unpacking makes temporary tensors whose addresses get reused: key by module.
            unpacked = module._weight_bias()  # type: ignore[operator]
            found += [((id(module), i), t) for i, t in enumerate(unpacked) if t is not None]
        for key, tensor in found:
            seen[key] = tensor.numel() * tensor.element_size()
            count[key] = tensor.numel()
            if not is_table:
                read.add(key)
    return sum(seen.values()), sum(seen[k] for k in read), sum(count.values())


def kv_bytes(config: Any, tokens: int, element_size: int) -> int:
    """Keys and values a decode step reads at `tokens` context (multi-query aware)."""
    layers, width = config.num_hidden_layers, config.hidden_size
    heads = config.num_attention_heads
    kv_heads = 1 if getattr(config, "multi_query", False) else \
        getattr(config, "num_key_value_heads", None) or heads
    return 2 * layers * tokens * kv_heads * (width // heads) * element_size


# -- one request -------------------------------------------------------------------------------


def timed_generate(engine: LocalEngine, key: str, prompt: list[int], new_tokens: int
                   ) -> dict[str, Any]:
    """One request; prefill ends at the first token (sampling it forces the device to finish)."""
    stamps: list[float] = []

    def on_token(_token: int) -> bool:
        stamps.append(time.perf_counter())
        return False

    started = time.perf_counter()
    result = engine.generate(key, prompt, max_new_tokens=new_tokens, stop_ids=set(),
                             on_token=on_token)
    total = time.perf_counter() - started
    steps = [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
    return {
        "prompt_tokens": result.prompt_tokens, "reused_tokens": result.reused_tokens,
        "new_tokens": len(result.ids), "total_ms": total * 1000,
        "prefill_ms": (stamps[0] - started) * 1000,
        "decode_ms_per_token": sum(steps) / len(steps) if steps else None,
        "steps_ms": steps,
        "first_id": result.ids[0] if result.ids else None,
    }


def bench_one(name: str, folder: Path, quantization: str, args: argparse.Namespace,
              device: torch.device, bandwidth_gbs: float) -> list[dict[str, Any]]:
    """One row per forward path in --forward, on one loaded model. With several paths the
    engines share the weights and their requests are interleaved (A, B, A, B…), so a burst of
    other work on a shared machine falls on both alike and the ratio stays fair."""
    reset_peak_rss(device)
    rss_before = rss_mb("VmRSS")
    settings = Settings(device=device.type, dtype=args.dtype, quantization=quantization,
                        threads=args.threads if device.type == "cpu" else None,
                        speculate=args.speculate)  # as asked: no measuring at load
    started = time.perf_counter()
    first_engine = LocalEngine.load(resolve_model(str(folder)), settings)
    load_s = time.perf_counter() - started
    model = first_engine.model
    engines = {path: LocalEngine(model, first_engine.device, lean=path == "lean",
                                 speculate=args.speculate) for path in args.forward}
    for path, engine in engines.items():
        if path == "lean" and engine.lean is None:
            print(f"{name}: no lean forward for {model.config.model_type}; the 'lean' row runs "
                  "transformers' forward", file=sys.stderr)
    config = model.config
    vocab = config.vocab_size
    rng = random.Random(args.seed)
    prompt = [rng.randrange(FIRST_ID, vocab) for _ in range(args.context)]

    # Warm-up on a throwaway session: first-call kernel setup is not what a keystroke pays.
    for engine in engines.values():
        timed_generate(engine, "warmup", prompt[: min(64, args.context)], 2)
        engine.drop_session("warmup")

    cold = {path: timed_generate(engine, "cold", prompt, args.new_tokens)
            for path, engine in engines.items()}
    # The keystroke: one more token at the end of the prompt, same session (crop the generated
    # tokens, prefill one). Repeated with a different last token each time; median reported.
    reuse_runs: dict[str, list[dict[str, Any]]] = {path: [] for path in engines}
    for i in range(args.repeats):
        for path, engine in engines.items():
            extra = FIRST_ID + (cold[path]["first_id"] or 0) % 97 + i + 1
            reuse_runs[path].append(timed_generate(engine, "cold", [*prompt, extra],
                                                   args.new_tokens))
    fresh = {path: timed_generate(engine, "fresh", [*prompt, FIRST_ID + 1], args.new_tokens)
             for path, engine in engines.items()}

    total_bytes, decode_bytes, weights = weight_bytes(model)
    first = next(model.parameters())
    kv = kv_bytes(config, args.context, first.element_size() if first.is_floating_point() else 4)
    floor_ms = decode_bytes / (bandwidth_gbs * 1e9) * 1000
    rows = []
    for path, engine in engines.items():
        runs = reuse_runs[path]
        reuse = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
        all_steps = [t for r in (cold[path], *runs, fresh[path]) for t in r["steps_ms"]]
        best_prefill = min(cold[path]["prefill_ms"],
                           fresh[path]["prefill_ms"] * len(prompt) / (len(prompt) + 1))
        row: dict[str, Any] = {
            "model": name, "quantization": quantization,
            "forward": "lean" if engine.lean is not None else "transformers",
            "speculate": engine.speculate,
            "dtype": str(first.dtype).removeprefix("torch."),
            "geometry": {"layers": config.num_hidden_layers, "width": config.hidden_size,
                         "heads": config.num_attention_heads},
            "params": weights,  # packed int8 weights included
            "load_s": load_s,
            "weight_bytes": total_bytes, "decode_weight_bytes": decode_bytes, "kv_bytes": kv,
            "prefill_tokens": cold[path]["prompt_tokens"],
            "prefill_ms": cold[path]["prefill_ms"],
            "prefill_tokens_per_s": cold[path]["prompt_tokens"] / cold[path]["prefill_ms"] * 1000,
            # The keystroke without reuse is a second full prefill: the better of the two, for
            # a machine shared with other work.
            "prefill_tokens_per_s_best": len(prompt) / best_prefill * 1000,
            "decode_ms_per_token": cold[path]["decode_ms_per_token"],
            # Every decode step at this context (cold, reuse and fresh requests): robust to
            # bursts.
            "decode_ms_per_token_median": statistics.median(all_steps),
            "decode_steps": len(all_steps),
            "floor_ms_per_token": floor_ms,
            "decode_over_floor": statistics.median(all_steps) / floor_ms,
            "cold_total_ms": cold[path]["total_ms"],
            "keystroke": {
                "prompt_tokens": reuse["prompt_tokens"], "new_tokens": reuse["new_tokens"],
                "reuse_ms": reuse["total_ms"], "reuse_prefill_ms": reuse["prefill_ms"],
                "reused_tokens": reuse["reused_tokens"],
                "reuse_ms_all": [r["total_ms"] for r in runs],
                "no_reuse_ms": fresh[path]["total_ms"],
                "no_reuse_prefill_ms": fresh[path]["prefill_ms"],
                "no_reuse_reused_tokens": fresh[path]["reused_tokens"],
                "speedup": fresh[path]["total_ms"] / reuse["total_ms"],
            },
            "peak_rss_mb": rss_mb(), "rss_before_load_mb": rss_before,
            # Weights are memory-mapped from the safetensors file: those pages count in RSS as
            # file-backed (clean, reclaimable); anonymous memory is what the process really owns.
            "rss_anon_mb": rss_mb("RssAnon"), "rss_file_mb": rss_mb("RssFile"),
            "load_average_after": load_average(),
        }
        if device.type == "cuda":
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        rows.append(row)
    del engines, first_engine, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# -- speculation on real code ------------------------------------------------------------------


def retype_cursors(source: str, functions: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """Cursors of a user retyping function bodies of `source`: per function (up to `functions`,
    the longest bodies first), the body deleted and typed back line by line; a cursor after each
    line's indentation, where an editor asks for the rest of the line. (name, [(prefix,
    suffix)])."""
    import ast

    lines = source.splitlines(keepends=True)
    starts = [0, *itertools.accumulate(len(line) for line in lines)]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            first, last = node.body[0].lineno - 1, node.end_lineno  # body lines [first, last)
            if last - first >= 3:
                found.append((last - first, node.name, first, last))
    found.sort(key=lambda f: (-f[0], f[2]))
    result = []
    for _, name, first, last in found[:functions]:
        body_end = starts[last]
        cursors = []
        for line in range(first, last):
            indent = len(lines[line]) - len(lines[line].lstrip(" \t"))
            cut = starts[line] + indent
            cursors.append((source[:cut], source[body_end:]))
        result.append((name, cursors))
    return result


def retype(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Prompt-lookup speculation on a trained model retyping real code: tokens per forward and
    decode time, plain and speculating engines interleaved, outputs checked identical."""
    from fimlsp.context import Cursor
    from fimlsp.engine.local import SPECULATE
    from fimlsp.models import load_tokenizer
    from fimlsp.prompt import build_prompt

    source = Path(args.retype).read_text()
    spec = resolve_model(str(args.model_dir))
    tokenizer = load_tokenizer(str(args.model_dir))
    quantization = (args.quantization or "none").split(",")[0]
    settings = Settings(device=device.type, dtype=args.dtype, quantization=quantization,
                        threads=args.threads if device.type == "cpu" else None,
                        speculate=args.speculate)  # as asked: no measuring at load
    loaded = LocalEngine.load(resolve_model(str(args.model_dir)), settings)
    k = args.speculate or SPECULATE
    engines = {"plain": LocalEngine(loaded.model, loaded.device, speculate=0),
               "speculative": LocalEngine(loaded.model, loaded.device, speculate=k)}
    stop_ids = {i for t in spec.template.stop if (i := tokenizer.token_to_id(t)) is not None}
    totals = {name: {"tokens": 0, "forwards": 0, "decode_ms": 0.0, "drafted": 0,
                     "accepted": 0} for name in engines}
    requests = differing = 0
    for function, cursors in retype_cursors(source, args.functions):
        for prefix, suffix in cursors[: args.max_requests or None]:
            line = prefix.count("\n")
            cursor = Cursor(prefix, suffix, line, len(prefix) - prefix.rfind("\n") - 1)
            ids = build_prompt(tokenizer, spec.template, spec.order, cursor,
                               window=args.context, reserved=args.new_tokens).ids
            answers = []
            for name, engine in engines.items():  # interleaved: plain, speculative, plain…
                got = engine.generate(function, ids, max_new_tokens=args.new_tokens,
                                      stop_ids=stop_ids)
                answers.append(got.ids)
                t = totals[name]
                t["tokens"] += len(got.ids)
                # The prefill's forward gives the first token; each decode forward the rest.
                t["forwards"] += got.decode_forwards + (1 if got.ids else 0)
                t["decode_ms"] += got.decode_ms
                t["drafted"] += got.drafted
                t["accepted"] += got.accepted
            requests += 1
            differing += answers[0] != answers[1]
    for t in totals.values():
        t["tokens_per_forward"] = t["tokens"] / max(1, t["forwards"])
        t["decode_ms_per_token"] = t["decode_ms"] / max(1, t["tokens"])
    return {"file": str(args.retype), "model": str(args.model_dir), "quantization": quantization,
            "speculate": k, "requests": requests, "differing_answers": differing,
            "new_tokens": args.new_tokens, "window": args.context, "totals": totals,
            "decode_speedup": totals["plain"]["decode_ms_per_token"]
            / max(1e-9, totals["speculative"]["decode_ms_per_token"])}


# -- the command -------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fimlsp bench engine",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny_starcoder_py,starcoderbase-1b",
                        help="comma-separated folders of shared/model-configs")
    parser.add_argument("--quantization", default=None,
                        help="comma-separated; default none,int8 on CPU, none,8bit,4bit on CUDA")
    parser.add_argument("--dtype", default="auto",
                        help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16, float16")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the reuse keystroke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "fimlsp" / "bench",
                        help="where the random-weight models are built once and kept")
    parser.add_argument("--shared", type=Path, default=None, help="the shared/ folder")
    parser.add_argument("--tiny", action="store_true",
                        help="2 layers × 64 wide instead of full size (for tests)")
    parser.add_argument("--layers", type=int, default=None, help="override the real depth")
    parser.add_argument("--width", type=int, default=None, help="override the real width")
    parser.add_argument("--heads", type=int, default=None, help="override the real head count")
    parser.add_argument("--bandwidth-mb", type=int, default=1024,
                        help="size of the tensor the bandwidth is measured on")
    parser.add_argument("--in-process", action="store_true",
                        help="run every configuration in this process (default: one subprocess "
                        "each, so peak memory is per configuration and memory is returned)")
    parser.add_argument("--forward", default="lean",
                        help="comma-separated forward paths, interleaved on one loaded model: "
                        "lean (engine/lean/ where the model has one) and reference "
                        "(transformers' forward with its DynamicCache)")
    parser.add_argument("--speculate", type=int, default=0,
                        help="prompt-lookup draft tokens (default 0: decode ms/token is then "
                        "per forward; random prompts give nothing to look up anyway)")
    parser.add_argument("--retype", type=Path, default=None,
                        help="instead: prompt-lookup speculation on --model-dir (a trained "
                        "model) retyping function bodies of this Python file")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="the model --retype runs (e.g. shared/models/tiny-fim-starcoder)")
    parser.add_argument("--functions", type=int, default=8,
                        help="function bodies --retype retypes (the longest first)")
    parser.add_argument("--max-requests", type=int, default=0,
                        help="--retype: at most this many cursors per function (0: all lines)")
    parser.add_argument("--json", action="store_true")
    # What a subprocess gets: one configuration, the bandwidth measured by its parent.
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.context < 2 or args.new_tokens < 2:
        parser.error("--context and --new-tokens must be at least 2")
    args.forward = [p.strip() for p in args.forward.split(",") if p.strip()]
    if not args.forward or set(args.forward) - {"lean", "reference"}:
        parser.error("--forward takes lean and/or reference")
    return args


def full_size_model(model: str, tiny: bool = False, cache_dir: Path | None = None) -> str:
    """`model` itself when it is a model directory; else the shared/model-configs name built
    full size (`tiny`: the tests' 2 layers × 64) with random weights into the bench cache
    (once), as this benchmark does."""
    if Path(model).is_dir():
        return model
    defaults = parse_args(["--tiny"] if tiny else [])
    shape = geometry(model, defaults)
    folder = (cache_dir or defaults.cache_dir) / (f"{model}-{shape['layers']}x{shape['width']}x"
                                                  f"{shape['heads']}")
    return str(build_tiny_model(folder, model, **shape))


def geometry(name: str, args: argparse.Namespace) -> dict[str, int]:
    from fimlsp.tools.tiny import shared_dir

    shared = args.shared or shared_dir()
    if shared is None:
        raise SystemExit("shared/ with the real model configs not found: pass --shared")
    config_path = shared / "model-configs" / name / "config.json"
    if not config_path.is_file():
        raise SystemExit(f"no config for '{name}' in {shared / 'model-configs'}")
    raw = json.loads(config_path.read_text())
    full = {"layers": raw.get("n_layer") or raw.get("num_hidden_layers"),
            "width": raw.get("n_embd") or raw.get("hidden_size"),
            "heads": raw.get("n_head") or raw.get("num_attention_heads")}
    chosen = dict(TINY) if args.tiny else full
    for key in chosen:
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    return chosen


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("fimlsp bench engine: no CUDA device on this machine; nothing measured (run it "
              "where `nvidia-smi` shows a GPU)")
        return 0
    device = choices.device(args.device).value
    quantizations = (args.quantization.split(",") if args.quantization
                     else ["none", "int8"] if device.type == "cpu" else ["none", "8bit", "4bit"])
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.retype:
        if args.model_dir is None:
            raise SystemExit("--retype needs --model-dir")
        report = retype(args, device)
        print(json.dumps(report, indent=2))
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.row:
        names = [args.row.split(":")[0]]

    folders: dict[str, Path] = {}
    for name in names:
        shape = geometry(name, args)
        folder = args.cache_dir / f"{name}-{shape['layers']}x{shape['width']}x{shape['heads']}"
        if not args.row:
            print(f"model {name} ({shape['layers']} layers × {shape['width']}): {folder}",
                  file=sys.stderr)
        folders[name] = build_tiny_model(folder, name, shared=args.shared, **shape)

    if args.row:  # a subprocess of the command below: one configuration, one JSON row
        name, quantization = args.row.split(":")
        rows = bench_one(name, folders[name], quantization, args, device, args.bandwidth_gbs)
        print(json.dumps(rows))
        return 0

    load_before = load_average()
    bandwidth = measure_bandwidth(device, args.bandwidth_mb)
    rows = []
    for name in names:
        for quantization in quantizations:
            print(f"running {name} {quantization} …", file=sys.stderr, flush=True)
            if args.in_process:
                rows += bench_one(name, folders[name], quantization, args, device, bandwidth)
            else:
                rows += _in_subprocess(argv, name, quantization, bandwidth)
    info = machine(device, args.threads)
    info["load_average_before"] = load_before
    info["load_average_after"] = load_average()
    result = {
        "machine": info, "bandwidth_gbs": bandwidth, "context": args.context,
        "new_tokens": args.new_tokens,
        "prompt": f"random ids in [{FIRST_ID}, vocab), seed {args.seed}; stop ids disabled",
        "results": rows, "int8_decode_vs_fp32": _ratios(rows),
        "lean_vs_reference": _lean_ratios(rows),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0


def _in_subprocess(argv: list[str], name: str, quantization: str, bandwidth: float
                   ) -> list[dict[str, Any]]:
    import subprocess

    command = [sys.executable, "-m", "fimlsp_bench.engine", *argv, "--json",
               "--row", f"{name}:{quantization}", "--bandwidth-gbs", repr(bandwidth)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        print(f"{name} {quantization} failed (exit {done.returncode})", file=sys.stderr)
        return [{"model": name, "quantization": quantization,
                 "error": f"exit status {done.returncode}"}]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Quantized decode time ÷ unquantized, per model and forward path (median steps)."""
    ratios = {}
    for row in rows:
        if row["quantization"] == "none" or "error" in row:
            continue
        base = next((r for r in rows if r["model"] == row["model"]
                     and r.get("forward") == row.get("forward")
                     and r["quantization"] == "none" and "error" not in r), None)
        if base:
            label = f"{row['model']} {row['quantization']}"
            if len({r.get("forward") for r in rows}) > 1:
                label += f" ({row['forward']})"
            ratios[label] = (row["decode_ms_per_token_median"]
                             / base["decode_ms_per_token_median"])
    return ratios


def _lean_ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Lean ÷ transformers' forward, per model and quantization, from the interleaved runs:
    decode (median step), keystroke with reuse (median), cold prefill."""
    ratios = {}
    for row in rows:
        if row.get("forward") != "lean" or "error" in row:
            continue
        base = next((r for r in rows if r["model"] == row["model"]
                     and r["quantization"] == row["quantization"]
                     and r.get("forward") == "transformers"), None)
        if base:
            ratios[f"{row['model']} {row['quantization']}"] = {
                "decode": row["decode_ms_per_token_median"] / base["decode_ms_per_token_median"],
                "keystroke": row["keystroke"]["reuse_ms"] / base["keystroke"]["reuse_ms"],
                "cold_prefill": row["prefill_ms"] / base["prefill_ms"],
            }
    return ratios


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['threads']} threads, "
        f"device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; torch {m['torch']}, "
        f"transformers {m['transformers']}; {m['date']}",
        f"load average before {m['load_average_before']}, after {m['load_average_after']}; "
        f"measured read bandwidth {result['bandwidth_gbs']:.1f} GB/s",
        f"prompt {result['context']} tokens ({result['prompt']}), {result['new_tokens']} new",
        "",
        "| model | quant | forward | weights MB (read per token) | prefill tok/s (cold; best) "
        "| decode ms/tok (mean; median) | floor ms/tok | keystroke: reuse ms | no reuse ms "
        "| speed-up | RSS MB: peak; anon |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['quantization']} | {r['error']} |")
            continue
        k = r["keystroke"]
        quant = r["quantization"] if r["quantization"] != "none" else r["dtype"]
        lines.append(
            f"| {r['model']} | {quant} | {r.get('forward', '-')} "
            f"| {r['weight_bytes'] / 1e6:.0f} "
            f"({r['decode_weight_bytes'] / 1e6:.0f}) | {r['prefill_tokens_per_s']:.0f}; "
            f"{r['prefill_tokens_per_s_best']:.0f} | {r['decode_ms_per_token']:.1f}; "
            f"{r['decode_ms_per_token_median']:.1f} | {r['floor_ms_per_token']:.1f} "
            f"| {k['reuse_ms']:.0f} | {k['no_reuse_ms']:.0f} | {k['speedup']:.1f}× "
            f"| {r['peak_rss_mb']:.0f}; {r.get('rss_anon_mb', 0):.0f} |")
    for key, ratio in result["int8_decode_vs_fp32"].items():
        lines.append(f"\n{key} decode ÷ unquantized decode: {ratio:.2f}")
    for key, ratio in result.get("lean_vs_reference", {}).items():
        lines.append(f"\n{key} lean ÷ transformers: decode {ratio['decode']:.2f}, keystroke "
                     f"{ratio['keystroke']:.2f}, cold prefill {ratio['cold_prefill']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
