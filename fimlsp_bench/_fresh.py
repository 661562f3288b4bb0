"""`fimlsp serve` with KV reuse off: the "reuse off" contender of `fimlsp bench session`.

The local engine has no switch for it (reuse is the point of its sessions), so this process
drops the document's engine session before every generation: each request starts from an empty
cache and prefills its whole prompt, exactly what `model.generate()` per request would cost.
Everything else — prompts, sticky edges, typing-through, recent answers, the policy — is the
shipped server's. Run as `python -m fimlsp_bench._fresh serve ...` (the CLI's arguments).
"""

from __future__ import annotations

import sys
from typing import Any


def forget_before_each_request() -> None:
    """Wraps `LocalEngine.generate` so that each call finds no session for its document."""
    from fimlsp.engine.local import LocalEngine

    shipped = LocalEngine.generate

    def generate(self: LocalEngine, key: str, prompt: list[int], **kwargs: Any) -> Any:
        self.drop_session(key)
        return shipped(self, key, prompt, **kwargs)

    LocalEngine.generate = generate  # type: ignore[method-assign]


def main() -> int:
    forget_before_each_request()
    from fimlsp.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
