"""Loading with a serving engine: the laptop needs the model's config and tokenizer, no weights,
and an endpoint that is down is a status, not a failed load (requests try again later)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.engine.remote import RemoteEngine
from fimlsp_bench._vllm import free_port


def test_no_weights_needed_and_a_down_endpoint_is_a_status(trained_model: Path,
                                                           tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        shutil.copy(trained_model / name, tmp_path / name)
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.bin"))
    port = free_port()  # nothing listens there
    completer = Completer(Settings(model=str(tmp_path), engine="openai",
                                   endpoint=f"http://127.0.0.1:{port}", connect_timeout_ms=500))
    completer.load()
    assert completer.ready and isinstance(completer.engine, RemoteEngine)
    assert completer.window == 2048  # from the model's config.json
    report = completer.stats_report()
    assert report["engine"] == "openai"
    assert report["endpoint"] == f"http://127.0.0.1:{port}/v1"  # the API's /v1 added
    assert report["endpoint_status"] == "unreachable: connection refused"
    assert "unreachable" in report["device"]  # what the editors' status lines show
