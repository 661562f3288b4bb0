"""Serving on a socket: TCP with a token, or a Unix domain socket only its owner can open.

stdio needs no access control: only the editor that started the server holds its pipes. A socket
is open to every local process (and, bound beyond loopback, to the network), and the server
holds the user's open documents. So:

- TCP: the server writes a random token to a file only the user can read (0600; or takes it from
  `FIMLSP_TOKEN` in its environment) and a client must send it as `initializationOptions.token`
  in its first message, `initialize`. Anything else from a connection that has not shown the
  token gets one error answer and the connection is closed.
- `--socket PATH`: a Unix domain socket created 0600; the file permission is the access control.
- One client per server: a later connection is refused while one is served, and the server ends
  when its client leaves, as with stdio. `--allow-multiple-clients` gives each connection its own
  session (documents, answers, model) instead: connections never share anything.
- Binding beyond loopback needs `--allow-remote`, and warns: the token crosses the network in
  clear text.

Why not pygls's `start_tcp` (pygls 2.1.1): it points the one protocol's writer at every new
connection, so a second connection receives the first client's responses from then on and can
read its documents with `fimlsp.prompt`; nothing is authenticated; and any connection ending shuts
the server down. Nor pygls's reader (`run_async`): it buffers whatever length a peer announces
before anyone is authenticated, keeps every idle connection, and logs an over-long header line
as an unhandled traceback. Each connection here is read by the decoder stdio uses
(`framing.FrameDecoder`, events answered by `protocol.dispatch`), so both transports give the
same answers to the same bytes, with limits that bind before a connection is admitted:

- the first message must be `initialize` with the token, and nothing else is read or answered
  before it: any other event (another method, garbage, an unparsable or over-long body) closes
  the connection;
- until then a body may be `UNAUTHENTICATED_MAX_BYTES` (the editors' initialize is a few KiB),
  afterwards `framing.MAX_MESSAGE_BYTES` as on stdio; header lines are bounded by the decoder;
- at most `MAX_PENDING` connections wait to be admitted (a new one pushes the oldest waiting
  out, so idle strangers cannot keep the editor from connecting) and `MAX_CONNECTIONS` are open
  at all; a waiting one is closed after `ADMIT_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fimlsp.errors import ErrorKind, FimError
from fimlsp.lsp.framing import (
    MAX_MESSAGE_BYTES,
    FrameDecoder,
    Message,
    Skipped,
    TooLarge,
    Unparsable,
    encode,
)
from fimlsp.lsp.protocol import dispatch
from fimlsp.lsp.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from fimlsp.server import FimServer

log = logging.getLogger("fimlsp")

TOKEN_OPTION = "token"
TOKEN_ENV = "FIMLSP_TOKEN"
UNAUTHORIZED = -32001  # JSON-RPC's server-defined range; LSP has no code for it
ADMIT_TIMEOUT_S = 30.0  # a connection that has not sent its initialize by then is closed
UNAUTHENTICATED_MAX_BYTES = 256 * 1024  # largest body before the token was shown
MAX_PENDING = 8  # connections waiting to be admitted at once; the oldest goes for a new one
MAX_CONNECTIONS = 64  # open connections at all (admitted ones: with --allow-multiple-clients)
READ_BYTES = 1 << 16


@dataclass(frozen=True)
class Listen:
    """Where and how to listen, checked before anything starts."""

    host: str = "127.0.0.1"
    port: int = 2087
    socket_path: Path | None = None
    token_file: Path | None = None
    allow_remote: bool = False
    allow_multiple: bool = False

    def check(self) -> None:
        if self.socket_path is None and not is_loopback(self.host) and not self.allow_remote:
            raise FimError(ErrorKind.CONFIG,
                           f"--host {self.host or '(all interfaces)'} is reachable from other "
                           "machines: pass --allow-remote to mean it (clients then need the "
                           "token, which travels unencrypted), or use 127.0.0.1 or --socket.")

    @property
    def remote(self) -> bool:
        return self.socket_path is None and not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (empty: all interfaces)."""
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def default_token_file(port: int) -> Path:
    """Beside the user's other runtime secrets when there is such a place."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".cache" / "fimlsp"
    return base / f"fimlsp-{port}.token"


def write_token(path: Path, token: str) -> None:
    """Writes `token` to a new file that only the user can read (0600, in a 0700 folder if we
    create it); an existing file is replaced, never reused with its old permissions."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")


def _take_token(params: Any) -> Any:
    """The token from initialize's params, removed from them: it is not a setting, and must not
    reach the settings' warnings or any log."""
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    if not isinstance(options, dict):
        return None
    token = options.pop(TOKEN_OPTION, None)
    nested = options.get("fimlsp")
    if isinstance(nested, dict) and TOKEN_OPTION in nested:
        token = nested.pop(TOKEN_OPTION) if token is None else token
    return token


class Listener:
    """Accepts connections and admits them to a session."""

    def __init__(self, first: FimServer, make: Callable[[], FimServer], listen: Listen,
                 token: str | None) -> None:
        self.first: FimServer | None = first  # the session of the one client (or the first)
        self.make = make
        self.listen = listen
        self.token = token
        self.served = 0  # admitted connections still open
        self.connections = 0  # open connections, admitted or not
        self.pending: list[Gate] = []  # connections not admitted yet, oldest first
        self.finished = asyncio.Event()
        self.complain = RateLimitedLog(log)  # strangers' attempts: stderr, never a flood

    def refusal(self, token: Any) -> str | None:
        """Why a connection showing `token` may not have a session, or None."""
        if self.token is not None and not (
                isinstance(token, str)
                and hmac.compare_digest(token.encode(), self.token.encode())):
            return ("not authenticated: send the server's token as initializationOptions.token "
                    "(it is in the token file the server named on start)")
        if self.served and not self.listen.allow_multiple:
            return ("another client is connected; start another server, or this one with "
                    "--allow-multiple-clients")
        return None

    def claim(self) -> FimServer:
        self.served += 1
        session, self.first = (self.first or self.make()), None
        if self.listen.allow_multiple or self.listen.remote:
            session.watch_parent_process = False  # a client's pid is not ours to watch
        return session

    def left(self, session: FimServer) -> None:
        self.served -= 1
        if self.listen.allow_multiple:
            session.scheduler.shutdown()  # its model goes with it
        else:
            self.finished.set()  # one client: the server's life is the client's, as on stdio

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            log.warning("connection refused: %d connections are open", self.connections)
            writer.close()
            return
        gate = Gate(self, writer)
        self.connections += 1
        self.pending.append(gate)
        while len(self.pending) > MAX_PENDING:  # strangers that say nothing cannot crowd us
            self.pending[0].close("too many connections waiting to be admitted")
        timer = asyncio.get_running_loop().call_later(ADMIT_TIMEOUT_S, gate.expire)
        try:
            await gate.read(reader)
        except (OSError, asyncio.IncompleteReadError) as error:
            log.info("connection ended: %s", type(error).__name__)
        finally:
            timer.cancel()
            self.connections -= 1
            if gate in self.pending:
                self.pending.remove(gate)
            writer.close()
            if gate.session is not None:
                self.left(gate.session)


class Gate:
    """One connection: its bytes through the framing decoder, and nothing to a session before
    the connection is admitted (the token shown in `initialize`)."""

    def __init__(self, listener: Listener, writer: asyncio.StreamWriter) -> None:
        self.listener = listener
        self.writer = writer
        self.closed = False
        self.session: FimServer | None = None
        self.decoder = FrameDecoder(UNAUTHENTICATED_MAX_BYTES)

    async def read(self, reader: asyncio.StreamReader) -> None:
        while not self.closed:
            chunk = await reader.read(READ_BYTES)
            if not chunk:
                truncated = self.decoder.finish()
                if truncated is not None and self.session is not None:
                    log.info("connection ended inside a message: %s", truncated.reason)
                return
            for event in self.decoder.feed(chunk):
                if self.closed:
                    return
                self.handle(event)
                # As on stdio: a handler just started takes its first step before the next
                # message changes what it reads.
                await asyncio.sleep(0)

    def handle(self, event: Any) -> None:
        if self.session is not None:
            message = event.value if isinstance(event, Message) else None
            if self.listener.listen.allow_multiple and isinstance(message, dict) \
                    and message.get("method") == "exit":
                self.close()  # ends this session only; the protocol's exit ends the process
                return
            dispatch(self.session.protocol, event)  # SystemExit on `exit`: the process ends
            return
        message = event.value if isinstance(event, Message) else None
        is_initialize = isinstance(message, dict) and message.get("method") == "initialize" \
            and "id" in message
        if not is_initialize:
            self.refuse(message, _why_not(event))
            return
        assert isinstance(message, dict)
        reason = self.listener.refusal(_take_token(message.get("params")))
        if reason is not None:
            self.refuse(message, reason)
            return
        session = self.session = self.listener.claim()
        if self in self.listener.pending:
            self.listener.pending.remove(self)
        self.decoder.max_body = MAX_MESSAGE_BYTES
        session.protocol.set_writer(self.writer)  # type: ignore[arg-type]
        log.info("client admitted")
        dispatch(session.protocol, Message(message))

    def refuse(self, message: Any, reason: str) -> None:
        request_id = message.get("id") if isinstance(message, dict) else None
        if isinstance(request_id, (int, str)) and not isinstance(request_id, bool):
            with contextlib.suppress(OSError, RuntimeError):
                refusal = {"jsonrpc": "2.0", "id": request_id, "error": {
                    "code": UNAUTHORIZED, "message": f"fimlsp: {reason}"}}
                self.writer.write(encode(json.dumps(refusal)))
        self.close(reason)

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        if reason and self.session is None:
            self.listener.complain(logging.WARNING, "connection refused: %s", reason)
        self.closed = True
        if self in self.listener.pending:
            self.listener.pending.remove(self)
        self.writer.close()

    def expire(self) -> None:
        if self.session is None:
            self.close(f"no initialize within {ADMIT_TIMEOUT_S:.0f}s")


def _why_not(event: Any) -> str:
    """Why a connection's first event does not admit it, for the log."""
    if isinstance(event, TooLarge):
        return (f"not authenticated: a {event.length}-byte message before initialize (at most "
                f"{UNAUTHENTICATED_MAX_BYTES} until the token is shown)")
    if isinstance(event, Unparsable):
        return f"not authenticated: an unparsable first message ({event.reason})"
    if isinstance(event, Skipped):
        return f"not authenticated: {event.size} bytes that are no message ({event.reason})"
    return "not authenticated: the first message must be initialize, with the token"


def _prepare_socket_path(path: Path) -> None:
    """Removes a stale socket file; refuses to touch anything else, or a live server's socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FimError(ErrorKind.CONFIG, f"{path} exists and is not a socket; not replacing it.")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: left over from a server that was killed
        return
    finally:
        probe.close()
    raise FimError(ErrorKind.CONFIG, f"{path}: another server is listening there.")


async def _serve(first: FimServer, make: Callable[[], FimServer], listen: Listen) -> None:
    token_file: Path | None = None
    if listen.socket_path is not None:
        path = listen.socket_path.expanduser().absolute()
        _prepare_socket_path(path)
        listener = Listener(first, make, listen, token=None)
        old = os.umask(0o177)  # created 0600: no moment when others could connect
        try:
            server = await asyncio.start_unix_server(listener.connected, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        log.info("fimlsp listening on %s (owner only)", path)
    else:
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
        listener = Listener(first, make, listen, token)
        server = await asyncio.start_server(listener.connected, listen.host, listen.port)
        port = server.sockets[0].getsockname()[1]
        where = f"{listen.host}:{port}"
        if os.environ.get(TOKEN_ENV):
            log.info("fimlsp listening on %s; token from %s", where, TOKEN_ENV)
        else:
            token_file = listen.token_file or default_token_file(port)
            write_token(token_file, token)
            log.info("fimlsp listening on %s; token in %s", where, token_file)
        if listen.remote:
            log.warning("fimlsp is reachable from other machines (%s): anyone who learns the "
                        "token can read the documents you open, and the token is not "
                        "encrypted on the way", where)
    try:
        async with server:
            await listener.finished.wait()
    finally:
        if token_file is not None:
            with contextlib.suppress(OSError):
                token_file.unlink()
        if listen.socket_path is not None:
            with contextlib.suppress(OSError):
                listen.socket_path.expanduser().absolute().unlink()


def serve(first: FimServer, make: Callable[[], FimServer], listen: Listen) -> None:
    """Serves until the one client leaves (or, with several clients allowed, until killed).
    The protocol's `exit` ends the process with its exit code, as on stdio."""
    listen.check()
    asyncio.run(_serve(first, make, listen))
