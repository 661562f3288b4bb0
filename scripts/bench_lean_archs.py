"""Per-token decode time, lean forward against transformers' forward, for every architecture
with a lean forward, at one small geometry (issue 11; docs/benchmarks.md, "Lean forward per
architecture").

One process, one model per architecture (random weights, the real architecture's structure),
two engines on it (`lean=True`, `lean=False`), requests interleaved A, B, A, B so bursts of
other work on a shared machine fall on both alike. Each request is a keystroke: the prompt plus
one new token on a warm session, then `--new` greedy tokens; a decode step is the time between
two streamed tokens. Reported: the median step per path and their ratio.

    PYTHONPATH=. python scripts/bench_lean_archs.py --context 1024 --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import random
import statistics
import time

import torch

from fimlsp.engine.local import LocalEngine

# The real models' structure (heads : key/value heads, norms, biases, windows, vocabularies),
# at the geometry the command line gives. Widths and depths are the bench's, not the models'.
ARCHS: dict[str, dict[str, object]] = {
    "gpt_bigcode (StarCoder)": {
        "model_type": "gpt_bigcode", "vocab_size": 49152, "multi_query": True,
        "activation_function": "gelu_pytorch_tanh", "n_positions": 8192},
    "gpt_neox (FIM-NeoX)": {
        "model_type": "gpt_neox", "vocab_size": 50304, "hidden_act": "gelu",
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "use_parallel_residual": True,
        "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "llama (DeepSeek-Coder)": {
        "model_type": "llama", "vocab_size": 32256, "hidden_act": "silu", "kv_ratio": 1,
        "rope_theta": 100000, "rope_scaling": {"type": "linear", "factor": 4.0},
        "max_position_embeddings": 16384, "tie_word_embeddings": False},
    "qwen2 (Qwen2.5-Coder)": {
        "model_type": "qwen2", "vocab_size": 151936, "hidden_act": "silu", "kv_ratio": 6,
        "rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": True},
    "starcoder2": {
        "model_type": "starcoder2", "vocab_size": 49152, "hidden_act": "gelu_pytorch_tanh",
        "kv_ratio": 6, "rope_theta": 999999.44, "use_bias": True, "sliding_window": 4096,
        "max_position_embeddings": 16384, "bos_token_id": 0, "eos_token_id": 0},
    "gpt_refact (Refact)": {
        "model_type": "gpt_refact", "vocab_size": 49216, "multi_query": True, "n_positions": 4096},
}


def build(arch: str, layers: int, width: int, heads: int) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    import fimlsp.engine.architectures.refact  # noqa: F401  (registers gpt_refact)

    config = dict(ARCHS[arch])
    ratio = int(config.pop("kv_ratio", 1))  # type: ignore[call-overload]
    config |= {"num_hidden_layers": layers, "hidden_size": width, "num_attention_heads": heads,
               "intermediate_size": 4 * width}
    if config["model_type"] in ("gpt_bigcode", "gpt_refact"):
        config = {k: v for k, v in config.items() if k not in ("intermediate_size",
                  "num_hidden_layers", "hidden_size", "num_attention_heads")}
        config |= {"n_layer": layers, "n_embd": width, "n_head": heads}
    elif config["model_type"] != "gpt_neox":
        config["num_key_value_heads"] = heads // ratio
    torch.manual_seed(0)
    model_type = config.pop("model_type")
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config)).eval()


def steps_ms(engine: LocalEngine, prompt: list[int], new: int) -> list[float]:
    stamps: list[float] = []
    engine.generate("doc", prompt, max_new_tokens=new, stop_ids=set(),
                    on_token=lambda _: stamps.append(time.perf_counter()) and False)
    return [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]


def measure(model: torch.nn.Module, context: int, new: int, rounds: int) -> dict[str, float]:
    engines = {"lean": LocalEngine(model, torch.device("cpu"), lean=True, speculate=0),
               "reference": LocalEngine(model, torch.device("cpu"), lean=False, speculate=0)}
    assert engines["lean"].lean is not None, "no lean forward"
    rng = random.Random(0)
    prompt = [rng.randrange(100, model.config.vocab_size) for _ in range(context)]
    steps: dict[str, list[float]] = {path: [] for path in engines}
    for engine in engines.values():  # warm-up and the cold prefill, not measured
        steps_ms(engine, prompt, 2)
    for i in range(rounds):
        for path, engine in engines.items():  # interleaved: lean, reference, lean, …
            steps[path] += steps_ms(engine, [*prompt, 100 + i], new)
    lean, reference = (statistics.median(steps[p]) for p in ("lean", "reference"))
    return {"lean_ms": lean, "reference_ms": reference, "ratio": lean / reference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--new", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="1 by default: on a shared 2-core machine, 2 threads waiting at "
                        "barriers measure the neighbours more than the step")
    parser.add_argument("--archs", default=",".join(ARCHS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs.split(","):
        model = build(arch, args.layers, args.width, args.heads)
        for quantization in ("none", "int8"):
            if quantization == "int8":
                model = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
            with torch.inference_mode():
                row = {"arch": arch, "quantization": quantization,
                       **measure(model, args.context, args.new, args.rounds)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| architecture | weights | lean ms/token | transformers ms/token "
          "| lean ÷ transformers |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {'fp32' if r['quantization'] == 'none' else 'int8 dynamic'} | "
              f"{r['lean_ms']:.2f} | {r['reference_ms']:.2f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
