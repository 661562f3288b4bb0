"""One-token matmuls (decode) per weight format on this CPU, interleaved: issue 11 item 3.

fp32; dynamic int8 (torch.ao `quantize_dynamic`, fbgemm: what `quantization: int8` uses);
weight-only int8 through `torch.ops.aten._weight_int8pack_mm` (bf16 activations; fp32 ones are
~15x slower); int4 through `_weight_int4pack_mm_for_cpu` (groups of 32, bf16); and dynamic int8
through `torch._int_mm`, a candidate replacement for the deprecated torch.ao path. Shapes are
tiny_starcoder_py's MLP (768 ↔ 3072) and a fused QKV-sized projection (768 → 2304).
Prints µs per call (median of rounds) and the relative error of each against fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def timed(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def formats(weight: torch.Tensor) -> dict[str, object]:
    out_features, in_features = weight.shape
    linear = torch.nn.Linear(in_features, out_features, bias=False)
    linear.weight.data.copy_(weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)
    scale = weight.abs().amax(dim=1) / 127  # [out]
    int8 = torch.round(weight / scale[:, None]).clamp(-128, 127).to(torch.int8)  # [out, in]
    int8_t = int8.T.contiguous()  # [in, out] for _int_mm
    group = 32
    grouped = weight.reshape(out_features, in_features // group, group)
    low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    step = (high - low).clamp(min=1e-8) / 15
    q4 = torch.round((grouped - low) / step).clamp(0, 15).to(torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q4.reshape(out_features, -1), 8)
    zeros = low + 8 * step  # the kernel computes (q - 8) * scale + zero
    scales_zeros = torch.stack([step.squeeze(-1), zeros.squeeze(-1)], -1).transpose(0, 1)
    scales_zeros = scales_zeros.contiguous().bfloat16()  # [in / group, out, 2]
    bf_scale = scale.bfloat16()

    def int_mm(x: torch.Tensor) -> torch.Tensor:
        x_scale = x.abs().amax(-1, keepdim=True) / 127  # [1, 1]
        xq = torch.round(x / x_scale).to(torch.int8)  # [1, in]
        return torch._int_mm(xq, int8_t).float() * x_scale * scale  # [1, out]

    return {
        "fp32": linear,
        "dynamic int8 (torch.ao, fbgemm)": dynamic,
        "weight-only int8 (_weight_int8pack_mm, bf16)":
            lambda x: torch.ops.aten._weight_int8pack_mm(x.bfloat16(), int8, bf_scale),
        "int4 g32 (_weight_int4pack_mm_for_cpu, bf16)":
            lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), packed, group,
                                                                 scales_zeros),
        "dynamic int8 (torch._int_mm)": int_mm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = [(3072, 768), (768, 3072), (2304, 768)]
    print(f"threads {args.threads}, torch {torch.__version__}")
    print("| format | " + " | ".join(f"{o}×{i} µs" for o, i in shapes) + " | rel. error |")
    print("|---|" + "---|" * (len(shapes) + 1))
    results: dict[str, list[float]] = {}
    errors: dict[str, float] = {}
    with torch.inference_mode():
        for out_features, in_features in shapes:
            weight = torch.randn(out_features, in_features) * 0.02
            x = torch.randn(1, in_features)
            candidates = formats(weight)
            reference = x @ weight.T
            times: dict[str, list[float]] = {name: [] for name in candidates}
            for fn in candidates.values():
                timed(lambda fn=fn, x=x: fn(x), 20)  # warm-up
            for _ in range(args.rounds):  # interleaved
                for name, fn in candidates.items():
                    times[name].append(timed(lambda fn=fn, x=x: fn(x), args.calls))
            for name, fn in candidates.items():
                results.setdefault(name, []).append(statistics.median(times[name]))
                error = ((fn(x).float() - reference).norm() / reference.norm()).item()
                errors[name] = max(errors.get(name, 0.0), error)
    for name, values in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in values)
              + f" | {errors[name]:.4f} |")


if __name__ == "__main__":
    main()
