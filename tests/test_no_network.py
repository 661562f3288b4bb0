"""Nothing leaves the machine unless asked: a model hub that records every request.

`HF_ENDPOINT` points huggingface_hub at a local HTTP server (127.0.0.1, in this test) that
answers 404 and remembers what it was asked. conftest sets HF_HUB_OFFLINE=1 for the whole run;
here the subprocesses run without it (and with an empty HF_HOME), so it is fimlsp's own code that
must keep them off the network: starting the server or `fimlsp complete` with a hub id that is not
cached makes no request and fails at once with the command to run. With `--allow-download`,
`allowDownload` or `fimlsp download` the request is made (and answered 404).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_lsp import running

pytestmark = pytest.mark.slow

MISSING = "bigcode/not-in-any-cache"


class Hub:
    """A stand-in for the model hub: every request is recorded and answered 404."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """The recording hub, and an environment that would reach it: no offline switches, an empty
    cache. Server subprocesses started by the LSP harness inherit it."""
    recorder = Hub()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", recorder.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
    yield recorder
    recorder.close()


def fimlsp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fimlsp", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("model", "hub_id"), [
    (MISSING, MISSING),
    (None, "bigcode/tiny_starcoder_py"),  # the default preset, when --model is omitted
    ("starcoderbase-1b", "bigcode/starcoderbase-1b"),
])
def test_complete_with_an_uncached_model_asks_nothing_and_names_the_command(
        hub: Hub, source: Path, tmp_path: Path, model: str | None, hub_id: str) -> None:
    args = ["complete", str(source), "--line", "1", "--character", "4"]
    run = fimlsp(*args, *(["--model", model] if model else []), cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr  # one line, no retry warnings
    assert f"`fimlsp download {hub_id}`" in lines[0], lines[0]
    assert hub.requests == []


def test_allow_download_does_ask_the_hub(hub: Hub, source: Path, tmp_path: Path) -> None:
    run = fimlsp("complete", str(source), "--line", "1", "--character", "4", "--model", MISSING,
                 "--allow-download", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert any(MISSING in request for request in hub.requests), hub.requests


def test_download_command_asks_the_hub(hub: Hub, tmp_path: Path) -> None:
    run = fimlsp("download", MISSING, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert f"could not download {MISSING}" in run.stderr, run.stderr
    assert any(MISSING in request for request in hub.requests), hub.requests


def test_download_of_a_preset_asks_for_its_hub_id(hub: Hub, tmp_path: Path) -> None:
    run = fimlsp("download", "santacoder", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert any("bigcode/gpt_bigcode-santacoder" in r for r in hub.requests), hub.requests


@pytest.mark.parametrize("how", ["--model", "initializationOptions", "default preset"])
async def test_server_with_an_uncached_model_asks_nothing(hub: Hub, tmp_path: Path,
                                                          how: str) -> None:
    """The server's own start, a client-sent model name and the default preset alike."""
    model, options, hub_id = {
        "--model": (MISSING, None, MISSING),
        "initializationOptions": (MISSING, {"model": "bigcode/sent-by-client"},
                                  "bigcode/sent-by-client"),
        "default preset": ("tiny-starcoder", None, "bigcode/tiny_starcoder_py"),
    }[how]
    async with running(model, tmp_path, options) as client:
        message = await client.wait_for(
            lambda: next((m for m in client.shown if "fimlsp download" in m.message), None),
            "a message naming the download command")
        assert f"`fimlsp download {hub_id}`" in message.message, message.message
        stats = await client.stats()
        assert stats["state"] == "failed", stats
    assert hub.requests == []


async def test_server_with_allow_download_asks_the_hub(hub: Hub, tmp_path: Path) -> None:
    async with running(MISSING, tmp_path, {"allowDownload": True}) as client:
        await client.poll_stats(lambda s: s["state"] == "failed", "the failed download")
    assert any(MISSING in request for request in hub.requests), hub.requests
