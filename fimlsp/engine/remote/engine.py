"""`RemoteEngine`: the engine interface over a serving engine's endpoint.

What it keeps is what the endpoint is: the model name to send and the context limit it serves
(asked by a probe, again in the background until it answers), whether it answers (`Health`, for
the status line), and llama.cpp's slot per document. How one request goes over the wire is
`generation.Requests`; the wire formats are `dialects`; HTTP is `client`.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tokenizers import Tokenizer

from fimlsp.config import Settings
from fimlsp.engine import Generation, StopCheck, TokenCallback
from fimlsp.engine.remote.client import Client, Endpoint, Health, Unreachable
from fimlsp.engine.remote.dialects import DEFAULT_ENDPOINTS, DIALECTS, Dialect, Request
from fimlsp.engine.remote.generation import Requests
from fimlsp.errors import ErrorKind, FimError

PROBE_BACKOFF_S = 0.5  # first wait before asking a down engine again what it serves; doubles
PROBE_MAX_WAIT_S = 30.0  # ... up to this


def api_key(settings: Settings, endpoint: Endpoint | None = None) -> str | None:
    """The key from the environment variable `apiKeyEnv` names; never from settings
    themselves, so it is never in a config file, a log line or an echoed option. Neither the
    key nor the name is repeated in a message: a key pasted where the name goes would be.

    A key for a plain `http://` endpoint on another host would cross the network readable:
    refused unless `apiKeyOverHttp` says so (a workspace's settings must not be able to send
    an unrelated secret of the environment to a host of its choosing)."""
    name = settings.api_key_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise FimError(ErrorKind.CONFIG, "the environment variable that apiKeyEnv names is not "
                       "set in the server's environment")
    if endpoint is not None and endpoint.scheme == "http" and not is_loopback(endpoint.host) \
            and not settings.api_key_over_http:
        raise FimError(ErrorKind.CONFIG, f"not sending the API key to {endpoint.host} over "
                       "plain http://, where anyone on the way can read it: use an https:// "
                       "endpoint, or set apiKeyOverHttp to allow it")
    return value


def is_loopback(host: str) -> bool:
    """This machine by name or address (no name is looked up: `localhost` only)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RemoteEngine:
    """The engine interface over one endpoint. Thread-safe: requests for different documents
    run at once (the engine batches them), each on its own connection."""

    def __init__(self, settings: Settings, tokenizer: Tokenizer, stop_texts: list[str]) -> None:
        self._stop_probing = threading.Event()  # first: `__del__` runs after a refused init too
        kind = settings.engine
        if kind not in DIALECTS:
            raise FimError(ErrorKind.CONFIG, f"engine '{kind}' is not a remote engine")
        self.kind = kind
        self.dialect: Dialect = DIALECTS[kind]()
        self.endpoint = Endpoint.parse(settings.endpoint or DEFAULT_ENDPOINTS[kind], kind)
        self.client = Client(self.endpoint, api_key(settings, self.endpoint),
                             settings.connect_timeout_ms / 1000, settings.tls_verify)
        self.tokenizer = tokenizer
        self.stop_texts = stop_texts
        self.served_model = settings.served_model
        self.max_context: int | None = None  # the engine's own limit, when it says
        self.health = Health(f"{kind} endpoint {self.endpoint}")
        self._slots: OrderedDict[str, int] = OrderedDict()  # llama.cpp: document → slot
        self.slot_count = 0
        self._lock = threading.Lock()
        self.model: Any = None  # no torch module here; the completer asks for one's config
        self.probed = False  # the endpoint has said what it serves
        self.learned: Callable[[], None] | None = None  # told when a probe has answered
        self.requests = Requests(self.client, self.dialect, tokenizer, settings.retries,
                                 self.health)

    def __del__(self) -> None:
        self._stop_probing.set()

    # -- what the endpoint serves ------------------------------------------------------------

    def probe(self) -> bool:
        """Asks the endpoint what it serves: the model name to send and its context limit.
        Down is not an error here: the status says so, requests try again, and `keep_probing`
        asks again until it answers. True when it answered."""
        path = self.dialect.models_path()
        if path is None:
            return True
        try:
            answer = self.client.get_json(path, self.client.connect_timeout_s)
        except Unreachable as error:
            self.health.failed(str(error))
            return False
        except FimError as error:
            self.health.failed(error.message)
            return False
        self.health.answered()
        self._learn(answer)
        self.probed = True
        if self.learned is not None:
            self.learned()
        return True

    def keep_probing(self, first_wait_s: float = PROBE_BACKOFF_S) -> None:
        """Probes again in the background, with backoff, until the endpoint answers: an engine
        that was down when the server started is then learned (the model name an Ollama needs,
        the window a smaller engine serves). The thread holds the engine weakly and ends once
        nothing else holds it (the settings changed, a new engine took its place)."""
        if self.probed:
            return
        reference = weakref.ref(self)
        stop = self._stop_probing

        def run() -> None:
            wait = first_wait_s
            while not stop.wait(wait):
                engine = reference()
                if engine is None or engine.probed or engine.probe():
                    return
                del engine
                wait = min(wait * 2, PROBE_MAX_WAIT_S)

        threading.Thread(target=run, daemon=True, name="fimlsp-remote-probe").start()

    def _learn(self, answer: Any) -> None:
        """What a probe's answer says: the model name to send, the window, llama.cpp's slots."""
        models = self.dialect.models(answer) if isinstance(answer, dict) else []
        if self.kind == "llamacpp":
            self.slot_count = int(answer.get("total_slots") or 0)
        if not self.served_model and len(models) == 1 and self.kind in ("openai", "ollama"):
            self.served_model = models[0][0]  # the only one it serves: no name to configure
        for name, limit in models:
            if limit and (not self.served_model or name == self.served_model
                          or self.kind in ("llamacpp", "tgi")):
                self.max_context = int(limit)

    def describe(self) -> dict[str, str]:
        # `device` is what every editor's status line shows: it says when the endpoint is down.
        where = f"{self.kind} at {self.endpoint}"
        if not self.health.ok:
            where += f" ({self.health.status})"
        return {"device": where, "dtype": "remote",
                "quantization": "remote", "forward": "remote", "engine": self.kind,
                "endpoint": str(self.endpoint), "endpoint_status": self.health.status}

    # -- sessions: the engine keeps the caches; we keep only llama.cpp's slot per document ----

    def _slot(self, key: str) -> int | None:
        if self.kind != "llamacpp" or self.slot_count <= 0:
            return None
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                used = set(self._slots.values())
                free = [s for s in range(self.slot_count) if s not in used]
                slot = free[0] if free else self._slots.popitem(last=False)[1]
            self._slots[key] = slot  # most recently used last
            return slot

    def drop_session(self, key: str) -> None:
        with self._lock:
            self._slots.pop(key, None)

    @property
    def session_count(self) -> int:
        return len(self._slots)

    # -- one request ---------------------------------------------------------------------------

    def prefill(self, key: str, prompt: list[int], should_stop: StopCheck = lambda: None
                ) -> Generation:
        """A warm start: one token asked for, so the engine's prefix cache holds the prompt."""
        return self.generate(key, prompt, max_new_tokens=1, stop_ids=set(),
                             should_stop=should_stop)

    def generate(self, key: str, prompt: list[int], *, max_new_tokens: int,
                 stop_ids: set[int], should_stop: StopCheck = lambda: None,
                 temperature: float = 0.0, top_p: float = 1.0,
                 on_token: TokenCallback | None = None) -> Generation:
        """The engine's continuation of `prompt`, stopped exactly where `LocalEngine` would."""
        if not prompt:
            raise ValueError("empty prompt")
        request = Request(prompt, "" if self.dialect.takes_ids else
                          self.tokenizer.decode(prompt, skip_special_tokens=False),
                          max_new_tokens, temperature, top_p, sorted(stop_ids),
                          self.stop_texts, self.served_model, self._slot(key))
        return self.requests.run(request, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                 should_stop=should_stop, on_token=on_token)
