"""The layout docs/architecture.md describes is the layout on disk, and imports follow it.

docs/architecture.md's table of rooms gives each runtime module a layer; these tests read that
table, so the document cannot drift from the tree: every module it names exists, every module
that exists is named once, a module imports only from its own layer or those below, nothing
the server runs imports the benchmarks, the tests or the tools beside it, and a module over
~450 lines says in its docstring why it is long.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fimlsp"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
LONG = 450  # lines; the "~450" with no tolerance hidden in the number
WHY_LONG = "Why one module:"  # the docstring paragraph a longer module must carry
OUTSIDE = ("fimlsp_bench", "tests", "shared_fixtures", "conftest")  # never imported by fimlsp


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, name: str) -> set[str]:
    """Modules `path` imports when it runs (an `if TYPE_CHECKING:` block runs never)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def rooms() -> dict[str, tuple[int, str]]:
    """module → (layer, room), from the rows of docs/architecture.md's table of rooms:
    `| layer | room | modules | … |` with the modules in backticks, `pkg.*` for a whole
    subpackage."""
    table: dict[str, tuple[int, str]] = {}
    every = modules()
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        row = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(row) < 3 or not row[0].isdigit():
            continue
        layer, room = int(row[0]), row[1]
        for named in re.findall(r"`([^`]+)`", row[2]):
            full = named if named.startswith("fimlsp") else f"fimlsp.{named}"
            if full.endswith(".*"):
                base = full[:-2]
                matched = [m for m in every if m == base or m.startswith(base + ".")]
                assert matched, f"docs/architecture.md names {named}, which matches no module"
            else:
                assert full in every, f"docs/architecture.md names {named}, which does not exist"
                matched = [full]
            for module in matched:
                assert module not in table, f"{module} is in two rooms of docs/architecture.md"
                table[module] = (layer, room)
    return table


def test_architecture_names_every_module_and_only_modules_that_exist() -> None:
    table = rooms()
    assert table, "docs/architecture.md has no table of rooms"
    unnamed = sorted(set(modules()) - set(table))
    assert unnamed == [], f"modules docs/architecture.md does not place: {unnamed}"


def test_imports_go_down_the_layers_never_up() -> None:
    table = rooms()
    upward = []
    for name, path in modules().items():
        layer, room = table[name]
        for target in imports(path, name):
            if target in table and table[target][0] > layer:
                upward.append(f"{name} ({room}, layer {layer}) imports {target} "
                              f"({table[target][1]}, layer {table[target][0]})")
    assert upward == []


def test_the_server_never_imports_benchmarks_tests_or_the_tools_beside_it() -> None:
    table = rooms()
    wrong = []
    for name, path in modules().items():
        for target in imports(path, name):
            top = target.split(".")[0]
            if top in OUTSIDE:
                wrong.append(f"{name} imports {target}")
            elif target.startswith("fimlsp.tools") and table[name][1] not in {"tools", "entry"}:
                wrong.append(f"{name} imports {target} (the tools are not on the serving path)")
    assert wrong == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_a_long_module_says_why(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if lines <= LONG:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    reason = doc.partition(WHY_LONG)[2].strip()
    assert len(reason) > 40, (f"{module_name(path)} has {lines} lines; split it by "
                              f"responsibility or give '{WHY_LONG} …' in its docstring")
