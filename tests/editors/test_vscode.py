"""VS Code, end to end: the extension in editors/vscode, built to a .vsix, installed into
code-server, driven in headless Chromium (playwright-core) against the real server with a tiny
random-weight model.

The browser part is editors/vscode/test/e2e.mjs: it waits until the workbench has finished
starting with no file open, opens a Python file, types, waits for ghost text
(`.ghost-text-decoration`), takes a screenshot, accepts with Tab and saves, then types again and
accepts one word with Ctrl+Right. The model's text is gibberish; what is checked is the mechanics:
no server before a code file is open, a non-empty suggestion is shown, Tab inserts exactly it
after what was typed, the partial accept reaches the server, `fimlsp.stats` is not asked once per
suggestion, and the extension's status bar says ready with a latency. The server runs behind
tests/editors/lsp_tap.py, which logs every message the extension sends it. The next-edit test
runs a random-weight Qwen2 (a next-edit format) and has the tap script the next edits
(e2e.mjs's nextEditFlow). The cycling test runs the trained fixture (shared/models), whose
alternatives are real, different text, and has the tap log the server's answers (e2e.mjs's
cycleFlow).

Needs `bash editors/vscode/install-deps.sh` (apt packages, Chromium, the extension's npm
dependencies, code-server 4.100.3 and playwright-core in editors/vscode/.test-deps/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import editor_missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
DEPS = VSCODE / ".test-deps" / "node_modules"
CODE_SERVER = DEPS / ".bin" / "code-server"
PLAYWRIGHT = DEPS / "playwright-core"
E2E = VSCODE / "test" / "e2e.mjs"
VSIX = VSCODE / "fimlsp.vsix"
TAP = Path(__file__).resolve().parent / "lsp_tap.py"
INSTALL = "run `bash editors/vscode/install-deps.sh` (apt, npm; about 2 minutes)"

SOURCE = '''"""A small module: fimlsp's VS Code test types at its end."""


def add(a, b):
    return a + b


def main():
    '''
TYPED = "total = add"
TYPED_AGAIN = "value = add"
# Where the cycling test asks for alternatives (with the trained model: distinct ones there).
CYCLE_TYPED = "x = "

USER_SETTINGS = {
    "fimlsp.maxNewTokens": 16,
    "editor.inlineSuggest.enabled": True,
    # The suggest widget would hide the ghost text, and auto-closed brackets would sit after it.
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "editor.minimap.enabled": False,
    "editor.fontSize": 16,
    "files.autoSave": "off",
    "security.workspace.trust.enabled": False,
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "telemetry.telemetryLevel": "off",
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.commandCenter.enabled": False,
}


def _missing() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if shutil.which("chromium") is None:
        missing.append("chromium (apt)")
    if not CODE_SERVER.exists():
        missing.append(f"code-server ({CODE_SERVER.relative_to(ROOT)})")
    if not (PLAYWRIGHT / "package.json").exists():
        missing.append(f"playwright-core ({PLAYWRIGHT.relative_to(ROOT)})")
    for tool in ("tsc", "vsce"):
        if not (VSCODE / "node_modules" / ".bin" / tool).exists():
            missing.append(f"{tool} (npm ci in editors/vscode)")
    return missing


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The environment of code-server and the browser: their config, data and caches under
    `tmp_path`. Chromium writes `$XDG_CONFIG_HOME/chromium/Crash Reports` even with its own
    --user-data-dir, so without this every run left ~/.config/chromium behind. The server the
    extension starts (`python -m fimlsp`, in the workspace folder) imports this checkout's
    package, not whichever one the interpreter has installed (another worktree's)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "PYTHONPATH": path}


def test_the_browser_writes_nothing_into_the_home_directory(tmp_path: Path) -> None:
    """Headless Chromium as e2e.mjs starts it, with `isolated_env`, and a home to watch."""
    chromium = shutil.which("chromium")
    if chromium is None:
        editor_missing("chromium (apt)", INSTALL)
    home = tmp_path / "home"
    home.mkdir()
    env = {**isolated_env(tmp_path), "HOME": str(home)}
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", "about:blank"],
                   env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == []
    assert (tmp_path / "config" / "chromium").is_dir()  # where it went instead


def _build_vsix() -> Path:
    """`npm run package` (tsc + vsce) unless fimlsp.vsix is newer than everything it is built
    from."""
    sources = [VSCODE / name for name in ("package.json", "package-lock.json", "tsconfig.json",
                                          "README.md", ".vscodeignore", "LICENSE",
                                          "images/icon.png")]
    sources += list((VSCODE / "src").rglob("*"))
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    if VSIX.exists() and VSIX.stat().st_mtime > newest:
        return VSIX
    env = {**os.environ, "CI": "true", "npm_config_yes": "true",
           "npm_config_update_notifier": "false"}
    built = subprocess.run(["npm", "run", "package"], cwd=VSCODE, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=180)
    assert built.returncode == 0 and VSIX.exists(), (
        f"building the .vsix failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    return VSIX


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"code-server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"code-server did not answer /healthz in {timeout_s:.0f}s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} not readable)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """code-server, its extension host and the fimlsp server it started: one process group."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


# A cloned repository's .vscode/settings.json that tries to send the code elsewhere, read an
# unrelated secret as the API key, load another model and run another program (issue 21), and
# sets one harmless option that a workspace may set.
HOSTILE_WORKSPACE_SETTINGS = {
    "fimlsp.engine": "openai",
    "fimlsp.endpoint": "http://203.0.113.7:8000/v1",
    "fimlsp.apiKeyEnv": "MY_UNRELATED_SECRET",
    "fimlsp.servedModel": "theirs",
    "fimlsp.tlsVerify": False,
    "fimlsp.model": "/nonexistent/their-model",
    "fimlsp.serverCommand": ["/bin/false"],
    "fimlsp.pythonPath": "/bin/false",
    "fimlsp.maxNewTokens": 12,
}
NOTES = "meeting notes: the password is hunter2\n"


SHAPES = ("class Box:\n    def __init__(self, w, h):\n        self.w = w\n        self.h = h\n\n"
          "    def area(self):\n        return self.w * self.h\n")


def _edit(line: int, start: int, end: int, text: str) -> dict[str, object]:
    return {"range": {"start": {"line": line, "character": start},
                      "end": {"line": line, "character": end}}, "text": text}


# The tap's answers to the extension's next-edit requests (lsp_tap.py --inline-edits): the one
# asked after the rename (automatic), one asked for by command, and one asked for by command
# whose answer is held until the user typed on.
NEXT_EDIT_SCRIPT = [
    {"trigger": 2, "at": {"line": 1, "character": 32},  # the end of `height`
     "edits": [_edit(3, 13, 18, "height = height")]},
    {"trigger": 1, "edits": [_edit(0, 6, 9, "Rect")]},
    {"trigger": 1, "edits": [_edit(0, 6, 9, "Rect")], "hold": True},
]


@pytest.fixture(scope="module")
def qwen_server_command(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> list[str]:
    """The server with a tiny random-weight Qwen2 (real Qwen2.5 tokenizer): a next-edit model."""
    from test_engine_archs import build_arch_model

    folder = build_arch_model(tmp_path_factory.mktemp("vscode-qwen2"), "qwen2", shared)
    return [sys.executable, "-m", "fimlsp", "serve", "--model", str(folder)]


@pytest.fixture(scope="module")
def trained_server_command(trained_model: Path) -> list[str]:
    """The server with the small trained FIM model (shared/models): Python-looking text."""
    return [sys.executable, "-m", "fimlsp", "serve", "--model", str(trained_model)]


@pytest.fixture
def code_server(request: pytest.FixtureRequest, tmp_path: Path, server_command: list[str],
                artifacts_dir: Path) -> Iterator[dict[str, str]]:
    """code-server with the extension; `request.param` {"untrusted": True} turns workspace trust
    on (the browser then leaves the folder in Restricted Mode) and gives the folder hostile
    settings and a plaintext file; {"nextedit": True} runs a next-edit model behind a tap that
    scripts its answers (NEXT_EDIT_SCRIPT), with ghost text off; {"cycle": True} runs the trained
    model behind a tap that logs the server's inline completion answers."""
    untrusted = bool(getattr(request, "param", {}).get("untrusted"))
    nextedit = bool(getattr(request, "param", {}).get("nextedit"))
    cycle = bool(getattr(request, "param", {}).get("cycle"))
    missing = _missing()
    if missing:
        editor_missing("VS Code test tooling (" + ", ".join(missing) + ")", INSTALL)
    vsix = _build_vsix()

    user_data, extensions = tmp_path / "user-data", tmp_path / "extensions"
    (user_data / "User").mkdir(parents=True)
    tap_log = tmp_path / "lsp-tap.log"
    tap = [sys.executable, str(TAP), str(tap_log)]
    if nextedit:
        script = tmp_path / "inline-edits.json"
        script.write_text(json.dumps(NEXT_EDIT_SCRIPT))
        tap += ["--inline-edits", str(script)]
        server_command = request.getfixturevalue("qwen_server_command")
    if cycle:
        tap.append("--answers")
        server_command = request.getfixturevalue("trained_server_command")
    settings = {**USER_SETTINGS, "fimlsp.serverCommand": [*tap, "--", *server_command]}
    if nextedit:
        settings.update({"editor.inlineSuggest.enabled": False, "fimlsp.timeBudgetMs": 60000})
    if untrusted:
        settings["security.workspace.trust.enabled"] = True
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
    # code-server writes its config.yaml under XDG_CONFIG_HOME: keep it out of the real home.
    env = isolated_env(tmp_path)
    common = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    installed = subprocess.run([str(CODE_SERVER), *common, "--install-extension", str(vsix)],
                               env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=120)
    assert installed.returncode == 0, (
        f"installing the .vsix failed:\n{installed.stdout}\n{installed.stderr}")
    assert any(extensions.glob("fimlsp.fimlsp-*")), f"not installed: {list(extensions.iterdir())}"

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "app.py").write_text(SOURCE)
    (workspace / "shapes.py").write_text(SHAPES)
    if untrusted:
        (workspace / ".vscode").mkdir()
        (workspace / ".vscode" / "settings.json").write_text(
            json.dumps(HOSTILE_WORKSPACE_SETTINGS, indent=2))
        (workspace / "notes.txt").write_text(NOTES)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = artifacts_dir / "vscode-code-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CODE_SERVER), "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", *common,
             "--disable-telemetry", "--disable-update-check",
             *([] if untrusted else ["--disable-workspace-trust"]), str(workspace)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        _wait_healthy(url, process, log, timeout_s=60)
        yield {"url": url, "workspace": str(workspace), "user_data": str(user_data),
               "profile": str(tmp_path / "chromium-profile"), "tmp": str(tmp_path),
               "tap_log": str(tap_log)}
    finally:
        _stop(process)
        # The extension's output channel: the server's stderr, one line per request.
        channels = sorted(user_data.glob("logs/**/*fimlsp*.log"))
        if channels:
            shutil.copyfile(channels[-1], artifacts_dir / "vscode-fimlsp-output.log")


def _run_e2e(code_server: dict[str, str], artifacts_dir: Path, name: str,
             **extra: object) -> tuple[dict, list[Path], list[str]]:
    """e2e.mjs through the whole flow; (its result, the output channel logs, the tap's lines)."""
    screenshot = artifacts_dir / f"{name}.png"
    accepted = artifacts_dir / f"{name}-accepted.png"
    for old in (screenshot, accepted, artifacts_dir / f"{name}-failure.png"):
        old.unlink(missing_ok=True)
    config = {
        "url": code_server["url"], "folder": code_server["workspace"], "file": "app.py",
        "waitForText": "def main", "typed": TYPED, "screenshot": str(screenshot),
        "screenshotAccepted": str(accepted), "chromium": shutil.which("chromium"),
        "profile": code_server["profile"], "playwright": str(PLAYWRIGHT), "timeoutMs": 60000,
        "logsDir": str(Path(code_server["user_data"]) / "logs"), "tapLog": code_server["tap_log"],
        "typedAgain": TYPED_AGAIN, **extra,
    }
    run = subprocess.run(["node", str(E2E), json.dumps(config)], stdin=subprocess.DEVNULL,
                         env=isolated_env(Path(code_server["tmp"])), capture_output=True,
                         text=True, timeout=180)
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    channel = sorted(Path(code_server["user_data"]).glob("logs/**/*fimlsp*.log"))
    assert run.returncode == 0 and result.get("ok"), (
        f"browser run failed: {result.get('error') or run.stdout[-2000:]}\n"
        f"status bar: {result.get('statusOnError')}\nsteps: {result.get('steps')}\n"
        f"browser log:\n{run.stderr[-3000:]}\n"
        f"fimlsp output channel:\n{_tail(channel[-1]) if channel else '(none)'}")
    sent = Path(code_server["tap_log"]).read_text(encoding="utf-8").splitlines()
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, "no screenshot"
    return result, channel, sent


def _tapped(code_server: dict[str, str]) -> list[dict]:
    """Every message the extension sent the server, whole (lsp_tap.py's LOG.json)."""
    text = Path(code_server["tap_log"] + ".json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_ghost_text_from_fimlsp_accepted_with_tab(code_server: dict[str, str],
                                                  artifacts_dir: Path) -> None:
    result, channel, sent = _run_e2e(code_server, artifacts_dir, "vscode-ghost-text")
    # No code open, startup over: no server (no model loaded) in this window yet.
    before = result["beforeFile"]
    assert before["serverStarted"] is False, f"a server started with no file open: {before}"
    assert not any("onStartupFinished" in line for line in before["activation"]), before
    # Opening the Python file activated the extension (on its language) and started the server.
    assert result["activation"] and not any("onStartupFinished" in line
                                            for line in result["activation"]), result["activation"]
    started, started_ms = sent[0].split()
    assert started == "<started>" and sent.count("initialize") == 1, sent[:5]
    assert float(started_ms) >= result["openedAt"], "the server started before a file was opened"

    ghost = result["ghost"]
    assert ghost.strip(), f"empty ghost text: {result}"
    saved = result["saved"]
    prefix = SOURCE
    assert saved.startswith(prefix), f"text before the cursor changed:\n{saved!r}"
    inserted = saved[len(prefix):]
    # Tab inserted the suggestion that was shown, right after what was typed.
    assert inserted.startswith(TYPED + ghost), (
        f"document after Tab {inserted!r} is not typed {TYPED!r} + ghost {ghost!r}")
    # The status bar item showed the server's latency for the last suggestion.
    assert result["statusAfterCompletion"].startswith("fimlsp: ready"), result
    assert result["statusAfterCompletion"].endswith(" ms"), result
    # The item's accept command reached the server (fimlsp.accept, counted in fimlsp.stats), and
    # so did the partial accept (Ctrl+Right: fimlsp.partialAccept [id, characters so far]).
    stats = _logged_stats(channel[-1] if channel else None)
    assert stats.get("accepted", 0) >= 1 and stats.get("state") == "ready", stats
    assert result["ghostAgain"].strip(), result
    assert "workspace/executeCommand fimlsp.partialAccept" in sent, sent
    assert stats.get("partially_accepted", 0) >= 1, stats
    # Warm starts: once the model was ready and the cursor rested, the extension asked the
    # server to prefill there (fimlsp.warm); the server ran it or a keystroke stopped it.
    assert "workspace/executeCommand fimlsp.warm" in sent, sent
    assert stats.get("warmed", 0) + stats.get("warm_interrupted", 0) >= 1, stats
    # fimlsp.stats is not asked after each suggestion: after the first inline completion request,
    # only "Show statistics" asked for it (the latency shown is measured by the extension).
    first = sent.index("textDocument/inlineCompletion")
    completions = sent.count("textDocument/inlineCompletion")
    stats_asked = sent[first:].count("workspace/executeCommand fimlsp.stats")
    assert completions >= 2 and stats_asked <= 1, (completions, stats_asked, sent[first:])
    # "Show statistics" names both versions, the model, the device and the quantization.
    text = channel[-1].read_text(errors="replace") if channel else ""
    assert re.search(r"fimlsp for VS Code 0\.1\.0; server: fimlsp \S+, model \S+ on cpu "
                     r"\(quantization int8\)", text), text[-2000:]
    assert result["statusToggled"] == "fimlsp: off", result


@pytest.mark.parametrize("code_server", [{"untrusted": True}], indirect=True)
def test_untrusted_workspace_cannot_redirect_code_or_secrets(code_server: dict[str, str],
                                                             artifacts_dir: Path) -> None:
    """A folder left in Restricted Mode whose .vscode/settings.json names another engine,
    endpoint, API key variable, served model, model, TLS policy and server program: none of it
    reaches the server (the user's own settings start it and load their model), a harmless
    option (maxNewTokens) does. A plaintext file (fimlsp off for it) opened first is never sent,
    and warm starts go only to documents the server has open — also with the output channel
    focused."""
    result, _, sent = _run_e2e(code_server, artifacts_dir, "vscode-untrusted",
                               untrusted=True, firstFile="notes.txt",
                               firstFileText="meeting notes", focusOutput=True)
    assert result["ghost"].strip() and sent.count("initialize") == 1, result
    messages = _tapped(code_server)
    init = next(m for m in messages if m.get("method") == "initialize")
    options = init["params"].get("initializationOptions") or {}
    assert options.get("maxNewTokens") == 12, options
    leaked = {k: v for k, v in options.items()
              if f"fimlsp.{k}" in HOSTILE_WORKSPACE_SETTINGS and k != "maxNewTokens"}
    assert leaked == {}, leaked
    for message in messages:  # nor later, through workspace/configuration or a change
        assert "203.0.113.7" not in json.dumps(message), message
        assert "MY_UNRELATED_SECRET" not in json.dumps(message), message
    opened = [m["params"]["textDocument"]["uri"] for m in messages
              if m.get("method") == "textDocument/didOpen"]
    assert any(uri.endswith("/app.py") for uri in opened), opened
    assert not any("notes.txt" in uri for uri in opened), opened
    assert "hunter2" not in "".join(json.dumps(m) for m in messages)
    warmed = [m["params"]["arguments"][0] for m in messages
              if m.get("method") == "workspace/executeCommand"
              and m["params"].get("command") == "fimlsp.warm"]
    assert warmed and set(warmed) <= set(opened), (warmed, opened)


@pytest.mark.parametrize("code_server", [{"nextedit": True}], indirect=True)
def test_next_edit_shown_applied_and_never_stale(code_server: dict[str, str],
                                                  artifacts_dir: Path) -> None:
    """After a rename the extension asks for the next edit by itself once typing pauses, draws
    it as an inline diff (the replaced text struck through, the new text after it), goes to it
    with the command, applies it with Tab and tells the server; an edit shown and then made stale
    by typing is hidden and never applied; an answer that arrives after the user typed on is
    never shown. The real server (a random-weight next-edit model) answers every request; the
    tap replaces its answers with known edits (lsp_tap.py --inline-edits), because no trained
    next-edit model runs here and a random model's rewrite is meaningless."""
    result, _, sent = _run_e2e(code_server, artifacts_dir, "vscode-next-edit", flow="nextedit",
                               file="shapes.py", waitForText="class Box")
    renamed = SHAPES.replace("w, h):", "w, height):")
    assert result["original"] == SHAPES
    # Shown after the pause: `h = h` struck through, `height = height` after it.
    shown = result["shown"]
    assert "".join(shown["struck"]) == "h = h", shown
    assert any("height = height" in t for t in shown["after"]), shown
    messages = _tapped(code_server)
    asked = [m for m in messages if m.get("method") == "textDocument/copilotInlineEdit"]
    # Asked by itself (automatic: nothing was invoked) for the version with `height` typed.
    renamed_version = next(m["params"]["textDocument"]["version"] for m in messages
                           if m.get("method") == "textDocument/didChange" and
                           m["params"]["contentChanges"][0]["range"]["start"] ==
                           {"line": 1, "character": 31})
    first = next(m["params"] for m in asked
                 if m["params"]["position"] == {"line": 1, "character": 32})
    assert first["context"] == {"triggerKind": 2}, first
    assert first["textDocument"]["version"] == renamed_version, first
    assert result["cursorAfterJump"] == "Ln 4, Col 14", result
    assert result["afterApply"] == renamed.replace("self.h = h", "self.height = height")
    accepted = [m["params"]["arguments"] for m in messages
                if m.get("params", {}).get("command") == "fimlsp.acceptNextEdit"]
    assert accepted and accepted[0][1] == first["textDocument"]["version"], accepted
    # Made stale by typing: hidden, and "Apply" found nothing to apply.
    assert result["staleShown"]["struck"] == [] and not any(
        "Rect" in t for t in result["staleShown"]["after"]), result["staleShown"]
    assert result["afterStale"].startswith("class Box:\n"), result["afterStale"]
    # The late answer (for the version before "# more") was dropped, not shown.
    assert result["dropped"] and not any("Rect" in t for t in result["lateShown"]["after"])
    assert "Rect" not in result["final"] and result["final"].count("# more") == 1
    # The real server answered each request in Copilot's shape, for the version asked about.
    answers = [m for m in messages if m.get("tap") == "answer"]
    # (a request the extension cancelled, superseded by a newer one, may get no answer)
    assert 3 <= len(answers) <= len(asked), (len(answers), len(asked))
    for answer in answers:
        version = answer["asked"]["textDocument"]["version"]
        assert isinstance(answer["real"]["edits"], list), answer
        for edit in answer["real"]["edits"]:
            assert edit["textDocument"]["version"] == version, answer
            assert {"text", "range", "command"} <= set(edit), answer
    assert "<held copilotInlineEdit 1>" in sent


@pytest.mark.parametrize("code_server", [{"cycle": True}], indirect=True)
def test_cycle_alternatives_and_accept_the_second(code_server: dict[str, str],
                                                  artifacts_dir: Path) -> None:
    """VS Code's own cycling through the server's alternatives: once a suggestion shows and the
    server's log says its alternatives are ready, Alt+] (`editor.action.inlineSuggest.showNext`)
    makes VS Code ask again (invoked) and show the answer's second item, a different suggestion,
    with the toolbar's counter at 2/N; Alt+[ goes back to the first (1/N); cycling asks nothing
    more; Tab inserts exactly the alternative shown and its accept command reaches the server."""
    result, _, sent = _run_e2e(code_server, artifacts_dir, "vscode-cycle", flow="cycle",
                               typed=CYCLE_TYPED)
    answers = [m for m in _tapped(code_server) if m.get("tap") == "inline"]
    position = {"line": SOURCE.count("\n"),
                "character": len(SOURCE.rsplit("\n", 1)[1] + CYCLE_TYPED)}
    at_cursor = [a for a in answers if a["asked"]["position"] == position]
    # The first suggestion: the automatic request's answer, the model's (one change, one request).
    automatic = [a for a in at_cursor if a["asked"]["context"]["triggerKind"] == 2]
    assert automatic and _items(automatic[-1]), at_cursor
    first = _items(automatic[-1])[0]
    assert result["first"]["ghost"] == first["insertText"], (result["first"], first)
    # Alt+]: VS Code asked again, invoked, and the server answered the first suggestion and its
    # alternatives; VS Code shows the second item.
    invoked = [a for a in at_cursor if a["asked"]["context"]["triggerKind"] == 1]
    assert len(invoked) == 1, at_cursor
    items = _items(invoked[0])
    texts = [item["insertText"] for item in items]
    assert len(items) >= 2 and texts[0] == first["insertText"], texts
    assert len(set(texts)) == len(texts), texts  # each a different suggestion
    assert result["second"] == {"ghost": texts[1], "counter": f"2/{len(items)}"}, (result, texts)
    assert result["back"] == {"ghost": texts[0], "counter": f"1/{len(items)}"}, (result, texts)
    assert result["again"] == result["second"], result
    # Only the first Alt+] asked the server; the rest cycled through what VS Code had.
    assert result["requestsAfterNext"] == result["requestsBeforeCycling"] + 1, result
    assert result["requestsAfterCycling"] == result["requestsAfterNext"], result
    # Tab inserted exactly the alternative shown, where the cursor was.
    assert result["saved"] == SOURCE + CYCLE_TYPED + texts[1], (result["saved"], texts)
    accepted = [m["params"]["arguments"] for m in _tapped(code_server)
                if m.get("params", {}).get("command") == "fimlsp.accept"]
    assert accepted == [items[1]["command"]["arguments"]], (accepted, items)
    assert "workspace/executeCommand fimlsp.accept" in sent


def _items(answer: dict) -> list[dict]:
    """The items of an inline completion answer the tap logged (a list, or a list's `items`)."""
    result = answer["answer"]
    return result if isinstance(result, list) else (result or {}).get("items", [])


def _logged_stats(channel: Path | None) -> dict[str, object]:
    """The last `stats: {...}` line "fimlsp: Show statistics" wrote to the output channel."""
    text = channel.read_text(errors="replace") if channel else ""
    found = [line.split("stats: ", 1)[1] for line in text.splitlines() if "] stats: {" in line]
    assert found, f"no statistics in the fimlsp output channel:\n{text[-2000:]}"
    return json.loads(found[-1])


def test_vsix_has_marketplace_metadata() -> None:
    """What a marketplace listing needs is in the package: icon, categories, repository, license
    (vsce packs it without --allow-missing-repository or --skip-license); and it activates on
    files or its commands, not on every window's startup."""
    missing = _missing()
    if missing:
        editor_missing("VS Code test tooling (" + ", ".join(missing) + ")", INSTALL)
    vsix = _build_vsix()
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
    assert manifest["icon"] and f"extension/{manifest['icon']}" in names
    assert manifest["categories"] and manifest["license"] == "Apache-2.0"
    assert manifest["repository"]["url"].startswith("https://")
    assert {"extension/LICENSE.txt", "extension/readme.md"} <= names
    assert "--allow-missing-repository" not in manifest["scripts"]["package"]
    assert "--skip-license" not in manifest["scripts"]["package"]
    assert not {"*", "onStartupFinished"} & set(manifest["activationEvents"])
