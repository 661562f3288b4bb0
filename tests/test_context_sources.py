"""Which open documents lend snippets to a prompt (fimlsp/sources.py), through the real server.

Every lender below holds the identifiers of the line being completed, so each would be chosen
as a neighbour snippet; each carries a marker word, and the served prompt (`fimlsp.prompt`,
which shows exactly what a completion sends) tells which got in. The serving engine is a
loopback stand-in (no weights needed to build prompts); the server and its prompt path are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as t
from test_lsp import Client, Doc, running
from test_remote_dialects import StandIn, llamacpp_props

from fimlsp.sources import ContextSources

BODY = ("def {marker}(route_points, scale_factor):\n"
        "    return measure_route(route_points, scale_factor)\n")
MAIN = ("import routes\n\n"
        "def total(route_points, scale_factor):\n"
        "    first = measure_route(route_points, scale_factor)\n"
        "    return first + measure_route(")


@pytest.fixture
def engine() -> Iterator[StandIn]:
    stand_in = StandIn()
    stand_in.on("/props", llamacpp_props(slots=4, n_ctx=4096))
    yield stand_in
    stand_in.stop()


def lenders(project: Path, elsewhere: Path) -> dict[str, tuple[str, bool]]:
    """uri → (marker, lends by default)."""
    return {
        (project / "helper.py").as_uri(): ("helper_in_the_workspace", True),
        "untitled:Untitled-1": ("unsaved_buffer_text", True),
        (project / ".env").as_uri(): ("dotenv_secret_value", False),
        (project / "deploy.pem").as_uri(): ("private_key_material", False),
        (project / ".vscode" / "settings.json").as_uri(): ("editor_settings_value", False),
        f"git:{(project / 'older.py').as_uri()[5:]}?%7B%22ref%22%3A%22HEAD%22%7D":
            ("git_revision_text", False),
        "output:extension-output-fimlsp": ("output_panel_text", False),
        (elsewhere / "outside.py").as_uri(): ("outside_the_workspace", False),
    }


async def served_text(client: Client, doc: Doc) -> str:
    shown = await client.prompt(doc.uri, doc.end)
    return shown["text"]


async def test_only_workspace_files_and_unsaved_buffers_lend_snippets(
        tiny_model: Path, tmp_path: Path, engine: StandIn) -> None:
    project, elsewhere = tmp_path / "my project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    options = {"engine": "llamacpp", "endpoint": engine.url, "contextWindow": 2048,
               "neighbourShare": 0.5, "repoContext": False}
    async with running(tiny_model, project, options) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        for uri, (marker, _lends) in lenders(project, elsewhere).items():
            Doc(client, uri, BODY.format(marker=marker))
        main = Doc(client, (project / "main.py").as_uri(), MAIN)
        text = await served_text(client, main)
        for uri, (marker, lends) in lenders(project, elsewhere).items():
            assert (marker in text) is lends, (uri, text)
        # Definitions the editor sends (`fimlsp.context`) follow the secrets rule too.
        sent = [{"uri": (project / ".env").as_uri(), "text": "TOKEN = 'dotenv_secret_value'\n"}]
        assert await client.command("fimlsp.context", main.uri, sent) == 0

        # Opting in lets the secrets-like names lend; other schemes and places still never do.
        client.configure(contextSecrets=True)
        text = await served_text(client, Doc(client, (project / "main2.py").as_uri(), MAIN))
        for marker in ("dotenv_secret_value", "private_key_material", "editor_settings_value"):
            assert marker in text, text
        for marker in ("git_revision_text", "output_panel_text", "outside_the_workspace"):
            assert marker not in text, text

        # A folder the client adds is part of the workspace from then on.
        client.workspace_did_change_workspace_folders(t.DidChangeWorkspaceFoldersParams(
            event=t.WorkspaceFoldersChangeEvent(
                added=[t.WorkspaceFolder(uri=elsewhere.as_uri(), name="elsewhere")],
                removed=[])))
        text = await served_text(client, Doc(client, (project / "main3.py").as_uri(), MAIN))
        assert "outside_the_workspace" in text, text


@pytest.mark.parametrize(("uri", "lends"), [
    ("file:///work/app/util.py", True),
    ("file:///work/app/sub%20dir/util.py", True),
    ("file:///work/app/../other/util.py", False),  # normalised before it is compared
    ("file:///work/application/util.py", False),  # a sibling whose name starts the same
    ("file://otherhost/work/app/util.py", False),
    ("file:///work/app/.env.production", False),
    ("file:///work/app/config/credentials.json", False),
    ("file:///work/app/.ssh/config", False),
    ("file:///work/app/keys/id_ed25519.pub", False),
    ("file:///work/app/.netrc", False),
    ("untitled:Untitled-3", True),
    ("untitled:.env", False),
    ("vscode-userdata:/home/u/.config/Code/User/settings.json", False),
    ("vscode-notebook-cell:/work/app/a.ipynb#W0sZmlsZQ%3D%3D", False),
    ("git:/work/app/util.py?%7B%7D", False),
    ("not a uri", False),
])
def test_the_rule_for_one_workspace_folder(uri: str, lends: bool) -> None:
    assert ContextSources(["file:///work/app"]).allows(uri) is lends


def test_without_folders_any_local_file_lends_but_no_secret() -> None:
    sources = ContextSources([])
    assert sources.allows("file:///home/u/notes/util.py")
    assert not sources.allows("file:///home/u/.ssh/config")
    assert not sources.allows("file:///home/u/.aws/credentials")
    remote_only = ContextSources(["vscode-remote://ssh-remote+box/work/app"])
    assert not remote_only.allows("file:///work/app/util.py")  # named folders, none local
    assert ContextSources([], allow_secrets=True).allows("file:///home/u/project/.env")
