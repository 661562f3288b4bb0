"""The workspace index through the real server (`python -m fimlsp serve` over stdio): a definition
in a file the editor never opened reaches the prompt (seen through `fimlsp.prompt`), edits on disk
announced by `workspace/didChangeWatchedFiles` update it, and ignored, binary, secrets-like files
and files outside the workspace folders never appear.

Waiting is on `fimlsp.stats` (the index's state and counts) or on the prompt itself, polled with a
deadline; no test asserts a timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from test_lsp import INVALID_PARAMS, WAIT_S, Client, Doc, running, uri_for

pytestmark = pytest.mark.slow

GEOMETRY = '''"""Shapes."""


def rectangle_area(width: float, height: float) -> float:
    """The area of a width × height rectangle."""
    return width * height


class Polygon:
    sides: int

    def perimeter(self, length: float) -> float:
        return self.sides * length
'''
MAIN = """from pkg.geometry import rectangle_area

total = rectangle_area(
"""
SIGNATURE = "def rectangle_area(width: float, height: float) -> float:"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo project")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "geometry.py").write_text(GEOMETRY)
    (root / "main.py").write_text(MAIN)
    (root / ".gitignore").write_text("ignored/\nbuild_output.py\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "hidden.py").write_text("def hidden_helper_xyz(a):\n    return a\n")
    (root / "build_output.py").write_text("def ignored_by_name_xyz(a):\n    return a\n")
    (root / "secrets.py").write_text("def leaked_secret_xyz():\n    return 'hunter2'\n")
    (root / ".env").write_text("API_TOKEN=leaked_env_xyz\n")
    (root / "binary.py").write_bytes(b"\x00\x01def binary_thing_xyz(a):\n    return a\n")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("function vendored_xyz(a) {}\n")
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tiny_model: Path, project: Path) -> AsyncIterator[Client]:
    async with running(tiny_model, project) as client:
        await client.poll_stats(lambda s: s["state"] == "ready" and
                                s["repo_index"]["state"] == "ready", "model and index ready")
        yield client


async def prompt_at_end(server: Client, doc: Doc) -> dict[str, Any]:
    return await server.prompt(doc.uri, doc.end)


async def poll_prompt(server: Client, doc: Doc, ready: Callable[[dict[str, Any]], bool],
                      what: str) -> dict[str, Any]:
    """Asks for the prompt until `ready` (the index is updated on its own thread); bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not ready(prompt := await prompt_at_end(server, doc)):
        assert loop.time() < deadline, f"the prompt never showed {what}:\n{prompt['text']}"
        await asyncio.sleep(0.02)  # poll interval, not synchronisation
    return prompt


def changed(server: Client, *events: tuple[Path, t.FileChangeType]) -> None:
    server.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(
        changes=[t.FileEvent(uri=path.as_uri(), type=kind) for path, kind in events]))


async def test_the_index_holds_only_what_git_would_track(server: Client) -> None:
    index = (await server.stats())["repo_index"]
    # pkg/__init__.py is empty (nothing to index); ignored, secret, binary, vendored files and
    # .env are never read.
    assert index["files"] == 2, index
    assert index["definitions"] >= 3, index
    assert index["parsers"] == {"tree-sitter": 2}, index


async def test_a_definition_from_an_unopened_file_is_in_the_prompt(server: Client,
                                                                  project: Path) -> None:
    doc = Doc(server, uri_for(project, "main.py"), MAIN)
    prompt = await prompt_at_end(server, doc)
    assert SIGNATURE in prompt["text"], prompt["text"]
    chosen = [s for s in prompt["snippets"] if s["kind"] == "definition"]
    assert chosen and chosen[0]["path"] == "pkg/geometry.py", prompt["snippets"]
    assert "rectangle_area" in chosen[0]["reason"] and chosen[0]["in_prompt"]
    stats = (await server.stats())["repo_index"]
    assert stats["definition_hits"] >= 1 and stats["requests_with_context"] >= 1, stats
    # fimlsp.stats reports the hit rates, as the counters give them.
    assert stats["definition_hit_rate"] == \
        round(stats["definition_hits"] / stats["definition_lookups"], 3), stats
    assert 0 < stats["definition_hit_rate"] <= 1, stats
    assert stats["searches"] >= 1 and 0 <= stats["search_hit_rate"] <= 1, stats


async def test_ignored_binary_and_secret_files_never_reach_the_prompt(server: Client,
                                                                      project: Path) -> None:
    names = ("hidden_helper_xyz", "ignored_by_name_xyz", "leaked_secret_xyz", "binary_thing_xyz",
             "vendored_xyz")
    text = "".join(f"{name}(1)\n" for name in names) + "x = 1\n"
    doc = Doc(server, uri_for(project, "uses.py"), text)
    prompt = await prompt_at_end(server, doc)
    for name in names:
        assert f"def {name}" not in prompt["text"] and f"function {name}" not in prompt["text"]
    assert "leaked_env_xyz" not in prompt["text"]


async def test_an_edit_on_disk_updates_the_index(server: Client, project: Path) -> None:
    doc = Doc(server, uri_for(project, "edited.py"),
              "from pkg.geometry import rectangle_area\n\nprint(rectangle_area(\n")
    await poll_prompt(server, doc, lambda p: SIGNATURE in p["text"], "the first signature")
    geometry = project / "pkg" / "geometry.py"
    new_signature = "def rectangle_area(width: float, height: float, scale: int) -> float:"
    geometry.write_text(GEOMETRY.replace(SIGNATURE, new_signature))
    changed(server, (geometry, t.FileChangeType.Changed))
    prompt = await poll_prompt(server, doc, lambda p: new_signature in p["text"],
                               "the edited signature")
    assert SIGNATURE not in prompt["text"]

    # A new file, announced, is indexed; deleted, it is gone.
    fresh = project / "pkg" / "fresh.py"
    fresh.write_text("def brand_new_helper(count: int) -> list[int]:\n    return []\n")
    changed(server, (fresh, t.FileChangeType.Created))
    user = Doc(server, uri_for(project, "user.py"), "values = brand_new_helper(3)\n\n")
    await poll_prompt(server, user, lambda p: "def brand_new_helper(count" in p["text"],
                      "the new file's definition")
    fresh.unlink()
    changed(server, (fresh, t.FileChangeType.Deleted))
    await poll_prompt(server, user, lambda p: "def brand_new_helper(count" not in p["text"],
                      "the deleted file's definition gone")


async def test_files_outside_the_folders_and_ignored_ones_are_never_read(
        server: Client, project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("def outside_thing_xyz(a):\n    return a\n")
    hidden = project / "ignored" / "hidden.py"
    hidden.write_text("def hidden_helper_xyz(a, b):\n    return a\n")
    before = (await server.stats())["repo_index"]
    changed(server, (outside, t.FileChangeType.Created), (hidden, t.FileChangeType.Changed))
    # A file that is indexed, announced after them: once it is in, they were handled.
    marker = project / "marker.py"
    marker.write_text("def marker_function_xyz():\n    return 1\n")
    changed(server, (marker, t.FileChangeType.Created))
    stats = await server.poll_stats(
        lambda s: s["repo_index"]["files"] == before["files"] + 1, "the marker file indexed")
    assert stats["repo_index"]["files"] == before["files"] + 1
    doc = Doc(server, uri_for(project, "outside_user.py"),
              "outside_thing_xyz(1)\nhidden_helper_xyz(1, 2)\nmarker_function_xyz()\n\n")
    prompt = await prompt_at_end(server, doc)
    assert "def marker_function_xyz" in prompt["text"]
    assert "def outside_thing_xyz" not in prompt["text"]
    assert "def hidden_helper_xyz" not in prompt["text"]


async def test_workspace_folders_added_and_removed(server: Client, tmp_path: Path) -> None:
    other = tmp_path / "other repo"
    other.mkdir()
    (other / "lib.py").write_text("def from_the_other_folder(n: int) -> str:\n    return ''\n")
    folder = t.WorkspaceFolder(uri=other.as_uri(), name=other.name)
    remote = t.WorkspaceFolder(uri="vscode-remote://ssh-remote+box/home/me/code", name="code")
    server.workspace_did_change_workspace_folders(t.DidChangeWorkspaceFoldersParams(
        event=t.WorkspaceFoldersChangeEvent(added=[folder, remote], removed=[])))
    doc = Doc(server, (other / "use.py").as_uri(), "x = from_the_other_folder(2)\n\n")
    await poll_prompt(server, doc, lambda p: "def from_the_other_folder" in p["text"],
                      "the added folder's definition")
    stats = (await server.stats())["repo_index"]
    assert stats["folders"] == 2 and stats["remote_skipped"] == 1, stats
    server.workspace_did_change_workspace_folders(t.DidChangeWorkspaceFoldersParams(
        event=t.WorkspaceFoldersChangeEvent(added=[], removed=[folder])))
    await poll_prompt(server, doc, lambda p: "def from_the_other_folder" not in p["text"],
                      "the removed folder's definition gone")


async def test_typing_keeps_the_chosen_snippets(server: Client, project: Path) -> None:
    """The snippets open the prompt: typing must not change them, or the cache is lost."""
    doc = Doc(server, uri_for(project, "typing.py"),
              "from pkg.geometry import rectangle_area\n\nresult = rectangle_area(")
    first = await prompt_at_end(server, doc)
    common = "def rectangle_area(width: float, height: float"  # before and after the edit test
    head = first["text"][:first["text"].index(common) + len(common)]
    for ch in "width_in_meters, 3":
        doc.change((len(doc.text), len(doc.text), ch))
        prompt = await prompt_at_end(server, doc)
        assert prompt["text"].startswith(head)
        assert [s["path"] for s in prompt["snippets"]] == [s["path"] for s in first["snippets"]]


async def test_definitions_sent_by_the_editor_are_the_best_ranked(server: Client,
                                                                  project: Path) -> None:
    """Item 3 of the issue, server side: a client asks its own language server for the
    definitions near the cursor (a library outside the workspace, here) and sends them."""
    doc = Doc(server, uri_for(project, "editor.py"), "import requests\n\nrequests.get(")
    signature = "def get(url, params=None, **kwargs):"
    sent = [{"uri": "file:///usr/lib/python3/site-packages/requests/api.py", "line": 61,
             "name": "get", "text": signature + "\n    \"\"\"Sends a GET request.\"\"\"\n"}]
    assert await server.command("fimlsp.context", doc.uri, sent) == 1
    prompt = await prompt_at_end(server, doc)
    assert signature in prompt["text"]
    # The index's snippets come first, open documents' last (nearest the code).
    last = [s for s in prompt["snippets"] if s["kind"] != "open document"][-1]
    assert last["kind"] == "editor" and last["path"] == "requests/api.py", prompt["snippets"]
    for bad in ([{"uri": 3, "text": "x"}], "not a list", [{"uri": "file:///a.py"}] * 17):
        with pytest.raises(JsonRpcException) as raised:
            await server.command("fimlsp.context", doc.uri, bad)
        assert raised.value.code == INVALID_PARAMS and "fimlsp.context" in str(raised.value)
    assert signature in (await prompt_at_end(server, doc))["text"]  # kept; still serving
    assert await server.command("fimlsp.context", doc.uri, []) == 0
    assert signature not in (await prompt_at_end(server, doc))["text"]


async def test_repo_context_off_by_setting(server: Client, project: Path) -> None:
    server.configure(repoContext=False)
    await server.poll_stats(lambda s: s["repo_index"]["state"] == "off", "the index off")
    doc = Doc(server, uri_for(project, "off.py"), MAIN)
    prompt = await prompt_at_end(server, doc)
    assert SIGNATURE not in prompt["text"]
    assert [s for s in prompt["snippets"] if s["kind"] != "open document"] == []
    server.configure(repoContext=True)
    await server.poll_stats(lambda s: s["repo_index"]["state"] == "ready", "the index back")
