"""A vLLM server on loopback for the remote engine's tests and `fimlsp bench remote`.

vLLM runs from its own venv (`scripts/install-vllm.sh`: its CPU build pins a transformers older
than ours), started as the module its console script would run. Its Prometheus metrics are how
we check what it did: requests aborted when we closed their streams, prefix-cache hits.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
READY_S = 600.0  # a cold start on a busy 2-core machine; ~60-90 s when it is quiet
INSTALL = "bash scripts/install-vllm.sh"


def vllm_python() -> Path | None:
    """$FIMLSP_VLLM_PYTHON, else .venv-vllm of this checkout, when it has vLLM."""
    named = os.environ.get("FIMLSP_VLLM_PYTHON")
    candidate = Path(named) if named else REPO / ".venv-vllm" / "bin" / "python"
    if not candidate.is_file():
        return None
    site = candidate.parent.parent / "lib"
    if not named and not any(site.glob("python3*/site-packages/vllm")):
        return None
    return candidate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` serving one model directory, fp32."""

    def __init__(self, model: Path, python: Path, max_model_len: int = 2048,
                 log: Path | None = None, port: int | None = None) -> None:
        self.model, self.python, self.max_model_len = model, python, max_model_len
        self.attached = port is not None  # one already running: neither started nor stopped
        self.port = port if port is not None else free_port()
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def attach(cls, endpoint: str) -> VllmServer:
        """One already running (started by the user, or a test's): not started or stopped here."""
        from urllib.parse import urlsplit

        return cls(Path("."), Path("."), port=urlsplit(endpoint).port or 80)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VllmServer:
        if self.attached:
            return self
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
               "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        env.pop("PYTHONPATH", None)  # its own venv, not ours
        self._log = open(self.log_path, "wb") if self.log_path else None  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
             "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
             "--dtype", "float32", "--max-model-len", str(self.max_model_len),
             "--enable-prompt-tokens-details", "--disable-uvicorn-access-log"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = READY_S) -> None:
        """Until /v1/models answers (polled: vLLM has no readiness signal on stdio)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/models", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM not ready in {timeout_s:.0f}s: {self.log_tail()}")
            time.sleep(0.5)  # poll interval for an external server's readiness

    def log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-3000:]
        return "(no log kept)"

    def metrics(self) -> dict[str, float]:
        """The Prometheus counters and gauges, summed over labels except finished_reason."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^(vllm:[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
            if not match:
                continue
            name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
            reason = re.search(r'finished_reason="([a-z_]+)"', labels)
            if reason:
                name += f"[{reason.group(1)}]"
            values[name] = values.get(name, 0.0) + value
        return values

    def stop(self) -> None:
        if self.attached:
            return
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> VllmServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()


def hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Share of prompt tokens vLLM found in its prefix cache between two metric snapshots."""
    queries = after.get("vllm:prefix_cache_queries_total", 0) - before.get(
        "vllm:prefix_cache_queries_total", 0)
    hits = after.get("vllm:prefix_cache_hits_total", 0) - before.get(
        "vllm:prefix_cache_hits_total", 0)
    return hits / queries if queries > 0 else None


def describe(metrics: dict[str, float]) -> str:
    return json.dumps({k: v for k, v in metrics.items() if "prefix_cache" in k
                       or "request_success" in k or "generation_tokens" in k})
