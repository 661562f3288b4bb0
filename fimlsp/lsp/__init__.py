"""The protocol room: bytes on a transport → checked JSON-RPC/LSP messages → pygls's handlers.

- `framing`: LSP frames out of a byte stream (sans-IO);
- `stdio`, `transport`: serving on stdin/stdout, or on a TCP or Unix socket;
- `protocol`: the order of JSON-RPC/LSP checks and one answer per request (`checks` holds the
  stateless checks, `outbox` writes, `ratelimit` keeps complaints short);
- `sync`: document sync into `fimlsp.documents`, never into pygls's workspace;
- `pygls_seam`: every use of pygls's private API, and why.

The server's features (completion, commands) are `fimlsp.server`'s; nothing here imports it at
run time (`transport` names its type for the checker).
"""
