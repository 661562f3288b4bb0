"""`fimlsp serve | complete | prompt | models | options | demo | bench`.

Every subcommand takes the same model options as the server's initializationOptions, parsed by
the same `parse_settings` (the flags are generated from `Settings`: fimlsp/options.py), so a
setting means the same thing everywhere. Positions are 0-based LSP line / UTF-16 character.
Every error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from fimlsp import __version__, options
from fimlsp.config import Settings
from fimlsp.config import parse_settings as _parse
from fimlsp.errors import ErrorKind, FimError

log = logging.getLogger("fimlsp")


def _model_options(parser: argparse.ArgumentParser) -> None:
    options.add_flags(parser)  # one flag per setting, generated from config.Settings


def _settings(args: argparse.Namespace) -> Settings:
    parsed = _parse(options.given(args))
    for warning in parsed.warnings:
        print(warning, file=sys.stderr)
    return parsed.settings


def _position_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("--line", type=int, required=True, help="0-based line")
    parser.add_argument("--character", type=int, required=True,
                        help="0-based UTF-16 offset in the line")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _read(path: Path) -> str:
    """The file's text, or a one-line FimError: a typo in a path is not a crash."""
    if path.is_dir():
        raise FimError(ErrorKind.CONFIG, f"{path} is a directory; give a file to complete in")
    try:
        # newline="" keeps CRLF as the editor would see it.
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise FimError(ErrorKind.CONFIG, f"cannot read {path}: {reason}") from None


def cmd_prompt(args: argparse.Namespace) -> int:
    text = _read(args.file)  # before importing torch: a wrong path fails at once
    from fimlsp.completer import Completer

    completer = Completer(_settings(args))
    cursor = completer.cursor_for(text, args.line, args.character)
    prompt = completer.prompt_for(cursor)
    if args.json:
        print(json.dumps({"text": prompt.text, "ids": prompt.ids, **prompt.accounting()},
                         ensure_ascii=False))
    else:
        print(prompt.text)
        print(json.dumps(prompt.accounting()), file=sys.stderr)
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    text = _read(args.file)  # before importing torch: a wrong path fails at once
    from fimlsp.completer import Completer

    completer = Completer(_settings(args))
    cursor = completer.cursor_for(text, args.line, args.character)
    completer.load()
    result = completer.complete(str(args.file.resolve()), cursor)
    fields = ("text", "prompt_tokens", "reused_tokens", "prefill_ms", "decode_ms",
              "generated_tokens", "source")
    timings = result.timings()
    if args.json:
        print(json.dumps({k: timings[k] for k in fields}, ensure_ascii=False))
    else:
        print(result.text)
        print(result.log_line(str(args.file)), file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from fimlsp.models import PRESETS, TEMPLATES, weights_present

    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        rows.append({"name": preset.name, "hub_id": preset.hub_id, "params": preset.params,
                     "window": preset.window, "format": f"{preset.template}/{preset.order}",
                     "local": weights_present(preset.hub_id), "note": preset.note})
    if args.json:
        print(json.dumps({"presets": rows, "templates": list(TEMPLATES)}))
        return 0
    # Columns as wide as their longest entry: a hub id is what users copy, never cut it short.
    name_w = max(len("preset"), *(len(r["name"]) for r in rows)) + 2
    hub_w = max(len("hub id"), *(len(r["hub_id"]) for r in rows)) + 2
    format_w = max(len("format"), *(len(r["format"]) for r in rows)) + 2
    print(f"{'preset':<{name_w}}{'hub id':<{hub_w}}{'params':>7}{'window':>8}  "
          f"{'format':<{format_w}}local")
    for r in rows:
        line = (f"{r['name']:<{name_w}}{r['hub_id']:<{hub_w}}{r['params']:>7}{r['window']:>8}  "
                f"{r['format']:<{format_w}}{'yes' if r['local'] else 'no':<6}{r['note']}")
        print(line.rstrip())
    print(f"\ntemplates for --template: {', '.join(TEMPLATES)}")
    print("local = weights found in the Hugging Face cache; a local directory works as --model too")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    if args.markdown:
        print(options.markdown(), end="")
    elif args.json:
        print(options.as_json())
    else:
        print(options.text(), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from fimlsp.lsp.stdio import serve_stdio
    from fimlsp.lsp.transport import Listen
    from fimlsp.server import create_server

    listen = Listen(args.host, args.port, args.socket, args.token_file, args.allow_remote,
                    args.allow_multiple_clients)
    listen.check()  # before the try: its error must exit 2, not be swallowed by os._exit below
    settings = _settings(args)
    server = create_server(settings)
    code = 1
    try:
        if args.tcp or args.socket:
            from fimlsp.lsp import transport

            transport.serve(server, lambda: create_server(settings), listen)
            code = 0
        else:
            code = serve_stdio(server.protocol)
    except SystemExit as exit_:  # `exit` on TCP: the protocol raises SystemExit(0 or 1)
        code = exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # never leave with 0 and nothing said (os._exit below skips it all)
        log.exception("fimlsp serve failed")
        traceback.print_exc()
        code = 1
    finally:
        server.scheduler.shutdown()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # the client may have closed stdout
                stream.flush()
        # Leave now: the stdin reader thread would block interpreter shutdown until the editor
        # closes the pipe, and a model still loading would hold it for minutes.
        os._exit(code)


def cmd_download(args: argparse.Namespace) -> int:
    """The one command that reaches the hub by itself: the user typed it."""
    from fimlsp import hub
    from fimlsp.models import hub_id_of

    source = hub_id_of(args.model)
    print(f"downloading {source} (config, tokenizer, weights) into the Hugging Face cache",
          file=sys.stderr)
    try:
        folder = hub.download(source)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"fimlsp: could not download {source}: {type(error).__name__}"
              + (f": {reason}" if reason else ""), file=sys.stderr)
        return 2
    print(folder)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fimlsp.tools.demo import run_demo

    return run_demo(model=args.model, json_output=args.json)


def cmd_bench(args: argparse.Namespace) -> int:
    return load_benchmarks().run(args.name, args.args)


def load_benchmarks(roots: tuple[Path, ...] | None = None) -> Any:
    """The benchmarks live beside the package in the source checkout (`fimlsp_bench/`), not in
    the wheel: a user's install carries only what the server needs. An editable install already
    puts the checkout on the path; a plain install run from a checkout finds it in the working
    directory or beside the imported package."""
    try:
        return importlib.import_module("fimlsp_bench")
    except ModuleNotFoundError as error:
        if error.name != "fimlsp_bench":
            raise
    for root in roots or (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "fimlsp_bench" / "__init__.py").is_file():
            sys.path.insert(0, str(root))
            return importlib.import_module("fimlsp_bench")
    raise FimError(ErrorKind.UNSUPPORTED,
                   "the benchmarks are not installed: they live in the source checkout "
                   "(fimlsp_bench/); run `fimlsp bench` from a checkout or after "
                   "`pip install -e '.[bench]'` there")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fimlsp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fimlsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server (stdio unless --tcp)")
    _model_options(serve)
    serve.add_argument("--tcp", action="store_true", help="listen on TCP instead of stdio; "
                       "clients send the token from --token-file as initializationOptions.token")
    serve.add_argument("--host", default="127.0.0.1", help="TCP address (default: loopback only)")
    serve.add_argument("--port", type=int, default=2087, help="TCP port (0: any free port)")
    serve.add_argument("--token-file", type=Path, help="where to write the TCP token, 0600 "
                       "(default: $XDG_RUNTIME_DIR/fimlsp-PORT.token); $FIMLSP_TOKEN sets it")
    serve.add_argument("--socket", type=Path, metavar="PATH",
                       help="listen on a Unix domain socket (0600, owner only) instead of stdio")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow --host beyond loopback (the token crosses the network)")
    serve.add_argument("--allow-multiple-clients", action="store_true",
                       help="serve several connections at once, each its own session and model")
    serve.set_defaults(func=cmd_serve)

    complete = sub.add_parser("complete", help="complete at a position and print the timings")
    _position_options(complete)
    _model_options(complete)
    complete.set_defaults(func=cmd_complete)

    prompt = sub.add_parser(
        "prompt", help="print the exact prompt and its token accounting",
        description="The prompt for a file at a position, built from scratch. A running server "
        "keeps each document's window edges where they were while the user types (so its "
        "cache is reused), so its prompt can start a few lines elsewhere than this one "
        "(the server's log line for each request gives its prompt's token count).")
    _position_options(prompt)
    _model_options(prompt)
    prompt.set_defaults(func=cmd_prompt)

    models = sub.add_parser("models", help="list presets and whether their weights are local")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    listing = sub.add_parser("options", help="every server option: flag, default, meaning")
    form = listing.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="the table README.md carries")
    form.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_options)

    download = sub.add_parser("download", help="fetch a model into the local Hugging Face "
                              "cache (nothing else ever downloads unless --allow-download)")
    download.add_argument("model", help="preset name or hub id")
    download.set_defaults(func=cmd_download)

    demo = sub.add_parser("demo", help="start the server and complete a sample file through it")
    demo.add_argument("--model", help="model to use (default: a real cached model, else a tiny "
                      "random-weight one)")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)
    bench = sub.add_parser("bench", help="run a benchmark (`fimlsp bench NAME --help`)")
    bench.add_argument("name", help="engine | policy | prompt | …")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", None) or "info"
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("pygls", "httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except FimError as error:
        print(f"fimlsp: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fimlsp models | head`: the reader left, nothing to say
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return 1
    except Exception as error:  # a bug: one line for the user, the traceback on request
        if os.environ.get("FIMLSP_TRACEBACK"):
            raise
        first = str(error).strip().splitlines()
        print(f"fimlsp: internal error, {type(error).__name__}: "
              f"{first[0] if first else '(no message)'} (FIMLSP_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 1
