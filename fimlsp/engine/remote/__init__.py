"""A serving engine elsewhere (vLLM, llama.cpp server, TGI, Ollama) behind the engine interface.

Everything that makes a suggestion good stays in this process: the prompt is built with the
model's own tokenizer into its exact window, typing-through and recent answers answer without
a request, and the completion policy stops generation. Only the forward passes move. So this
engine takes the same prompt ids as `LocalEngine`, streams the engine's tokens into the same
`on_token` callback, and closes the stream the moment the policy, a newer keystroke or the time
budget says stop; a serving engine that sees its client go aborts the request (vLLM does).

KV reuse across keystrokes becomes the engine's: vLLM's automatic prefix caching, llama.cpp's
`cache_prompt` with one slot per document. Our SPM prompts and sticky windows change only their
last few tokens per keystroke, which is what makes those caches hit; `reused_tokens` is what the
engine reports it took from its cache.

Top-down: `engine` (`RemoteEngine`: what the endpoint serves, its health, llama.cpp's slots) →
`generation` (one request: retries, the stream read through the per-token checks) → `client`
(HTTP: connect, POST, read lines, stop from another thread) and `dialects` (each engine's
request body and events).

HTTP is `http.client`, not a client package (httpx was the candidate: connect/read/write/pool
timeouts and streaming built in). Measured against httpx 0.29 with a throwaway script (issue 22;
not shipped): 300 requests each streaming 33 SSE events from a chunked loopback stand-in in
another process, Python 3.11, on a shared 2-core machine, so the absolute numbers are loose; the
order held in every round.

- Latency, median: the first event after 0.5–0.9 ms here, 2.3–3.7 ms with httpx over a pooled
  connection; all 33 events after 0.8–1.5 ms, 4.2 ms with httpx. (A new `httpx.Client` per
  request costs ~55 ms: it loads a CA bundle.)
- Start-up: importing httpx adds ~120 ms to a process that has http.client, ssl and json.
- Stopping: a request ends on a newer keystroke or the time budget, not on a timeout, so the
  timeouts do not replace the watcher (`client.Watch`). A read blocked on a silent stream (the
  engine still prefilling) did not return within 3 s of `response.close()` or `client.close()`
  from another thread, and the stand-in never saw the client go: the engine would go on with
  work nobody waits for. Only shutting the socket down stopped it (0.3 ms), reached in httpx
  through httpcore's `network_stream` extension: the same watcher, on a less direct path.

So httpx would keep the watcher and add a dependency, slower streams and a slower start.
"""

from fimlsp.engine.remote.client import Endpoint
from fimlsp.engine.remote.engine import RemoteEngine, api_key, is_loopback

__all__ = ["Endpoint", "RemoteEngine", "api_key", "is_loopback"]
