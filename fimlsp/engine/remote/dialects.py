"""The completion APIs of the serving engines, one `Dialect` each: what a request's body says
and what a streamed event means, in the engine interface's terms (`Request` in, `Chunk` out).

Only wire formats live here: no socket, no retry, no policy. What each engine needs to sample as
the in-process engine does (greedy that stays greedy, its own stop tokens) is written where its
body is built, because that is where an engine's defaults would otherwise leak in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# Where each engine listens when started with its defaults, for an `endpoint` left unset.
DEFAULT_ENDPOINTS = {
    "openai": "http://127.0.0.1:8000/v1",  # vLLM's `vllm serve`
    "llamacpp": "http://127.0.0.1:8080",  # llama.cpp's `llama-server`
    "tgi": "http://127.0.0.1:8080",  # text-generation-launcher's port in its docker examples
    "ollama": "http://127.0.0.1:11434",
}


@dataclass
class Chunk:
    """One streamed event, in the terms of the engine interface."""

    ids: list[int] | None = None  # the tokens it carries, when the API gives ids
    text: str = ""  # ... else their text, which we encode
    finish: str | None = None  # the engine's reason when it stopped by itself
    cached: int | None = None  # prompt tokens the engine took from its cache, once it says
    served: str | None = None  # the model name the engine answered with


@dataclass
class Request:
    """What every API needs to hear about one generation."""

    ids: list[int]
    text: str  # the same prompt decoded, for the APIs that take only text
    max_new_tokens: int
    temperature: float
    top_p: float
    stop_ids: list[int]
    stop_texts: list[str]
    model: str | None  # the engine's name for the model, when it wants one
    slot: int | None = None  # llama.cpp: the document's slot


class Dialect(Protocol):
    """How one serving engine's completion API is spoken."""

    name: str
    takes_ids: bool  # False: the prompt is sent as text (it costs exactness; docs/deploy.md)
    lines: str  # "sse" or "ndjson"

    def path(self) -> str: ...

    def body(self, request: Request) -> dict[str, Any]: ...

    def parse(self, event: dict[str, Any]) -> Chunk: ...

    def models_path(self) -> str | None: ...

    def models(self, answer: Any) -> list[tuple[str, int | None]]: ...


def error_text(event: dict[str, Any]) -> str | None:
    """The message of an error event, in any of the shapes these APIs use."""
    error = event.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


class OpenAI:
    """`/v1/completions` as vLLM serves it: token-id prompts, ids back with `return_token_ids`,
    the prompt's cached tokens in the usage chunk (with `--enable-prompt-tokens-details`)."""

    name = "openai"
    takes_ids = True
    lines = "sse"

    def path(self) -> str:
        return "/completions"

    def body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": r.model, "prompt": r.ids, "max_tokens": r.max_new_tokens,
            "temperature": r.temperature, "top_p": r.top_p, "stream": True,
            "stream_options": {"include_usage": True}, "return_token_ids": True,
            # The engine ends at the template's stop tokens itself (no tokens wasted after one),
            # and keeps them out of the text; the ids come back either way.
            "stop_token_ids": r.stop_ids, "skip_special_tokens": False,
        }
        return body

    def parse(self, event: dict[str, Any]) -> Chunk:
        chunk = Chunk(served=event.get("model"))
        choices = event.get("choices") or []
        if choices:
            choice = choices[0]
            ids = choice.get("token_ids")
            chunk.ids = list(ids) if isinstance(ids, list) else None
            chunk.text = choice.get("text") or ""
            chunk.finish = choice.get("finish_reason")
        usage = event.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        if isinstance(details, dict) and details.get("cached_tokens") is not None:
            chunk.cached = int(details["cached_tokens"])
        return chunk

    def models_path(self) -> str | None:
        return "/models"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        return [(m.get("id", ""), m.get("max_model_len")) for m in answer.get("data", [])]


class LlamaCpp:
    """llama.cpp server's native `/completion`: token-array prompts, `cache_prompt` and one
    slot per document (`id_slot`), token ids back with `return_tokens`."""

    name = "llamacpp"
    takes_ids = True
    lines = "sse"

    def path(self) -> str:
        return "/completion"

    def body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": r.ids, "n_predict": r.max_new_tokens, "stream": True,
            "cache_prompt": True, "return_tokens": True, "stop": r.stop_texts,
            "temperature": r.temperature, "top_p": r.top_p,
            # Sample as the in-process engine does (temperature and top-p only): older servers
            # default to repeat_penalty 1.1, which runs before top-k and changes even greedy
            # output; top_k 0 and min_p 0 switch those samplers off.
            "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0,
            # Timings (with cache_n) in every event, not only the last: the policy usually
            # closes the stream before the last one comes.
            "timings_per_token": True,
        }
        if r.temperature <= 0:
            body["top_k"] = 1  # greedy, whatever the server's sampler chain
        if r.slot is not None:
            body["id_slot"] = r.slot
        return body

    def parse(self, event: dict[str, Any]) -> Chunk:
        ids = event.get("tokens")
        chunk = Chunk(ids=list(ids) if isinstance(ids, list) else None,
                      text=event.get("content") or "")
        if event.get("stop"):
            chunk.finish = event.get("stop_type") or "stop"
        timings = event.get("timings") or {}
        if timings.get("cache_n") is not None:
            chunk.cached = int(timings["cache_n"])
        return chunk

    def models_path(self) -> str | None:
        return "/props"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        settings = answer.get("default_generation_settings") or {}
        name = answer.get("model_path") or settings.get("model") or ""
        return [(str(name), settings.get("n_ctx"))]


class TGI:
    """Text Generation Inference's `/generate_stream`: a text prompt, token ids back."""

    name = "tgi"
    takes_ids = False
    lines = "sse"

    def path(self) -> str:
        return "/generate_stream"

    def body(self, r: Request) -> dict[str, Any]:
        parameters: dict[str, Any] = {"max_new_tokens": r.max_new_tokens, "details": True,
                                      "stop": r.stop_texts[:4]}  # TGI takes at most 4
        if r.temperature > 0:
            parameters.update(do_sample=True, temperature=r.temperature)
            if r.top_p < 1.0:
                parameters["top_p"] = r.top_p
        else:
            parameters["do_sample"] = False
        return {"inputs": r.text, "parameters": parameters}

    def parse(self, event: dict[str, Any]) -> Chunk:
        token = event.get("token") or {}
        chunk = Chunk(ids=[int(token["id"])] if "id" in token else [],
                      text=token.get("text") or "")
        details = event.get("details")
        if isinstance(details, dict):
            chunk.finish = details.get("finish_reason") or "stop"
        elif event.get("generated_text") is not None:
            chunk.finish = "stop"
        return chunk

    def models_path(self) -> str | None:
        return "/info"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        limit = answer.get("max_input_tokens") or answer.get("max_input_length")  # TGI < 2.1
        return [(str(answer.get("model_id", "")), limit)]


class Ollama:
    """Ollama's `/api/generate` in raw mode (our prompt as it is, no template of its own):
    a text prompt, text back as NDJSON."""

    name = "ollama"
    takes_ids = False
    lines = "ndjson"

    def path(self) -> str:
        return "/api/generate"

    def body(self, r: Request) -> dict[str, Any]:
        # Ollama's defaults (top_k 40, repeat_penalty 1.1) would change even greedy output.
        options: dict[str, Any] = {"num_predict": r.max_new_tokens, "temperature": r.temperature,
                                   "top_p": r.top_p, "stop": r.stop_texts, "top_k": 0,
                                   "repeat_penalty": 1.0}
        if r.temperature <= 0:
            options["top_k"] = 1
        return {"model": r.model, "prompt": r.text, "raw": True, "stream": True,
                "options": options}

    def parse(self, event: dict[str, Any]) -> Chunk:
        chunk = Chunk(text=event.get("response") or "", served=event.get("model"))
        if event.get("done"):
            chunk.finish = event.get("done_reason") or "stop"
        return chunk

    def models_path(self) -> str | None:
        return "/api/tags"

    def models(self, answer: Any) -> list[tuple[str, int | None]]:
        return [(str(m.get("name", "")), None) for m in answer.get("models", [])]


DIALECTS: dict[str, type] = {"openai": OpenAI, "llamacpp": LlamaCpp, "tgi": TGI,
                             "ollama": Ollama}
