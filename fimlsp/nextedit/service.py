"""One next-edit request: history and document → prompt → the engine's rewrite → TextEdits.

Runs on the model's worker thread (`compute`) with what the event loop captured when the request
came (`Request`: immutable document version, hunks, places viewed), so a keystroke arriving
meanwhile changes nothing under it. The engine is the completer's: the same KV sessions (keyed
`uri + SESSION_SUFFIX`, so the edit prompt's shared beginning stays cached across requests
without evicting the document's completion session), the same cancellation between tokens, the
same remote endpoints. Speculation drafts from the prompt itself: the rewrite mostly copies the
region, which is in the prompt twice, so prompt lookup accepts long drafts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from tokenizers import Tokenizer

from fimlsp.completer import Completer
from fimlsp.context import display_path
from fimlsp.documents import Text
from fimlsp.engine.local import SPECULATE, LocalEngine
from fimlsp.errors import ErrorKind, FimError
from fimlsp.nextedit.edits import text_edits
from fimlsp.nextedit.formats import FORMATS, NextEditFormat, NextEditPrompt, Viewed
from fimlsp.nextedit.history import EditHistory, HunkLines
from fimlsp.nextedit.sweep import CURSOR, build_sweep
from fimlsp.nextedit.zeta import ZETA_REGION_END, build_zeta, zeta_rewrite
from fimlsp.scheduler import CancelToken

SESSION_SUFFIX = "#nextedit"
VIEWED_LINES = 25  # lines of a recently viewed document shown, around where the user was


@dataclass(frozen=True)
class Request:
    """What a next-edit request saw, captured on the event loop."""

    uri: str
    version: int | None
    doc: Text
    cursor: int  # offset in `doc`
    encoding: str
    edits: list[HunkLines]
    original: Text | None
    viewed: list[Viewed]
    paths: dict[str, str]


@dataclass
class Answer:
    uri: str
    version: int | None
    edits: list[types.TextEdit] = field(default_factory=list)
    reason: str = ""  # why there are none, or the engine's stop reason
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    forwards: int = 0  # decode forwards + the prefill's last: tokens per forward = generated / it
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    rewrite: str = ""  # the model's region, for the log and the benchmark

    def log_line(self) -> str:
        tpf = self.generated_tokens / self.forwards if self.forwards else 0.0
        return (f"next edit {self.uri}@{self.version}: edits={len(self.edits)} "
                f"reason={self.reason} prompt={self.prompt_tokens} reused={self.reused_tokens} "
                f"generated={self.generated_tokens} tokens/forward={tpf:.2f} "
                f"prefill={self.prefill_ms:.0f}ms decode={self.decode_ms:.0f}ms "
                f"total={self.total_ms:.0f}ms")


def capture(history: EditHistory, documents: Any, uri: str, version: int | None, doc: Text,
            cursor: int, encoding: str, fmt: NextEditFormat) -> Request:
    """The request's inputs, from the event loop's state now."""
    viewed: list[Viewed] = []
    paths: dict[str, str] = {}
    for other, line in history.recently_viewed(uri)[:fmt.max_viewed]:
        text = documents.get(other)
        if text is None:
            continue
        first = max(0, line - VIEWED_LINES // 2)
        last = min(text.line_count - 1, first + VIEWED_LINES - 1)
        viewed.append(Viewed(display_path(other),
                             text.slice(text.line_start(first), text.line_end(last))))
    edits = history.recent(fmt.max_edits)
    for hunk in edits:
        paths.setdefault(hunk.uri, display_path(hunk.uri))
    return Request(uri, version, doc, cursor, encoding, edits, history.original(uri), viewed,
                   paths)


def format_for(completer: Completer) -> NextEditFormat | None:
    """The next-edit format the loaded model's tokenizer can speak (setting `nextEditFormat`),
    or None: a FIM-only family (no `<|file_sep|>`) has none."""
    name = completer.settings.next_edit_format
    tokenizer = completer.tokenizer
    if name == "off" or tokenizer is None:
        return None
    if name == "auto":  # the preset's own format (Zeta), else Sweep's for Qwen2.5-Coder's
        spec = completer.spec
        name = (spec.preset.next_edit if spec is not None and spec.preset is not None else "") \
            or "sweep"
    fmt = FORMATS[name]
    return fmt if tokenizer.token_to_id(fmt.required_token) is not None else None


def build(tokenizer: Tokenizer, fmt: NextEditFormat, doc: Text, cursor: int, uri: str,
          path: str, edits: list[HunkLines], original: Text | None, viewed: list[Viewed],
          window: int, max_new_tokens: int, paths: dict[str, str] | None = None
          ) -> NextEditPrompt:
    """The prompt in `fmt`'s format."""
    if fmt.name == "zeta":
        return build_zeta(tokenizer, fmt, doc, cursor, path, edits, window, max_new_tokens,
                          paths)
    return build_sweep(tokenizer, fmt, doc, cursor, uri, path, edits, original, viewed, window,
                       max_new_tokens, paths)


def prompt_for(completer: Completer, fmt: NextEditFormat, request: Request) -> NextEditPrompt:
    """The prompt `compute` sends for `request` (the benchmark's oracle reads it too)."""
    return build(completer.tokenizer, fmt, request.doc, request.cursor, _key(request.uri),
                 display_path(request.uri), request.edits, request.original, request.viewed,
                 completer.window, completer.settings.next_edit_max_tokens, request.paths)


def compute(completer: Completer, request: Request, token: CancelToken) -> Answer:
    """The edits the model proposes for `request`; blocking, on the model's worker thread."""
    started = time.perf_counter()
    answer = Answer(request.uri, request.version)
    fmt = format_for(completer)
    if fmt is None or completer.engine is None or completer.tokenizer is None:
        raise FimError(ErrorKind.UNSUPPORTED, f"model {completer.settings.model} has no "
                       "next-edit format (Sweep's next-edit models, Qwen2.5-Coder family)")
    tokenizer = completer.tokenizer
    key = _key(request.uri) + SESSION_SUFFIX  # beside the document's completion session
    prompt = prompt_for(completer, fmt, request)
    stop_ids = {i for s in fmt.stops if (i := tokenizer.token_to_id(s)) is not None}
    engine = completer.engine
    extra: dict[str, Any] = {}
    if isinstance(engine, LocalEngine):
        extra["speculate"] = SPECULATE  # the rewrite copies the prompt: drafts are long
    if fmt.name == "zeta":
        extra["on_token"] = _ends_with_marker(tokenizer, ZETA_REGION_END)
    generation = engine.generate(key, prompt.ids, max_new_tokens=prompt.max_new_tokens,
                                 stop_ids=stop_ids, should_stop=token, temperature=0.0,
                                 **extra)
    answer.prompt_tokens = len(prompt.ids)
    answer.reused_tokens = generation.reused_tokens
    answer.generated_tokens = len(generation.ids)
    answer.forwards = generation.decode_forwards + 1 if generation.ids else 0
    answer.prefill_ms, answer.decode_ms = generation.prefill_ms, generation.decode_ms
    answer.reason = generation.stop_reason
    # A rewrite the model finished (its end token; Zeta's end marker): anything else is cut.
    if generation.stop_reason == "eos" or (fmt.name == "zeta" and
                                           generation.stop_reason == "callback"):
        answer.rewrite = prompt.prefill + tokenizer.decode(generation.ids,
                                                           skip_special_tokens=False)
        rewrite = zeta_rewrite(answer.rewrite) if fmt.name == "zeta" else answer.rewrite
        if rewrite is None:
            answer.reason = "malformed"
        else:
            answer.edits = edits_from_rewrite(prompt.region, prompt.first_line, rewrite,
                                              request.encoding)
            answer.reason = "edits" if answer.edits else "unchanged"
    answer.total_ms = (time.perf_counter() - started) * 1000
    return answer


def _ends_with_marker(tokenizer: Any, marker: str) -> Any:
    """An `on_token` callback that stops the generation once its text ends with `marker` (an
    end marker made of ordinary tokens, which no stop id can name). Decodes only the last few
    tokens each time: the marker is a handful of tokens, whatever the rewrite's length."""
    seen: list[int] = []
    tail = len(marker) + 8  # tokens: more than the marker can take, whatever its merges

    def check(token: int) -> bool:
        seen.append(token)
        return marker in tokenizer.decode(seen[-tail:], skip_special_tokens=False)

    return check


def edits_from_rewrite(region: str, first_line: int, rewrite: str, encoding: str
                       ) -> list[types.TextEdit]:
    """The model's region (\\n line breaks, maybe a cursor marker) as edits of `region`."""
    rewrite = rewrite.replace(CURSOR, "")
    if "<|" in rewrite and any(t in rewrite for t in ("<|file_sep|>", "<|endoftext|>",
                                                     "<|fim_", "<|im_")):
        return []  # a spelled-out control token: not code the user wrote
    # The region ends at a line break (or the file's end); the rewrite's final line break
    # belongs to the format, not to the text.
    if not region.endswith(("\n", "\r")) and rewrite.endswith("\n"):
        rewrite = rewrite[:-1]
    elif region.endswith(("\n", "\r")) and rewrite and not rewrite.endswith("\n"):
        rewrite += "\n"
    return text_edits(region, first_line, rewrite, encoding)


def _key(uri: str) -> str:
    return unquote(uri)  # as the documents and the engine's sessions are keyed
