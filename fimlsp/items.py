"""Answers as the client sees them: the LSP items of an inline completion (the answer, its
alternatives, the cursor line's next edit) and of the completion popup (one item that replaces
the word being typed). Each carries the `fimlsp.accept` command with its request id, so the
server learns what the user took.
"""

from __future__ import annotations

import re

from lsprotocol import types

from fimlsp.completion import Completion
from fimlsp.context import Cursor
from fimlsp.positions import units_len

CMD_ACCEPT = "fimlsp.accept"
_WORD_TAIL = re.compile(r"[\w$]+$")


def accept_command(result: Completion) -> types.Command:
    return types.Command(title="fimlsp: accepted", command=CMD_ACCEPT,
                         arguments=[result.request_id])


def inline_list(answers: list[Completion], at: types.Position,
                selected: types.SelectedCompletionInfo | None,
                edit: types.InlineCompletionItem | None) -> types.InlineCompletionList:
    """The first answer first, then its alternatives (the editor cycles through them), then the
    next edit; with a popup item `selected`, each answer replaces its range, as if inserted."""
    rng = types.Range(start=at, end=at) if selected is None else selected.range
    before = selected.text if selected is not None else ""
    return types.InlineCompletionList(items=[
        *(types.InlineCompletionItem(insert_text=before + answer.text, range=rng,
                                     command=accept_command(answer))
          for answer in answers),
        *([edit] if edit else [])])


def completion_item(result: Completion, cursor: Cursor, at: types.Position,
                    encoding: str) -> types.CompletionItem:
    """The answer as a popup item that replaces the word being typed, so clients filter on it
    and keep the item while the user types on."""
    word = _WORD_TAIL.search(cursor.line_prefix)
    typed = word.group(0) if word else ""
    start = types.Position(line=at.line, character=at.character - units_len(typed, encoding))
    new_text = typed + result.text
    first_line = new_text.strip().splitlines()[0] if new_text.strip() else new_text
    return types.CompletionItem(
        label=first_line[:80], filter_text=new_text, sort_text="0",
        kind=types.CompletionItemKind.Text, detail="fimlsp",
        documentation=types.MarkupContent(kind=types.MarkupKind.PlainText, value=new_text),
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start=start, end=at), new_text=new_text),
        command=accept_command(result))
