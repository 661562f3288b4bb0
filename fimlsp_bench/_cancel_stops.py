"""`fimlsp serve` as it was before cancelled generations ran on: the "cancel stops" variant of
`fimlsp bench quality`.

The server has no switch for it (a generation the next keystroke types into is always worth
keeping), so this process never registers a running request (`Flights.start` does nothing):
the client's `$/cancelRequest` then stops the generation between tokens, and every request
starts its own. Everything else is the shipped server's. Run as
`python -m fimlsp_bench._cancel_stops serve ...` (the CLI's arguments).
"""

from __future__ import annotations

import sys


def stop_on_cancel() -> None:
    from fimlsp.inflight import Flights

    Flights.start = lambda self, key, flight: None  # type: ignore[method-assign]


def main() -> int:
    stop_on_cancel()
    from fimlsp.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
