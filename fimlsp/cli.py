"""`fimlsp serve | complete | prompt | models | demo | bench`.

Every subcommand takes the same model options as the server's initializationOptions, parsed by
the same `parse_settings`, so a setting means the same thing everywhere. Positions are 0-based
LSP line / UTF-16 character.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from fimlsp import __version__
from fimlsp.config import DEVICES, DTYPES, LOG_LEVELS, MULTILINE, QUANTIZATIONS, Settings
from fimlsp.config import parse_settings as _parse
from fimlsp.errors import FimError

log = logging.getLogger("fimlsp")


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="preset name, hub id or local directory "
                       f"(default: {Settings.model})")
    group.add_argument("--template", help="FIM family for a model the presets do not know")
    group.add_argument("--tokenizer", help="tokenizer directory or hub id, if not the model's")
    group.add_argument("--device", choices=DEVICES)
    group.add_argument("--dtype", choices=DTYPES)
    group.add_argument("--quantization", choices=QUANTIZATIONS)
    group.add_argument("--threads", type=int)
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--context-window", type=int, help="shrink the model's window")
    group.add_argument("--temperature", type=float)
    group.add_argument("--time-budget-ms", type=int)
    group.add_argument("--multiline", choices=MULTILINE)
    group.add_argument("--log-level", choices=LOG_LEVELS)
    group.add_argument("--allow-download", action="store_true", default=None,
                       help="fetch a model that is not in the local Hugging Face cache "
                       "(default: never touch the network)")


def _settings(args: argparse.Namespace) -> Settings:
    names = ("model", "template", "tokenizer", "device", "dtype", "quantization", "threads",
             "max_new_tokens", "context_window", "temperature", "time_budget_ms", "multiline",
             "log_level", "allow_download")
    options = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    parsed = _parse(options)
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
    # newline="" keeps CRLF as the editor would see it.
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return handle.read()


def cmd_prompt(args: argparse.Namespace) -> int:
    from fimlsp.completer import Completer

    completer = Completer(_settings(args))
    cursor = completer.cursor_for(_read(args.file), args.line, args.character)
    prompt = completer.prompt_for(cursor)
    if args.json:
        print(json.dumps({"text": prompt.text, "ids": prompt.ids, **prompt.accounting()},
                         ensure_ascii=False))
    else:
        print(prompt.text)
        print(json.dumps(prompt.accounting()), file=sys.stderr)
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from fimlsp.completer import Completer

    completer = Completer(_settings(args))
    cursor = completer.cursor_for(_read(args.file), args.line, args.character)
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
    print(f"{'preset':<22}{'hub id':<42}{'params':>7}{'window':>8}  {'format':<22}{'local':<6}")
    for r in rows:
        print(f"{r['name']:<22}{r['hub_id'][:41]:<42}{r['params']:>7}{r['window']:>8}  "
              f"{r['format']:<22}{'yes' if r['local'] else 'no':<6}{r['note']}")
    print(f"\ntemplates for --template: {', '.join(TEMPLATES)}")
    print("local = weights found in the Hugging Face cache; a local directory works as --model too")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from fimlsp.server import create_server
    from fimlsp.transport import Listen

    listen = Listen(args.host, args.port, args.socket, args.token_file, args.allow_remote,
                    args.allow_multiple_clients)
    listen.check()  # before the try: its error must exit 2, not be swallowed by os._exit(0)
    settings = _settings(args)
    server = create_server(settings)
    code = 0
    try:
        if args.tcp or args.socket:
            from fimlsp import transport

            transport.serve(server, lambda: create_server(settings), listen)
        else:
            server.start_io()
    except SystemExit as exit_:  # pygls ends `exit` with sys.exit(0 or 1)
        code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        server.scheduler.shutdown()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # pygls may have closed stdout
                stream.flush()
        # Leave now: pygls's stdin reader thread would block interpreter shutdown until the
        # editor closes the pipe, and a model still loading would hold it for minutes.
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
    from fimlsp.demo import run_demo

    return run_demo(model=args.model, json_output=args.json)


def cmd_bench(args: argparse.Namespace) -> int:
    from fimlsp.bench import run

    return run(args.name, args.args)


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

    prompt = sub.add_parser("prompt", help="print the exact prompt and its token accounting")
    _position_options(prompt)
    _model_options(prompt)
    prompt.set_defaults(func=cmd_prompt)

    models = sub.add_parser("models", help="list presets and whether their weights are local")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

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
