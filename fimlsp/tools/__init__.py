"""Tools around the server, not on its path: `fimlsp demo` (start the server and complete a file
through it), the LSP client it drives, the tiny random-weight models and the fixture finder that
the demo, the benchmarks and the tests share. They ship because `fimlsp demo` is how a user checks
an install; no module the server runs imports them (tests/test_architecture.py)."""
