"""`fimlsp bench nextedit`: next edits replayed from a real git history, and the big-file figure.

**Replay** (`--repo GIT_DIR`): for each of the last `--commits` commits of a repository nobody
here wrote (fetched, e.g. /work/.mirror/sweepai+vscode-nes/repo), each changed text file with two
or more hunks is replayed: the parent's text is opened, every hunk but the last is applied as a
didChange would apply it (through `Documents.change` and `EditHistory`, spaced past the coalescing
pause, so each is one hunk of history), and a next edit is asked for at the end of the last one
applied. Reported: exact next-edit rate (the edits applied give the file with the real last hunk
applied), location accuracy (an edit overlaps the real hunk's lines, among answers with edits),
latency p50/p95, tokens per forward (generated tokens / forwards after the prefill), and
`oracle_tokens_per_forward`: the forwards prompt-lookup speculation would need to write the
real next region (what it gives a model that is right; model-free, so real with any weights).

**Big file** (`--big-file`): a 3,000-line file (the standard library's source, joined), a rename
typed on one line, and next-edit requests at the next lines, each after a one-line edit: p50
after the first (which prefills the whole window).

`--geometry tiny|0.5b`: random weights in Qwen2.5-Coder's architecture (tiny: the tests' shrunk
config; 0.5b: Qwen2.5-0.5B's real geometry — 24 layers, 896 wide, 14 heads, 2 KV heads — the size
of sweep-next-edit-0.5B) with the real Qwen2.5 tokenizer; `--model DIR` for real weights. With
random weights the quality figures (exact rate, location) are meaningless — the model never
writes the format's end, so every rewrite is cut at its cap — but the machinery's are real:
prompt building, prefill and cache reuse, latency per token.
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from fimlsp.config import Settings
from fimlsp.documents import Documents
from fimlsp.engine.decoding import draft_tokens
from fimlsp.engine.local import SPECULATE
from fimlsp.nextedit.history import COALESCE_S, EditHistory
from fimlsp.nextedit.service import Answer, build, capture, compute, format_for, prompt_for
from fimlsp.nextedit.zeta import ZETA_REGION_END, ZETA_REGION_START
from fimlsp.scheduler import CancelToken

GEOMETRIES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 96, "intermediate_size": 224, "num_hidden_layers": 2,
             "num_attention_heads": 6, "num_key_value_heads": 1},
    "0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
             "num_attention_heads": 14, "num_key_value_heads": 2},
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def forced_engine(engine: Any) -> Any:
    """`engine` made to write what a right model would: after each forward, the logits of the
    position where the expected text goes on are raised for its next token, so greedy decoding
    (and prompt-lookup's verification of drafts) writes `target` and then its end. Everything
    else is the real engine: the same forwards, cache reuse, drafts and crops, at their real
    cost — only the choice of token is the oracle's. For the latency of a model that is right,
    with random weights (a random model never stops, so its time says nothing about a real
    answer's). Set `engine.expected = (prompt ids, target ids)` before each request."""
    from fimlsp.engine.local import LocalEngine

    class Forced(type(engine)):  # type: ignore[misc]
        expected: tuple[list[int], list[int]] = ([], [])

        def _forward_on(self, session: Any, ids: list[int], all_logits: bool) -> Any:
            start = len(session.ids)
            logits = LocalEngine._forward_on(self, session, ids, all_logits)
            rows = logits if all_logits else logits[None]  # [rows, vocab]
            first = start + len(ids) - len(rows)  # index into session.ids of the first row's
            prompt, target = self.expected
            for r in range(len(rows)):
                written = session.ids[len(prompt):first + r + 1]
                if session.ids[:len(prompt)] == prompt and len(written) < len(target) \
                        and written == target[:len(written)]:
                    rows[r, target[len(written)]] = rows[r].max() + 1.0
            return logits

    engine.__class__ = Forced
    return engine


def rewrite_ids(completer: Any, fmt: Any, prompt: Any, region: str) -> list[int]:
    """The tokens a model writes to rewrite the region as `region`, end included."""
    wanted = region.replace("\r\n", "\n")[len(prompt.prefill):]
    if fmt.name == "zeta":  # the answer repeats the start marker and ends at the end marker
        return completer.tokenizer.encode(f"{ZETA_REGION_START}\n{wanted}\n{ZETA_REGION_END}",
                                          add_special_tokens=False).ids
    end_id = completer.tokenizer.token_to_id(fmt.file_sep)
    return [*completer.tokenizer.encode(wanted, add_special_tokens=False).ids, end_id]


def completer_for(args: argparse.Namespace) -> Any:
    """A Completer holding a Qwen2 model: real weights from --model, else random ones."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from fimlsp.completer import Completer
    from fimlsp.engine.local import LocalEngine
    from fimlsp.models import load_tokenizer
    from fimlsp.tools.tiny import shared_dir

    settings = Settings(device="cpu", next_edit_max_tokens=args.max_new_tokens)
    completer = Completer(settings)
    if args.model:
        settings = settings.replace(model=args.model, template="qwen2.5-coder",
                                    quantization=args.quantization)
        completer = Completer(settings)
        completer.load()
    else:
        shared = shared_dir()
        if shared is None:
            raise SystemExit("bench nextedit: shared/ (the Qwen2.5 tokenizer) is not found")
        config = AutoConfig.for_model(
            model_type="qwen2", vocab_size=151936, max_position_embeddings=32768,
            rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
            use_sliding_window=False, hidden_act="silu", initializer_range=0.1,
            bos_token_id=151643, eos_token_id=151643, **GEOMETRIES[args.geometry])
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        if args.quantization == "int8":  # what `quantization: auto` picks on the CPU
            from fimlsp.engine.checkpoint import quantize_int8

            model = quantize_int8(model)
        completer.tokenizer = load_tokenizer(str(shared / "tokenizers" / "qwen2.5-coder"))
        completer.engine = LocalEngine(model, torch.device("cpu"))
        completer.engine.quantization = args.quantization
    completer.window = min(args.window, completer.window or args.window)
    if format_for(completer) is None:
        raise SystemExit("bench nextedit: the model has no next-edit format")
    return completer


def _hunks(old: str, new: str) -> list[tuple[int, int, str]]:
    """(start, end, text) character spans of `old` that became `text`, by line, in order."""
    old_lines, new_lines = old.splitlines(True), new.splitlines(True)
    starts = [0]
    for line in old_lines:
        starts.append(starts[-1] + len(line))
    out = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.append((starts[i1], starts[i2], "".join(new_lines[j1:j2])))
    return out


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True, text=True,
                          check=True).stdout


def cases(repo: str, commits: int, max_chars: int) -> list[tuple[str, str, str]]:
    """(path, parent text, child text) of text files changed with 2+ hunks."""
    out = []
    for sha in _git(repo, "rev-list", "--no-merges", f"-{commits}", "HEAD").split():
        try:
            names = _git(repo, "diff", "--name-only", "--diff-filter=M", f"{sha}^", sha).split()
        except subprocess.CalledProcessError:
            continue  # the root commit: no parent to diff against
        for name in names:
            try:
                old = _git(repo, "show", f"{sha}^:{name}")
                new = _git(repo, "show", f"{sha}:{name}")
            except (subprocess.CalledProcessError, UnicodeDecodeError):
                continue
            if "\x00" in old or len(old) > max_chars or len(_hunks(old, new)) < 2:
                continue
            out.append((name, old, new))
    return out


def oracle_forwards(context: list[int], target: list[int], k: int) -> int:
    """Forwards that greedy decoding with prompt-lookup drafts of `k` tokens needs to write
    `target` after `context`, for a model that writes exactly `target`: each forward yields its
    own token plus the drafts that match. What speculation can give a model that is right."""
    context, done, forwards = list(context), 0, 0
    while done < len(target):
        forwards += 1
        context.append(target[done])
        done += 1
        for token in draft_tokens(context, min(k, len(target) - done)):
            if token != target[done]:
                break
            context.append(token)
            done += 1
    return forwards


def replay(completer: Any, path: str, old: str, new: str
           ) -> tuple[Answer, bool, bool, tuple[int, int]]:
    """(answer, exact, located) for one file's change: all hunks but the last as history."""
    uri = f"file:///replay/{path}"
    clock = Clock()
    documents, history = Documents(), EditHistory(clock)
    documents.open(uri, old)
    history.open(uri, 1)
    hunks = _hunks(old, new)
    shift, cursor = 0, 0
    for start, end, text in hunks[:-1]:
        before = documents.get(uri)
        assert before is not None
        after = before.replace(start + shift, end + shift, text)
        documents._texts[uri] = after  # as Documents.change leaves it
        history.record(uri, before, after, start + shift, end + shift, len(text))
        clock.now += COALESCE_S * 2
        shift += len(text) - (end - start)
        cursor = start + shift  # the end of what was just typed
    doc = documents.get(uri)
    assert doc is not None
    request = capture(history, documents, uri, 1, doc, min(cursor, len(doc)), "utf-32",
                      format_for(completer))
    answer = compute(completer, request, CancelToken())
    start, end, text = hunks[-1]
    current = str(doc)
    truth = current[:start + shift] + text + current[end + shift:]
    # The rewrite a right model would write, and the forwards speculation would need for it.
    fmt = format_for(completer)
    prompt = build(completer.tokenizer, fmt, doc, request.cursor, uri, path, request.edits,
                   request.original, request.viewed, completer.window,
                   completer.settings.next_edit_max_tokens, request.paths)
    low, high = prompt.region_start, prompt.region_start + len(prompt.region)
    region = prompt.region
    if low <= start + shift and end + shift <= high:
        region = truth[low:high + len(text) - (end - start)]
    target = rewrite_ids(completer, fmt, prompt, region)
    oracle = (len(target), oracle_forwards(prompt.ids, target, SPECULATE))
    got = applied(doc, answer)
    first, last = doc.line_of(start + shift), doc.line_of(end + shift)
    located = any(e.range.start.line <= last and e.range.end.line >= first
                  for e in answer.edits)
    return answer, bool(answer.edits) and got == truth, located, oracle


def applied(doc: Any, answer: Answer) -> str:
    """`doc`'s text with the answer's edits applied, as an editor applies them (back to front)."""
    text = str(doc)
    spans = [(doc.offset(e.range.start.line, e.range.start.character, "utf-32"),
              doc.offset(e.range.end.line, e.range.end.character, "utf-32"), e.new_text)
             for e in answer.edits]
    for a, b, new in sorted(spans, reverse=True):
        text = text[:a] + new + text[b:]
    return text


def _summary(answers: list[Answer]) -> dict[str, Any]:
    totals = [a.total_ms for a in answers]
    forwards = sum(a.forwards for a in answers)
    return {"requests": len(answers),
            "p50_ms": round(statistics.median(totals), 1) if totals else None,
            "p95_ms": round(sorted(totals)[int(0.95 * (len(totals) - 1))], 1) if totals else None,
            "prefill_ms_p50": round(statistics.median(a.prefill_ms for a in answers), 1),
            "decode_ms_p50": round(statistics.median(a.decode_ms for a in answers), 1),
            "prompt_tokens_p50": statistics.median(a.prompt_tokens for a in answers),
            "reused_tokens_p50": statistics.median(a.reused_tokens for a in answers),
            "generated_tokens_p50": statistics.median(a.generated_tokens for a in answers),
            "tokens_per_forward": round(sum(a.generated_tokens for a in answers)
                                        / forwards, 2) if forwards else None}


def big_file(completer: Any, lines: int, requests: int, oracle: bool = False) -> dict[str, Any]:
    """A comment appended to one line of a `lines`-line file, then next edits asked line after
    line, each after the same comment on the line before. With `oracle`, the model writes what
    that pattern says comes next (the same comment on the next line; `forced_engine`), and the
    edits it answers must turn the document into exactly that."""
    import inspect
    import typing

    source = ""
    for module in (typing, argparse, difflib, statistics, json, subprocess):
        source += inspect.getsource(module)
    text = "".join(source.splitlines(True)[:lines])
    uri, comment = "file:///big/module.py", "  # edited"
    clock = Clock()
    documents, history = Documents(), EditHistory(clock)
    documents.open(uri, text)
    history.open(uri, 1)
    fmt = format_for(completer)
    if oracle:
        forced_engine(completer.engine)
    answers, exact = [], 0
    line = lines // 2
    for n in range(requests):
        before = documents.get(uri)
        assert before is not None
        at = before.line_end(line + n)
        after = before.replace(at, at, comment)
        documents._texts[uri] = after
        history.record(uri, before, after, at, at, len(comment))
        clock.now += 1
        request = capture(history, documents, uri, n + 2, after, at + len(comment), "utf-32", fmt)
        if oracle:
            following = after.line_end(line + n + 1)
            truth = str(after)[:following] + comment + str(after)[following:]
            prompt = prompt_for(completer, fmt, request)
            low, high = prompt.region_start, prompt.region_start + len(prompt.region)
            assert low <= following <= high, "the next line is outside the editable region"
            region = truth[low:high + len(comment)]
            completer.engine.expected = (prompt.ids, rewrite_ids(completer, fmt, prompt, region))
        answer = compute(completer, request, CancelToken())
        answers.append(answer)
        if oracle:
            exact += applied(after, answer) == truth
        print(answer.log_line(), file=sys.stderr)
    report = {"first": _summary(answers[:1]), "after_first": _summary(answers[1:]),
              "lines": text.count("\n")}
    if oracle:
        report["oracle_exact"] = f"{exact}/{len(answers)}"
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench nextedit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", help="a git directory whose history is replayed")
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--max-cases", type=int, default=40)
    parser.add_argument("--max-chars", type=int, default=60_000)
    parser.add_argument("--big-file", action="store_true", help="the 3,000-line figure")
    parser.add_argument("--oracle", action="store_true",
                        help="big file: the model writes what a right one would (forced "
                        "tokens, real forwards), so its time is a real answer's")
    parser.add_argument("--quantization", choices=("int8", "none"), default="int8",
                        help="int8: what `quantization: auto` picks on the CPU")
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="tiny")
    parser.add_argument("--model", help="a Qwen2.5-family next-edit model directory instead")
    parser.add_argument("--window", type=int, default=8192)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    completer = completer_for(args)
    report: dict[str, Any] = {"geometry": args.model or args.geometry, "window": completer.window,
                              "quantization": args.quantization,
                              "threads": torch.get_num_threads(),
                              "load_s": round(time.perf_counter() - started, 1),
                              "random_weights": not args.model}
    if args.repo:
        found = cases(args.repo, args.commits, args.max_chars)[:args.max_cases]
        answers, exact, located, with_edits, oracle = [], 0, 0, 0, [0, 0]
        for path, old, new in found:
            answer, is_exact, is_located, (tokens, forwards) = replay(completer, path, old, new)
            oracle[0] += tokens
            oracle[1] += forwards
            answers.append(answer)
            exact += is_exact
            located += is_located
            with_edits += bool(answer.edits)
            print(answer.log_line(), file=sys.stderr)
        report["replay"] = {"repo": args.repo, "cases": len(found),
                            "exact_rate": round(exact / len(found), 3) if found else None,
                            "answers_with_edits": with_edits,
                            "location_accuracy": round(located / with_edits, 3)
                            if with_edits else None,
                            "oracle_tokens_per_forward": round(oracle[0] / oracle[1], 2)
                            if oracle[1] else None,
                            **(_summary(answers) if answers else {})}
    if args.big_file:
        report["big_file"] = big_file(completer, args.lines, args.requests, args.oracle)
    print(json.dumps(report, indent=2))
    return 0
