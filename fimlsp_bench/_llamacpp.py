"""llama.cpp (through llama-cpp-python) as a contender of `fimlsp bench session`.

Run as a script by the Python of the environment that has llama-cpp-python (it compiles for
~25 minutes, so it lives outside this repository and is never a dependency of fimlsp); it imports
nothing of fimlsp. One request per line on stdin, `{"ids": [...], "n": N}`: the prompt token ids
fimlsp's server built for a keystroke, and how many tokens fimlsp generated for it. One answer
per line on stdout: the N greedy tokens and the time they took.

`Llama.generate` keeps its KV cache between calls and, given a prompt, keeps the longest common
prefix with what it holds and evaluates only the rest — the same reuse fimlsp's engine does, so
both re-evaluate the same tokens per keystroke. Generation ignores end-of-text (fimlsp's count
already stops where fimlsp stopped), so both run the same number of forwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def reused_prefix(held: list[int], ids: list[int]) -> int:
    """What `Llama.generate` keeps of its cache for `ids`: the common prefix, less one token
    when it covers the whole prompt (one token is fed again to get fresh logits)."""
    n = 0
    for a, b in zip(held, ids, strict=False):
        if a != b:
            break
        n += 1
    return n - 1 if n == len(ids) and n > 0 else n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=args.n_ctx, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    ready = {"ready": True, "load_ms": round((time.perf_counter() - started) * 1000, 1),
             "version": llama_cpp.__version__,
             "system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        ids, n = list(request["ids"]), max(1, int(request["n"]))
        reused = reused_prefix(list(llm._input_ids), ids) if llm.n_tokens else 0
        out: list[int] = []
        first_ms = None
        started = time.perf_counter()
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0):
            out.append(int(token))
            if first_ms is None:
                first_ms = (time.perf_counter() - started) * 1000
            if len(out) >= n:
                break
        total = (time.perf_counter() - started) * 1000
        print(json.dumps({"ids": out, "prompt": len(ids), "reused": reused,
                          "first_ms": round(first_ms or 0.0, 2), "ms": round(total, 2)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
