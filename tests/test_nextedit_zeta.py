"""Zeta's next-edit prompt (fimlsp/nextedit/zeta.py: `build_zeta`, `zeta_rewrite`): the
format Zed's model was trained on, exact in tokens against the real Qwen2.5-Coder tokenizer,
within the window on whole lines; and the real server over stdio speaking it with a tiny
random-weight Qwen2 (its rewrite is meaningless: the answer's shape and the prompt are checked).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rawlsp import RawServer, notification
from test_nextedit_history import SOURCE, URI, Clock, edit
from test_nextedit_lsp import logs, ready
from tokenizers import Tokenizer

from fimlsp.documents import Documents, Text
from fimlsp.errors import FimError
from fimlsp.models import PRESETS, load_tokenizer
from fimlsp.nextedit.formats import FORMATS
from fimlsp.nextedit.history import EditHistory
from fimlsp.nextedit.zeta import build_zeta, zeta_rewrite

HEAD = ("### Instruction:\nYou are a code completion assistant and your task is to analyze user "
        "edits and then rewrite an excerpt that the user provides, suggesting the appropriate "
        "edits within the excerpt, taking into account the cursor location.\n\n"
        "### User Edits:\n\n")


@pytest.fixture(scope="module")
def qwen(shared: Path) -> tuple[Tokenizer, Tokenizer]:
    """Our tokenizer and the plain one: the reference for "exact in tokens"."""
    folder = shared / "tokenizers" / "qwen2.5-coder"
    return load_tokenizer(str(folder)), Tokenizer.from_file(str(folder / "tokenizer.json"))


def renamed() -> tuple[Documents, EditHistory]:
    documents, history = Documents(), EditHistory(Clock())
    documents.open(URI, SOURCE)
    history.open(URI, 1)
    edit(documents, history, 0, 9, 10, "width")
    return documents, history


def test_zeta_prompt_is_their_format_and_exact_in_tokens(
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    documents, history = renamed()
    doc = documents.get(URI)
    assert doc is not None
    prompt = build_zeta(qwen[0], FORMATS["zeta"], doc, doc.offset(0, 14), "app.py",
                        history.recent(16), 4096, 384, {URI: "app.py"})
    event = ('User edited "app.py":\n```diff\n@@ -1,4 +1,4 @@\n-def area(w, h):\n'
             '+def area(width, h):\n     return w * h\n \n \n\n```')
    excerpt = ("```app.py\n<|start_of_file|>\n<|editable_region_start|>\n"
               "def area(width<|user_cursor_is_here|>, h):\n    return w * h\n\n\n"
               "print(area(2, 3))\nprint(area(4, 5))\n\n<|editable_region_end|>\n```")
    assert prompt.text == (f"{HEAD}{event}\n\n### User Excerpt:\n\n{excerpt}"
                           "\n\n### Response:\n\n")
    assert qwen[1].encode(prompt.text, add_special_tokens=False).ids == prompt.ids
    assert prompt.region == documents.text(URI) and prompt.first_line == 0
    assert prompt.prefill == "" and prompt.parts["edits_shown"] == 1


def test_a_long_file_keeps_the_region_whole_and_fits_the_window(
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    """Region and context grow by whole lines, one above and one below in turn (Zed's
    estimate: bytes / 3); in a small window the context goes first, the region never."""
    lines = [f"value_{i} = compute({i})\n" for i in range(3000)]
    doc = Text("".join(lines))
    cursor = doc.offset(1500, 3)
    roomy = build_zeta(qwen[0], FORMATS["zeta"], doc, cursor, "big.py", [], 8192, 384)
    region = roomy.region
    assert region.startswith("value_") and region.endswith(")")  # whole lines, no break
    first, count = roomy.first_line, region.count("\n") + 1
    assert first < 1500 < first + count and abs((1500 - first) - (first + count - 1 - 1500)) <= 1
    # The lines beside the cursor's cost 350 estimated tokens (bytes / 3, line breaks not
    # counted), the last line taken overdrawing it by less than a line.
    spent = sum(len(x.encode()) // 3 for i, x in enumerate(region.split("\n"))
                if first + i != 1500)
    assert 350 <= spent < 350 + 9, spent
    assert roomy.parts["context_lines"] > 0
    assert qwen[1].encode(roomy.text, add_special_tokens=False).ids == roomy.ids
    window = len(roomy.ids) + roomy.max_new_tokens - 40
    tight = build_zeta(qwen[0], FORMATS["zeta"], doc, cursor, "big.py", [], window, 384)
    assert tight.region == region and len(tight.ids) + tight.max_new_tokens <= window
    assert tight.parts["context_lines"] < roomy.parts["context_lines"]
    assert qwen[1].encode(tight.text, add_special_tokens=False).ids == tight.ids
    with pytest.raises(FimError, match="window leaves"):
        build_zeta(qwen[0], FORMATS["zeta"], doc, cursor, "big.py", [], 400, 384)


def test_old_events_go_first_when_the_window_is_short(
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    documents, history = renamed()
    edit(documents, history, 4, 6, 10, "volume")  # another place: a second hunk
    doc = documents.get(URI)
    assert doc is not None
    both = build_zeta(qwen[0], FORMATS["zeta"], doc, doc.offset(4, 12), "app.py",
                      history.recent(16), 4096, 384)
    assert both.parts["edits_shown"] == 2
    assert both.text.index("def area(width") < both.text.index("print(volume")  # oldest first
    window = len(both.ids) + both.max_new_tokens - 5
    one = build_zeta(qwen[0], FORMATS["zeta"], doc, doc.offset(4, 12), "app.py",
                     history.recent(16), window, 384)
    assert one.parts["edits_shown"] == 1 and "-print(area(2, 3))" in one.text
    assert qwen[1].encode(one.text, add_special_tokens=False).ids == one.ids


def test_a_document_that_spells_a_marker_gets_no_next_edit(
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    doc = Text("x = 1  # <|editable_region_end|>\ny = 2\n")
    with pytest.raises(FimError, match="markers"):
        build_zeta(qwen[0], FORMATS["zeta"], doc, 3, "m.py", [], 4096, 384)


def test_the_rewrite_is_read_as_zed_reads_it() -> None:
    answer = ("<|editable_region_start|>\ndef area(width<|user_cursor_is_here|>, h):\n"
              "    return width * h\n<|editable_region_end|>")
    assert zeta_rewrite(answer) == "def area(width, h):\n    return width * h"
    assert zeta_rewrite("<|editable_region_start|>\n\n<|editable_region_end|>") == ""
    assert zeta_rewrite("def area(w, h):") is None  # no markers: not an answer
    assert zeta_rewrite("<|editable_region_start|>\nx\n<|editable_region_start|>\n"
                        "<|editable_region_end|>") is None
    assert zeta_rewrite("<|editable_region_start|>\nx<|editable_region_end|>") is None


def test_the_zeta_preset_picks_its_format() -> None:
    assert PRESETS["zeta"].hub_id == "zed-industries/zeta"
    assert PRESETS["zeta"].next_edit == "zeta" and PRESETS["zeta"].template == "qwen2.5-coder"


SHAPES = ("class Box:\n    def __init__(self, w, h):\n        self.w = w\n        self.h = h\n\n"
          "    def area(self):\n        return self.w * self.h\n")
SHAPES_URI = "file:///work/shapes.py"


@pytest.mark.slow
def test_the_server_prompts_zeta_and_answers_copilots_shape(
        tmp_path_factory: pytest.TempPathFactory, shared: Path,
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    """`--next-edit-format zeta` with a tiny random-weight Qwen2: the request is answered in
    Copilot's shape for the version asked about, and the model was given exactly the Zeta
    prompt built from the same history (its token count is in the request's log line)."""
    from test_engine_archs import build_arch_model

    model = build_arch_model(tmp_path_factory.mktemp("tiny-qwen2-zeta"), "qwen2", shared)
    with RawServer(str(model), "--time-budget-ms", "60000", "--next-edit-format",
                   "zeta") as server:
        ready(server)
        server.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": SHAPES_URI, "languageId": "python", "version": 1, "text": SHAPES}}))
        change = {"range": {"start": {"line": 1, "character": 26},
                            "end": {"line": 1, "character": 27}}, "text": "height"}
        server.send(notification("textDocument/didChange", {
            "textDocument": {"uri": SHAPES_URI, "version": 2}, "contentChanges": [change]}))
        answer = server.ask("ne", "textDocument/copilotInlineEdit", {
            "textDocument": {"uri": SHAPES_URI, "version": 2},
            "position": {"line": 1, "character": 32}})
        for e in answer["result"]["edits"]:
            assert e["textDocument"] == {"uri": SHAPES_URI, "version": 2}
            assert set(e) == {"text", "range", "textDocument", "command"}
        (line,) = server.wait_for(lambda: logs(server, r"^next edit .*@2: edits="),
                                  "the next edit's log line")
        window = server.ask("stats", "workspace/executeCommand",
                            {"command": "fimlsp.stats"})["result"]["window"]
    documents, history = Documents(), EditHistory(Clock())
    documents.open(SHAPES_URI, SHAPES)
    history.open(SHAPES_URI, 1)
    from lsprotocol import types

    documents.change(SHAPES_URI, [types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=26),
                          end=types.Position(line=1, character=27)), text="height")],
        "utf-16", history.observer(SHAPES_URI, "utf-16"))
    doc = documents.get(SHAPES_URI)
    assert doc is not None
    expected = build_zeta(qwen[0], FORMATS["zeta"], doc, doc.offset(1, 32), "work/shapes.py",
                          history.recent(16), window, 384, {SHAPES_URI: "work/shapes.py"})
    assert int(re.search(r"prompt=(\d+)", line).group(1)) == len(expected.ids), line
    assert re.search(r"generated=[1-9]", line), line
