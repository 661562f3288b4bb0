"""`apiKeyEnv` through the real server: names only, never echoed, never sent in the clear to
another host unless `apiKeyOverHttp` says so.

The engine is a stand-in HTTP server (no serving engine runs here) that records the headers it
receives; for "another host" it listens on this machine's non-loopback address, which a client
reaches the way it reaches any host on the network.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_lsp import running
from test_remote_dialects import StandIn, llamacpp_props

from fimlsp.config import parse_settings
from fimlsp.engine.remote import is_loopback

KEY = "hf_fimlspTestKey_0123456789"  # shaped like a real token, and a valid variable name too


def outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(address) else address


@pytest.fixture
def remote_engine() -> Iterator[StandIn]:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to listen on")
    stand_in = StandIn(host=address)
    stand_in.on("/props", llamacpp_props())
    yield stand_in
    stand_in.stop()


async def test_a_key_is_not_sent_over_plain_http_to_another_host(
        tiny_model: Path, tmp_path: Path, remote_engine: StandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIMLSP_TEST_KEY", KEY)
    options = {"engine": "llamacpp", "endpoint": remote_engine.url,
               "apiKeyEnv": "FIMLSP_TEST_KEY"}
    async with running(tiny_model, tmp_path, options) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "failed", stats
        assert "apiKeyOverHttp" in stats["error"] and "http://" in stats["error"]
        assert remote_engine.seen == []  # nothing went there, with or without the key
        assert any("apiKeyOverHttp" in m.message for m in client.shown)

        client.configure(apiKeyOverHttp=True)  # the user says so: it goes
        stats = await client.poll_stats(lambda s: s["state"] == "ready", "the reload")
        assert remote_engine.seen, stats
        assert all(s.headers["Authorization"] == f"Bearer {KEY}" for s in remote_engine.seen)
        everything = client.tail() + "".join(m.message for m in [*client.shown, *client.logged])
        assert KEY not in everything


async def test_a_value_that_is_no_variable_name_is_refused_and_not_echoed(
        tiny_model: Path, tmp_path: Path) -> None:
    pasted = "sk-proj-fimlsp-0123456789abcdef"  # a key pasted where the name goes
    async with running(tiny_model, tmp_path, {"engine": "llamacpp", "apiKeyEnv": pasted,
                                              "endpoint": "http://127.0.0.1:9"}) as client:
        await client.wait_loaded()
        warnings = [m.message for m in client.shown if "apiKeyEnv" in m.message]
        assert warnings and "environment variable" in warnings[0], client.shown
        everything = client.tail() + "".join(m.message for m in [*client.shown, *client.logged])
        assert pasted not in everything and "0123456789abcdef" not in everything


@pytest.mark.parametrize(("value", "accepted"), [
    ("FIMLSP_ENGINE_KEY", True), ("_private", True), ("key2", True), ("2KEY", False),
    ("MY-KEY", False), ("KEY NAME", False), ("$KEY", False), ("KEY=1", False), ("", True)])
def test_only_environment_variable_names(value: str, accepted: bool) -> None:
    parsed = parse_settings({"apiKeyEnv": value})
    assert (not parsed.warnings) is accepted
    assert all(value not in w for w in parsed.warnings if value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("localhost.example.com", False),
    ("192.0.2.2", False), ("gpu-box", False), ("0.0.0.0", False)])
def test_loopback_is_by_address_or_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
