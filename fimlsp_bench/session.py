"""`fimlsp bench session`: a typing session replayed keystroke by keystroke against contenders.

Real code no one here wrote: a function of the Python standard library (default argparse.py's
`_match_argument`; `--file`, `--function`). Its body is deleted and typed back one character at
a time; each keystroke is a `didChange` plus an `inlineCompletion` through the real server over
stdio, and the next keystroke waits for the answer, so every keystroke is measured (a real
typist is faster; `fimlsp bench soak` measures superseding). Contenders, each in its own
long-lived process, take turns on every keystroke (shipped and reuse-off alternate which goes
first; llama.cpp goes after shipped, whose prompt it needs). Before each turn the bench waits
until every contender's process has stopped using the CPU (`settle`): the shipped server's work
between keystrokes (the suggestion after an accept, alternatives, a whole prompt read after a
quick one) runs in the user's idle time, and here it must not fall into a rival's turn:

- **shipped**: `fimlsp serve` as installed (its environment without FIMLSP_LEAN /
  FIMLSP_SPECULATE);
- **reuse-off**: the same server with the engine's session dropped before every generation
  (`bench/_fresh.py`), so each request prefills its whole prompt; `--reuse-off-every K` asks it
  only every K-th keystroke (its document still gets every edit), since each answer is a cold
  prefill;
- **llama.cpp**: llama-cpp-python (`bench/_llamacpp.py`, in the environment that has it) on the
  same weights converted to GGUF with llama.cpp's own converter (q8_0 against int8, f32 against
  fp32), given the *same prompt ids* the shipped server built and asked for the same number of
  tokens, on the keystrokes where the shipped server ran its model. Those ids are rebuilt here
  by the same `Completer.prompt_for`, with the same settings, called at the same keystrokes, so
  the sticky window edges evolve as the server's (`fimlsp.prompt` builds without them); the
  count is checked against the server's request log on every keystroke (`mirror_mismatches`).
  Its latency is the engine's alone (prompt ids in, tokens out, through a pipe): no LSP, no
  prompt building, no policy.

Per contender: keystroke→suggestion p50 / p95 / max over all keystrokes and over those that ran
the model; the engine's own time (fimlsp's request log: prefill + decode); tokens re-evaluated
per keystroke (prompt − reused, from the request log); tokens per forward, derived (the server
exposes no forward count: with speculation off, as shipped, decoding runs one forward per
generated token, plus one for an end-of-text it stops at, and the prefill's last forward gives
the first token); the share answered without the model (typing-through, recent answers); the
cold first request after opening the file. PNG plots (latency per keystroke, CDF) when
matplotlib is installed.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as t

from fimlsp.tools.lspclient import did_change
from fimlsp_bench._plot import pyplot, save

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FUNCTION = "_match_argument"
LLAMACPP_SCRIPT = Path(__file__).with_name("_llamacpp.py")
INSTALL_LLAMACPP = ("python -m venv .venv-llamacpp && CMAKE_ARGS='-DGGML_NATIVE=ON' "
                    ".venv-llamacpp/bin/pip install llama-cpp-python  (compiles 6-25 min), or "
                    "set FIMLSP_LLAMACPP_PYTHON")
_REQUEST = re.compile(r"source=(?P<source>\w+) prompt=(?P<prompt>\d+) reused=(?P<reused>\d+) "
                      r"prefill=(?P<prefill>\d+)ms decode=(?P<decode>\d+)ms "
                      r"generated=(?P<generated>\d+) stop=(?P<stop>\w+)")


# -- the typing ---------------------------------------------------------------------------------


@dataclass
class Replay:
    """The document with the body deleted, and the keystrokes that type it back."""

    original: str
    deletion: tuple[int, int, int, int]  # the body's range: line, character, line, character
    keys: list[tuple[int, int, str]]  # (line, UTF-16 character, text inserted there)
    function: str


def units(text: str) -> int:
    """UTF-16 code units: LSP's default position encoding, which the bench's client keeps."""
    return len(text.encode("utf-16-le")) // 2


def retyping(source: str, function: str, limit: int) -> Replay:
    """The body of the first function or method named `function` (its leading comment lines
    too), deleted and retyped: at most `limit` keystrokes, one character each."""
    tree = ast.parse(source)
    node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                ast.AsyncFunctionDef)) and n.name == function), None)
    if node is None:
        raise SystemExit(f"no function '{function}' in the file")
    lines = source.split("\n")
    first = node.body[0].lineno - 1  # 0-based
    while first > node.lineno and lines[first - 1].strip().startswith("#"):
        first -= 1
    last = (node.end_lineno or node.lineno) - 1
    body = "\n".join(lines[first:last + 1])
    keys: list[tuple[int, int, str]] = []
    line, character = first, 0
    for ch in body[:limit]:
        keys.append((line, character, ch))
        line, character = (line + 1, 0) if ch == "\n" else (line, character + units(ch))
    return Replay(source, (first, 0, last, units(lines[last])), keys, function)


def apply(text: str, line: int, character: int, end_line: int, end_character: int,
          new: str) -> str:
    """`text` with an LSP range replaced (UTF-16 positions), as the server's store does."""
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)

    def offset(ln: int, col: int) -> int:
        begin = starts[ln]
        count = 0
        for i in range(begin, len(text)):
            if count >= col or text[i] == "\n":
                return i
            count += units(text[i])
        return len(text)

    return text[:offset(line, character)] + new + text[offset(end_line, end_character):]


def after(key: tuple[int, int, str]) -> tuple[int, int]:
    """The cursor once `key` is typed."""
    line, character, ch = key
    return (line + 1, 0) if ch == "\n" else (line, character + units(ch))


# -- what each contender answered ---------------------------------------------------------------


@dataclass
class Sample:
    """One keystroke's answer as one contender gave it."""

    keystroke: int  # -1: the cold first request after opening the file
    ms: float  # keystroke → suggestion, as the bench saw it (llama.cpp: the engine's round trip)
    source: str  # model | cache (typing-through, recent answers)
    prompt: int = 0
    reused: int = 0
    generated: int = 0
    stop: str = ""
    engine_ms: float = 0.0  # prefill + decode (fimlsp's log); eval + generate (llama.cpp)
    suggestion: bool = False

    @property
    def forwards(self) -> int:
        """Forwards that produced tokens, derived: with speculation off, one per generated token
        and one more for an end-of-text it stopped at (the prefill's last forward counts for
        the first token)."""
        return self.generated + (self.stop == "eos")


class Server:
    """One `fimlsp serve` subprocess and one document in it, driven as an editor drives it."""

    def __init__(self, label: str, model: str, options: dict[str, Any], fresh: bool = False,
                 every: int = 1) -> None:
        self.label, self.model, self.options, self.fresh = label, model, options, fresh
        self.every = every
        self.samples: list[Sample] = []
        self.cold: Sample | None = None
        self.stats: dict[str, Any] = {}
        self._lines: list[str] = []
        self.client: Any = None
        self.uri = ""
        self.version = 1

    @property
    def pid(self) -> int | None:
        process = getattr(self.client, "_server", None)  # pygls' JsonRPCClient keeps it there
        return getattr(process, "pid", None)

    async def start(self, folder: Path, name: str, text: str) -> None:
        from fimlsp.tools.lspclient import editor_client

        client, loaded, shown = editor_client(f"fimlsp-session-{self.label}",
                                              on_log=self._lines.append)
        env = {k: v for k, v in os.environ.items()
               if k not in ("FIMLSP_LEAN", "FIMLSP_SPECULATE")}  # as shipped
        module = "fimlsp_bench._fresh" if self.fresh else "fimlsp"
        await client.start_io(sys.executable, "-m", module, "serve", "--model", self.model,
                              "--log-level", "warning", env=env)
        self.client = client
        await client.initialize_async(t.InitializeParams(
            process_id=None, root_uri=folder.as_uri(),
            capabilities=t.ClientCapabilities(window=t.WindowClientCapabilities(
                work_done_progress=True)), initialization_options=self.options))
        client.initialized(t.InitializedParams())
        await asyncio.wait_for(loaded.wait(), timeout=1800)
        stats = await self.command("fimlsp.stats")
        if not stats or stats.get("state") != "ready":
            raise RuntimeError(f"{self.label}: the model did not load: {shown}")
        self.uri = (folder / name).as_uri()
        client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
            uri=self.uri, language_id="python", version=1, text=text)))

    async def command(self, name: str) -> Any:
        return await self.client.workspace_execute_command_async(
            t.ExecuteCommandParams(command=name))

    def change(self, line: int, character: int, end_line: int, end_character: int,
               text: str) -> None:
        self.version += 1
        did_change(self.client, self.uri, self.version, (line, character),
                   (end_line, end_character), text)

    async def complete(self, keystroke: int, line: int, character: int,
                       sent: float | None = None) -> Sample:
        """The inline completion at the cursor; `sent`: when the keystroke's didChange left."""
        del self._lines[:]
        sent = time.perf_counter() if sent is None else sent
        answer = await self.client.text_document_inline_completion_async(
            t.InlineCompletionParams(
                text_document=t.TextDocumentIdentifier(uri=self.uri),
                position=t.Position(line=line, character=character),
                context=t.InlineCompletionContext(
                    trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
        ms = (time.perf_counter() - sent) * 1000
        sample = Sample(keystroke, ms, "?", suggestion=bool(answer is not None and answer.items))
        logged = [m for line_ in self._lines if (m := _REQUEST.search(line_))]
        if logged:
            found = logged[-1]
            sample.source, sample.stop = found["source"], found["stop"]
            sample.prompt, sample.reused = int(found["prompt"]), int(found["reused"])
            sample.generated = int(found["generated"])
            sample.engine_ms = float(found["prefill"]) + float(found["decode"])
        else:  # a server that logs no request lines: its last request from fimlsp.stats
            last = await self.command("fimlsp.stats") or {}
            sample.source = str(last.get("source") or "?")
            sample.prompt = int(last.get("prompt_tokens") or 0)
            sample.reused = int(last.get("reused_tokens") or 0)
            sample.generated = int(last.get("generated_tokens") or 0)
            sample.engine_ms = float(last.get("prefill_ms") or 0) + float(
                last.get("decode_ms") or 0)
        return sample

    async def stop(self) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            self.stats = dict(await asyncio.wait_for(self.command("fimlsp.stats"), 30) or {})
            await asyncio.wait_for(self.client.shutdown_async(None), 30)
            self.client.exit(None)
        await self.client.stop()


class LlamaCpp:
    """The llama-cpp-python driver subprocess (`_llamacpp.py`)."""

    label = "llama.cpp"

    def __init__(self, python: Path, gguf: Path, threads: int, n_ctx: int, log: Path) -> None:
        self.python, self.gguf, self.threads, self.n_ctx, self.log = (python, gguf, threads,
                                                                       n_ctx, log)
        self.samples: list[Sample] = []
        self.cold: Sample | None = None
        self.stats: dict[str, Any] = {}
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.process = await asyncio.create_subprocess_exec(
                str(self.python), str(LLAMACPP_SCRIPT), "--model", str(self.gguf),
                "--threads", str(self.threads), "--n-ctx", str(self.n_ctx),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                limit=2**24)
        self.stats = await self._read()

    async def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the llama.cpp driver ended: see {self.log}")
        return dict(json.loads(line))

    async def answer(self, keystroke: int, ids: list[int], n: int) -> Sample:
        assert self.process is not None and self.process.stdin is not None
        sent = time.perf_counter()
        self.process.stdin.write((json.dumps({"ids": ids, "n": n}) + "\n").encode())
        await self.process.stdin.drain()
        reply = await self._read()
        ms = (time.perf_counter() - sent) * 1000
        return Sample(keystroke, ms, "model", prompt=reply["prompt"], reused=reply["reused"],
                      generated=len(reply["ids"]), stop="max_tokens", engine_ms=reply["ms"],
                      suggestion=True)

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, all its threads (/proc/PID/stat); 0 when
    it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pids: list[int], polls: int = 3, poll_s: float = 0.02,
                 limit_s: float = 30.0) -> bool:
    """Waits until processes `pids` used no CPU for `polls` polls in a row, `limit_s` at most;
    False when they were still busy then. The contenders take turns on two cores: the shipped
    server's work between keystrokes (the suggestion after an accept, alternatives, reading a
    whole prompt after a quick one) must not run during another contender's turn, or the
    comparison measures the overlap. It would run in the same idle time for a user, on their
    own machine."""
    started = time.perf_counter()
    before, still = sum(map(cpu_seconds, pids)), 0
    while still < polls and time.perf_counter() - started < limit_s:
        await asyncio.sleep(poll_s)
        now = sum(map(cpu_seconds, pids))
        still = still + 1 if now == before else 0
        before = now
    return still >= polls


class PromptMirror:
    """The shipped server's prompts, rebuilt here: the same `Completer.prompt_for` with the same
    settings and document key, called at the same keystrokes (those that reached its engine or
    its recent answers), so its sticky window edges move exactly as the server's do."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        from fimlsp.completer import Completer
        from fimlsp.config import parse_settings

        parsed = parse_settings({**options, "model": model})
        self.completer = Completer(parsed.settings)
        self.completer.load_tokenizer()

    def ids(self, text: str, uri: str, line: int, character: int) -> list[int]:
        cursor = self.completer.cursor_for(text, line, character, "utf-16")
        return list(self.completer.prompt_for(cursor, uri).ids)


# -- the run ------------------------------------------------------------------------------------


async def replay(replay_: Replay, model: str, options: dict[str, Any],
                 llama: LlamaCpp | None, reuse_off_every: int = 1,
                 contenders: tuple[str, ...] = ("shipped", "reuse-off"),
                 progress: bool = False) -> dict[str, Any]:
    """Runs the session; returns every contender's samples and the mirror's agreement."""
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-session-"))
    name = "typed.py"
    servers = [Server("shipped", model, options)]
    if "defaults" in contenders:  # no window, quantization or threads: the server's choices
        servers.append(Server("defaults", model, {k: v for k, v in options.items()
                                                  if k in ("maxNewTokens", "timeBudgetMs")}))
    if "reuse-off" in contenders:
        servers.append(Server("reuse-off", model, options, fresh=True, every=reuse_off_every))
    mirror = PromptMirror(model, options) if llama is not None else None
    mismatches = 0
    waited = 0.0
    text = replay_.original

    async def quiet() -> None:
        nonlocal waited
        everyone = [*servers, *([llama] if llama is not None else [])]
        started = time.perf_counter()
        await settle([p for c in everyone if (p := c.pid) is not None])
        waited += time.perf_counter() - started

    try:
        for server in servers:  # one at a time: loading is the CPU-heavy part
            await server.start(folder, name, text)
        if llama is not None:
            await llama.start()
        d = replay_.deletion
        text = apply(text, *d, "")
        for server in servers:
            server.change(*d, "")
        cursor = (d[0], d[1])
        shipped = servers[0]

        async def engine_turn(keystroke: int, sample: Sample) -> Sample | None:
            nonlocal mismatches
            if mirror is None or llama is None or sample.prompt == 0:
                return None  # typing-through: the server built no prompt
            ids = mirror.ids(text, shipped.uri, *cursor)
            mismatches += len(ids) != sample.prompt
            if sample.source != "model":
                return None  # a recent answer: no engine ran
            await quiet()
            return await llama.answer(keystroke, ids, sample.forwards or 1)

        for server in servers:  # the cold first request: the whole prompt, once
            await quiet()
            server.cold = await server.complete(-1, *cursor)
        if llama is not None:
            llama.cold = await engine_turn(-1, shipped.cold)  # type: ignore[arg-type]
        for i, key in enumerate(replay_.keys):
            line, character, ch = key
            text = apply(text, line, character, line, character, ch)
            cursor = after(key)
            order = servers if i % 2 == 0 else servers[::-1]
            for server in order:
                await quiet()
                sent = time.perf_counter()
                server.change(line, character, line, character, ch)
                if i % server.every == 0:
                    server.samples.append(await server.complete(i, *cursor, sent))
            sample = shipped.samples[-1]
            if llama is not None:
                answer = await engine_turn(i, sample)
                if answer is not None:
                    llama.samples.append(answer)
            if progress and i % 10 == 0:
                print(f"keystroke {i}: " + ", ".join(
                    f"{s.label} {s.samples[-1].ms:.0f} ms" for s in servers if s.samples),
                    file=sys.stderr, flush=True)
    finally:
        for server in servers:
            await server.stop()
        if llama is not None:
            await llama.stop()
    everyone: list[Server | LlamaCpp] = [*servers, *([llama] if llama is not None else [])]
    return {"contenders": everyone, "mirror_mismatches": mismatches,
            "settle_s": round(waited, 1)}


# -- the report ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile by nearest rank (no interpolation between two keystrokes)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 1)


def summarize(samples: list[Sample], cold: Sample | None) -> dict[str, Any]:
    ms = [s.ms for s in samples]
    model = [s for s in samples if s.source == "model"]
    model_ms = [s.ms for s in model]
    engine_ms = [s.engine_ms for s in model]
    reevaluated = [s.prompt - s.reused for s in model]
    forwards = sum(s.forwards for s in model)
    return {
        "answered": len(samples),
        "p50_ms": pct(ms, .5), "p95_ms": pct(ms, .95),
        "max_ms": round(max(ms), 1) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "model_answers": len(model),
        "without_model": round(1 - len(model) / len(samples), 3) if samples else None,
        "model_p50_ms": pct(model_ms, .5), "model_p95_ms": pct(model_ms, .95),
        "engine_p50_ms": pct(engine_ms, .5), "engine_p95_ms": pct(engine_ms, .95),
        "prompt_tokens_mean": round(statistics.fmean(s.prompt for s in model), 1)
        if model else None,
        "reevaluated_per_model_keystroke": round(statistics.fmean(reevaluated), 2)
        if model else None,
        "reevaluated_median": statistics.median(reevaluated) if model else None,
        "reevaluated_per_keystroke": round(sum(reevaluated) / len(samples), 2)
        if samples else None,
        "generated_mean": round(statistics.fmean(s.generated for s in model), 1)
        if model else None,
        "tokens_per_forward": round(sum(s.generated for s in model) / forwards, 3)
        if forwards else None,
        "reused_le_prompt": all(s.reused <= s.prompt for s in samples),
        "with_suggestion": sum(s.suggestion for s in samples),
        "cold_ms": round(cold.ms, 1) if cold else None,
        "cold_prompt_tokens": cold.prompt if cold else None,
    }


def lscpu() -> dict[str, Any]:
    """The CPU model and its AVX-512 flags: llama.cpp and torch pick kernels by them."""
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)"):
                info[key.strip()] = value.strip()
            if key.strip() == "Flags":
                info["avx512"] = sorted(f for f in value.split() if f.startswith("avx512"))
    return info


def ratios(rows: dict[str, dict[str, Any]], samples: dict[str, list[Sample]]
           ) -> dict[str, float]:
    """Shipped ÷ the others: of their percentiles over the keystrokes each ran its model for,
    and paired — the median over keystrokes both answered with the model of shipped's time ÷
    the other's on that same keystroke, moments apart. On a shared machine whose load comes
    and goes during a run, the paired ratio is the one to trust."""
    out: dict[str, float] = {}
    base = rows.get("shipped", {})
    shipped = {s.keystroke: s for s in samples.get("shipped", []) if s.source == "model"}
    for label, row in rows.items():
        if label == "shipped":
            continue
        for key in ("model_p50_ms", "model_p95_ms", "engine_p50_ms"):
            if base.get(key) and row.get(key):
                out[f"shipped/{label} {key}"] = round(base[key] / row[key], 2)
        pairs = [(shipped[s.keystroke], s) for s in samples[label]
                 if s.source == "model" and s.keystroke in shipped and s.ms > 0]
        if pairs:
            out[f"shipped/{label} paired median"] = round(statistics.median(
                a.ms / b.ms for a, b in pairs), 2)
            engine = [a.engine_ms / b.engine_ms for a, b in pairs if b.engine_ms > 0]
            if engine:
                out[f"shipped/{label} paired engine median"] = round(statistics.median(engine),
                                                                     2)
    return out


def plot(contenders: list[Any], path: Path, title: str) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (per_key, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    for c in contenders:
        xs = [s.keystroke for s in c.samples]
        ys = [s.ms for s in c.samples]
        per_key.plot(xs, ys, ".-" if len(xs) < 60 else "-", lw=1, ms=3, label=c.label)
        ordered = sorted(ys)
        cdf.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], where="post",
                 label=c.label)
    per_key.set_xlabel("keystroke")
    per_key.set_ylabel("keystroke → suggestion (ms)")
    per_key.set_yscale("log")
    per_key.set_title("latency per keystroke")
    cdf.set_xscale("log")
    cdf.set_xlabel("keystroke → suggestion (ms)")
    cdf.set_ylabel("share of keystrokes")
    cdf.set_title("CDF")
    for ax in (per_key, cdf):
        ax.grid(alpha=.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    save(plt, fig, path)
    return True


# -- llama.cpp's environment and weights -------------------------------------------------------


def llamacpp_python(given: str | None) -> tuple[Path | None, str]:
    """The Python that has llama-cpp-python: --llamacpp-python, $FIMLSP_LLAMACPP_PYTHON or
    .venv-llamacpp of this checkout; else None and why."""
    named = given or os.environ.get("FIMLSP_LLAMACPP_PYTHON")
    candidate = Path(named) if named else REPO / ".venv-llamacpp" / "bin" / "python"
    if not candidate.is_file():
        return None, f"llama-cpp-python not installed ({candidate} missing; {INSTALL_LLAMACPP})"
    probe = subprocess.run([str(candidate), "-c", "import llama_cpp"], capture_output=True,
                           text=True, timeout=120)
    if probe.returncode != 0:
        return None, f"llama-cpp-python is not importable by {candidate} ({INSTALL_LLAMACPP})"
    return candidate, ""


def gguf_for(model: Path, outtype: str, converter: str | None) -> tuple[Path | None, str]:
    """`model`/gguf/<outtype>.gguf, converted once by llama.cpp's own convert_hf_to_gguf.py
    (--convert-script or $FIMLSP_LLAMACPP_CONVERT; its gguf-py beside it) run by this Python."""
    target = model / "gguf" / f"{outtype}.gguf"
    if target.is_file():
        return target, ""
    script = converter or os.environ.get("FIMLSP_LLAMACPP_CONVERT")
    if not script or not Path(script).is_file():
        return None, (f"no {target} and no converter (pass --convert-script "
                      "llama.cpp/convert_hf_to_gguf.py; llama-cpp-python's source has it under "
                      "vendor/llama.cpp: pip download --no-deps --no-binary :all: "
                      "llama-cpp-python)")
    target.parent.mkdir(parents=True, exist_ok=True)
    gguf_py = Path(script).parent / "gguf-py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(gguf_py), str(Path(script).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, script, str(model), "--outtype", outtype,
                           "--outfile", str(target)], capture_output=True, text=True, env=env)
    if done.returncode != 0 or not target.is_file():
        return None, f"convert_hf_to_gguf.py failed: {done.stderr.strip().splitlines()[-1:]}"
    return target, ""


# -- the command --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fimlsp bench session",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=None,
                        help="the Python file (default: the standard library's argparse.py)")
    parser.add_argument("--function", default=DEFAULT_FUNCTION,
                        help="the function whose body is retyped (the first of that name)")
    parser.add_argument("--keystrokes", type=int, default=130, help="characters typed")
    parser.add_argument("--model", default=None, help="a model directory (default: "
                        "--geometry's full-size random model)")
    parser.add_argument("--geometry", default="tiny_starcoder_py",
                        help="a folder of shared/model-configs: its real config, random "
                        "weights, built once into --cache-dir")
    parser.add_argument("--tiny", action="store_true", help="2 layers × 64 wide (for tests)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "fimlsp" / "bench")
    parser.add_argument("--quantization", default="int8", choices=("int8", "none"),
                        help="int8 (llama.cpp: q8_0) or none (fp32; llama.cpp: f32)")
    parser.add_argument("--window", type=int, default=2048, help="contextWindow, in tokens")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="for every contender")
    parser.add_argument("--time-budget-ms", type=int, default=60_000,
                        help="timeBudgetMs (shipped: 4000, which cuts a cold prefill short and "
                        "leaves the rest to the next keystrokes; long here so every request "
                        "does its whole work)")
    parser.add_argument("--contenders", default="shipped,reuse-off,llamacpp",
                        help="comma-separated: shipped (always), defaults (the same server "
                        "with no window, quantization or threads set), reuse-off, llamacpp")
    parser.add_argument("--reuse-off-every", type=int, default=1,
                        help="ask the reuse-off server only every K-th keystroke")
    parser.add_argument("--llamacpp-python", default=None,
                        help="the Python with llama-cpp-python ($FIMLSP_LLAMACPP_PYTHON)")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="llama.cpp's weights (default: MODEL/gguf/q8_0|f32.gguf)")
    parser.add_argument("--convert-script", default=None,
                        help="llama.cpp's convert_hf_to_gguf.py ($FIMLSP_LLAMACPP_CONVERT)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (needs matplotlib)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.keystrokes < 1 or args.reuse_off_every < 1:
        parser.error("--keystrokes and --reuse-off-every must be at least 1")
    return args


def model_dir(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    from fimlsp_bench.engine import full_size_model

    return Path(full_size_model(args.geometry, args.tiny, args.cache_dir))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark as a JSON-able report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fimlsp_bench.engine import load_average, machine

    source_file = args.file
    if source_file is None:
        import argparse as stdlib_argparse

        source_file = Path(stdlib_argparse.__file__)
    replay_ = retyping(source_file.read_text(encoding="utf-8"), args.function, args.keystrokes)
    model = model_dir(args)
    options = {"quantization": args.quantization, "threads": args.threads,
               "contextWindow": args.window, "maxNewTokens": args.max_new_tokens,
               "timeBudgetMs": args.time_budget_ms}
    wanted = tuple(c.strip() for c in args.contenders.split(",") if c.strip())
    skipped: dict[str, str] = {}
    llama = None
    if "llamacpp" in wanted:
        python, why = llamacpp_python(args.llamacpp_python)
        outtype = "q8_0" if args.quantization == "int8" else "f32"
        gguf, why_gguf = (args.gguf, "") if args.gguf else gguf_for(model, outtype,
                                                                     args.convert_script)
        if python is None or gguf is None:
            skipped["llama.cpp"] = why or why_gguf
        else:
            log = Path(tempfile.mkdtemp(prefix="fimlsp-session-")) / "llamacpp.log"
            # Room for the prompt and what is generated after it.
            llama = LlamaCpp(python, gguf, args.threads, args.window + args.max_new_tokens + 8,
                             log)
    load_before = load_average()
    started = time.perf_counter()
    result = asyncio.run(replay(replay_, str(model), options, llama, args.reuse_off_every,
                                wanted, args.progress))
    import torch

    info = {**machine(torch.device("cpu"), args.threads), **lscpu(),
            "load_average_before": load_before, "load_average_after": load_average()}
    contenders = result["contenders"]
    rows = {c.label: summarize(c.samples, c.cold) for c in contenders}
    for c in contenders:
        if isinstance(c, Server):
            rows[c.label]["server"] = {k: c.stats.get(k) for k in (
                "requests", "answered_from_cache", "cache_share", "errors", "forward",
                "quantization", "dtype", "window") if k in c.stats}
        else:
            rows[c.label]["llama_cpp"] = {k: c.stats.get(k) for k in (
                "version", "system_info", "load_ms")}
            rows[c.label]["gguf"] = str(c.gguf)
    report: dict[str, Any] = {
        "file": str(source_file), "function": replay_.function,
        "keystrokes": len(replay_.keys), "model": str(model), "options": options,
        "reuse_off_every": args.reuse_off_every, "seconds": round(time.perf_counter() - started),
        "machine": info, "skipped": skipped, "mirror_mismatches": result["mirror_mismatches"],
        "settle_s": result.get("settle_s"),
        "results": rows,
        "ratios": ratios(rows, {c.label: c.samples for c in contenders}),
        "samples": {c.label: [asdict(s) for s in c.samples] for c in contenders},
    }
    if args.plot:
        title = (f"{Path(str(model)).name}, {args.quantization}, window {args.window}: "
                 f"{source_file.name} {replay_.function} retyped, {len(replay_.keys)} keystrokes")
        if plot(contenders, args.plot, title):
            report["plot"] = str(args.plot)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['file']} {report['function']}: {report['keystrokes']} keystrokes, "
             f"{report['model']}, {report['options']}",
             f"machine: {report['machine'].get('Model name')}, "
             f"load {report['machine']['load_average_before']} → "
             f"{report['machine']['load_average_after']}",
             "| contender | answered | p50 / p95 / max ms | model keystrokes: p50 / p95 ms | "
             "engine p50 ms | re-evaluated tokens per model keystroke | tokens / forward | "
             "without the model | cold ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, r in report["results"].items():
        lines.append(f"| {label} | {r['answered']} | {r['p50_ms']} / {r['p95_ms']} / "
                     f"{r['max_ms']} | {r['model_p50_ms']} / {r['model_p95_ms']} | "
                     f"{r['engine_p50_ms']} | {r['reevaluated_per_model_keystroke']} | "
                     f"{r['tokens_per_forward']} | {r['without_model']:.0%} | {r['cold_ms']} |")
    for label, why in report["skipped"].items():
        lines.append(f"skipped {label}: {why}")
    lines.append(f"ratios: {report['ratios']}; mirror mismatches: {report['mirror_mismatches']}; "
                 f"waited for background work between turns: {report.get('settle_s')} s")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    report = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    else:
        print(render(report))
    answered = all(r["answered"] > 0 for r in report["results"].values())
    return 0 if answered else 1
