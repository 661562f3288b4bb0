"""What `auto` means on this machine, and why: device, dtype, quantization, threads, window.

A user who changes no setting must get the fast configuration, and one who wonders why must be
able to read the reason: every choice here comes with one sentence that the server logs once at
load and `fimlsp.stats` reports (`choices`). The figures the reasons quote are measured in
docs/benchmarks.md ("Defaults on the CPU"); an explicit setting always wins and says so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fimlsp.errors import ErrorKind, FimError
from fimlsp.models import ModelSpec

# The window a CPU gets unless `contextWindow` says otherwise. Measured (docs/benchmarks.md,
# "Defaults on the CPU"): at 2048 a keystroke at the default preset costs ~3× less than at the
# model's 8192 and the first suggestion in a large file comes 8× sooner, while the trained
# fixture saves as many characters; a GPU keeps the model's full window.
CPU_WINDOW = 2048
# The longest answer, in tokens, unless `maxNewTokens` says otherwise. Measured (docs/benchmarks.md,
# "A shorter answer while typing is the lever"): on the CPU, at 150 ms a keystroke, 32 saves the
# developer as many characters in real time as 64 did, with 5 % of answers late instead of 29 %;
# a GPU or a serving engine writes 64 in the time a CPU writes a few.
CPU_ANSWER_TOKENS = 32
ANSWER_TOKENS = 64


@dataclass(frozen=True)
class Choice:
    """One resolved setting and the sentence that says why it has this value."""

    value: Any
    why: str


def device(name: str) -> Choice:
    if name != "auto":
        if name == "cuda" and not torch.cuda.is_available():
            raise FimError(ErrorKind.CONFIG,
                           "device 'cuda' was asked for but no CUDA GPU is visible")
        return Choice(torch.device(name), "set")
    if torch.cuda.is_available():
        return Choice(torch.device("cuda"), "auto: a CUDA GPU is visible")
    return Choice(torch.device("cpu"), "auto: no CUDA GPU visible")


def quantization(name: str, spec: ModelSpec, device: torch.device) -> Choice:
    """`auto` is the preset's choice for the device (4-bit for the 15B models on CUDA), else
    dynamic int8 on the CPU and none on a GPU.

    int8 on the CPU because the user who changes nothing must not get fp32's latency: decode is
    ~3× faster and prefill ~2× (docs/benchmarks.md), and on the trained fixture the int8
    suggestions are the fp32 ones at the rate quoted in `INT8_AGREEMENT`. It applies to every
    architecture we run: the same `nn.Linear` layers are quantized the same way in each.
    """
    if name != "auto":
        return Choice(name, "set")
    preset = spec.preset
    chosen = preset.cuda_quantization if preset and device.type == "cuda" else (
        preset.cpu_quantization if preset else ("int8" if device.type == "cpu" else "none"))
    if chosen == "int8":
        return Choice(chosen, f"auto: dynamic int8 on the CPU ({INT8_AGREEMENT})")
    if chosen != "none":
        return Choice(chosen, f"auto: preset {preset.name if preset else '?'} on {device.type}")
    return Choice(chosen, f"auto: full precision on {device.type}")


# Measured with `fimlsp bench agreement` on the trained fixture (docs/benchmarks.md).
INT8_AGREEMENT = "the fp32 suggestion at 83 % of held-out cursors on the trained fixture"


def dtype(name: str, device: torch.device) -> Choice:
    """fp32 on the CPU: without AVX-512 bf16 the reduced types are several times slower there
    (and the int8 path computes its activations in fp32 anyway); bf16 on CUDA."""
    if name != "auto":
        return Choice(getattr(torch, name), "set")
    if device.type == "cuda":
        return Choice(torch.bfloat16, "auto: bf16 on CUDA")
    return Choice(torch.float32, f"auto: fp32 on {device.type}")


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs this process may use under a container's quota (cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us`), None without one. torch counts the host's cores and ignores quotas:
    under a 2-CPU quota on a 16-core host its 16 threads would be throttled to a crawl."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


# torch's own count before any engine changed it: a model loaded again (a setting changed) must
# not take the one thread its predecessor settled on for the machine's count.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def threads(setting: int | None, root: Path = Path("/sys/fs/cgroup")) -> Choice:
    """torch's own count (the physical cores), capped by the CPUs this process may run on and
    by a container's CPU quota."""
    if setting:
        return Choice(setting, "set")
    count, why = TORCH_DEFAULT_THREADS, "torch's default (physical cores)"
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = count
    if allowed < count:
        count, why = allowed, f"the {allowed} CPUs this process may run on"
    quota = cpu_quota(root)
    if quota is not None and math.ceil(quota) < count:
        count, why = max(1, math.ceil(quota)), f"the container's CPU quota ({quota:g} CPUs)"
    return Choice(count, f"auto: {why}")


def wait_policy() -> Choice:
    """How torch's OpenMP threads wait for work: set in `fimlsp/__init__.py`, before torch
    loads (why is there); reported so that a slow machine's stats say it."""
    from fimlsp import WAIT_POLICY_SET_BY_USER

    value = os.environ.get("OMP_WAIT_POLICY") or \
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}"
    if WAIT_POLICY_SET_BY_USER:
        return Choice(value, "set in the environment")
    return Choice(value, "fimlsp's default: waiting threads sleep, so cores shared with the "
                  "editor and builds do not stall the model")


def _on_cpu(engine: str, device_name: str) -> bool:
    """The in-process engine on the CPU: where each token costs milliseconds."""
    if engine != "local":
        return False
    return not ((device_name == "auto" and torch.cuda.is_available())
                or device_name in ("cuda", "mps"))


def window_cap(override: int | None, engine: str, device_name: str) -> tuple[int, str] | None:
    """The CPU's default window for the in-process engine, unless `contextWindow` is set: the
    model's own window on a GPU or a serving engine (their prefill is cheap)."""
    if override or not _on_cpu(engine, device_name):
        return None
    return CPU_WINDOW, "the CPU default (set contextWindow for more)"


def answer_tokens(setting: int | None, engine: str, device_name: str) -> Choice:
    """The longest answer, in tokens: the setting, else 32 for the in-process engine on the CPU
    (an answer the developer sees before the next keystroke), else 64."""
    if setting:
        return Choice(setting, "set")
    if _on_cpu(engine, device_name):
        return Choice(CPU_ANSWER_TOKENS, "the CPU default: answers in time at a typing pace "
                      "(set maxNewTokens for longer blocks)")
    return Choice(ANSWER_TOKENS, "the default")


def describe(choices: dict[str, Choice]) -> str:
    """One line for the load log: `quantization int8 (auto: ...), ...`."""
    return ", ".join(f"{name} {show(c.value)} ({c.why})" for name, c in choices.items())


def show(value: Any) -> Any:
    """A value as JSON and log lines show it: `float32`, `cpu`, numbers as they are."""
    if isinstance(value, (int, float, str)):
        return value
    return str(value).removeprefix("torch.")
