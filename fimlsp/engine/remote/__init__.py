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

HTTP is `http.client`, not a client package:
HTTP_DECISION
"""

from fimlsp.engine.remote.client import Endpoint
from fimlsp.engine.remote.engine import RemoteEngine, api_key, is_loopback

__all__ = ["Endpoint", "RemoteEngine", "api_key", "is_loopback"]
