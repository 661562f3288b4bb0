"""Writes the server-options tables of README.md and docs/configuration.md from `Settings`.

    python scripts/options_docs.py          # rewrite the tables between their markers
    python scripts/options_docs.py --check  # exit 1 if a committed table is stale

README.md gets `fimlsp options --markdown`; docs/configuration.md the same rows with each
client's name for the option, read from the clients' own files (which settings VS Code declares,
which defcustoms Emacs has). The readers are also what tests/test_options.py uses to check that
every client's defaults agree with the server's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fimlsp import options  # noqa: E402  (this checkout's package, not an installed one)

BEGIN = "<!-- BEGIN options table: written by scripts/options_docs.py from fimlsp/config.py -->"
END = "<!-- END options table -->"


# -- the clients' own files, read as text (no editor needed) ---------------------------------


def vscode_settings(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """`contributes.configuration.properties` of the extension, keyed without `fimlsp.`."""
    package = json.loads((root / "editors/vscode/package.json").read_text(encoding="utf-8"))
    properties = package["contributes"]["configuration"]["properties"]
    return {key.removeprefix("fimlsp."): value for key, value in properties.items()}


def vscode_sent(root: Path = ROOT) -> list[str]:
    """The settings the extension sends as server options (`SERVER_OPTIONS` in extension.ts)."""
    source = (root / "editors/vscode/src/extension.ts").read_text(encoding="utf-8")
    block = re.search(r"const SERVER_OPTIONS = \[(.*?)\]", source, re.S)
    assert block, "SERVER_OPTIONS not found in extension.ts"
    return re.findall(r"'(\w+)'", block.group(1))


def _lua_value(text: str) -> Any:
    text = text.strip()
    if text[:1] in ("'", '"'):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "nil":
        return None
    return float(text) if "." in text else int(text)


_LUA_PAIR = re.compile(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|-?[\d.]+|true|false|nil)")


def neovim_server_defaults(root: Path = ROOT) -> dict[str, Any]:
    """What `M.defaults` says about server options: the values it sets in `server = {…}` and
    the server defaults its comment lists just above (`--   maxNewTokens = 64, ...`)."""
    source = (root / "editors/neovim/lua/fimlsp/init.lua").read_text(encoding="utf-8")
    defaults = source[source.index("M.defaults = {"):]
    server = re.search(r"\n  server = \{(.*?)\},\n", defaults, re.S)
    assert server, "server = {...} not found in M.defaults"
    # The indented comment lines right above `server = {` (`  --   key = value, ...`).
    above = defaults[:server.start()].splitlines()
    comment: list[str] = []
    for line in reversed(above):
        if not re.match(r"\s*--   \w", line):
            break
        comment.append(line)
    found: dict[str, Any] = {}
    for line in comment:
        code = line.strip()[2:].split("--")[0]  # the example, without its trailing comment
        for key, value in _LUA_PAIR.findall(code):
            found[key] = _lua_value(value)
    for key, value in _LUA_PAIR.findall(server.group(1)):
        found[key] = _lua_value(value)
    return found


@dataclass
class EmacsOption:
    variable: str
    value: str  # the defcustom's default, as Lisp
    claimed: Any  # the server default its docstring names in [brackets], if a literal
    choices: list[str] | None  # the (const "…") values of its :type, without nil


def emacs_options(root: Path = ROOT) -> dict[str, EmacsOption]:
    """The defcustoms `fimlsp-initialization-options` sends, keyed by the camelCase option."""
    source = (root / "editors/emacs/fimlsp.el").read_text(encoding="utf-8")
    mapping = dict(re.findall(r"\(:(\w+) \. (fimlsp-[\w-]+)\)", source))
    result = {}
    for key, variable in mapping.items():
        match = re.search(rf"\(defcustom {re.escape(variable)} (\S+)\s*\n\s*\"((?:[^\"\\]|\\.)*)\""
                          r"(.*?)(?=\n\(|\n\n)", source, re.S)
        assert match, f"no defcustom for {variable}"
        doc = match.group(2).replace('\\"', '"')
        claimed = None
        bracket = re.search(r"\[(?:server default )?(?:\"([^\"]*)\"|(-?\d[\d.]*))", doc)
        if bracket:
            claimed = bracket.group(1) if bracket.group(1) is not None else _lua_value(
                bracket.group(2))
        consts = re.findall(r"\(const \"([^\"]*)\"\)", match.group(3))
        result[key] = EmacsOption(variable, match.group(1), claimed, consts or None)
    return result


# -- the tables ---------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def configuration_table(root: Path = ROOT) -> str:
    """The table of docs/configuration.md: the server's rows plus each client's name."""
    vscode = vscode_settings(root)
    emacs = emacs_options(root)
    rows = ["| option | flag | default | meaning | VS Code (`settings.json`) | "
            "Neovim (`setup{ server = {…} }`) | Emacs (`M-x customize-group fimlsp`) |",
            "|---|---|---|---|---|---|---|"]
    for o in options.all_options():
        code = f"`fimlsp.{o.camel}`" if o.camel in vscode else \
            f"`{o.flag}` in `fimlsp.serverCommand`"
        lisp = f"`{emacs[o.camel].variable}`" if o.camel in emacs else \
            f"`fimlsp-extra-options` (`:{o.camel}`)"
        rows.append(f"| `{o.camel}` | `{o.flag}` | {_cell(o.default_text())} | "
                    f"{_cell(o.meaning())} | {code} | `{o.camel}` | {lisp} |")
    return "\n".join(rows) + "\n"


def replace_block(text: str, table: str, where: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{where}: the markers {BEGIN!r} … {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def rendered(root: Path = ROOT) -> dict[Path, str]:
    """Each documentation file as it should read."""
    readme, configuration = root / "README.md", root / "docs/configuration.md"
    return {
        readme: replace_block(readme.read_text(encoding="utf-8"), options.markdown(), "README.md"),
        configuration: replace_block(configuration.read_text(encoding="utf-8"),
                                     configuration_table(root), "docs/configuration.md"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are current")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(map(str, stale))}; run python scripts/options_docs.py",
              file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
