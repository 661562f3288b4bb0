"""The install story: the package builds as a wheel and an sdist with complete metadata, the
wheel installed elsewhere runs `fimlsp`, and no document points at a package that does not
exist. Builds run offline (`python -m build --no-isolation`: the venv's hatchling, no download).
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import fimlsp

ROOT = Path(__file__).resolve().parent.parent
TEST_EXTRAS = "pip install -e '.[test]'"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it (as `python -m build` does by default)."""
    for module in ("build", "hatchling"):
        pytest.importorskip(module, reason=f"{module} is a test extra: {TEST_EXTRAS}")
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                          str(ROOT)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PIP_NO_INDEX": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_wheel_metadata_is_complete(dist: dict[str, Path]) -> None:
    meta = wheel_metadata(dist["wheel"])
    assert meta["Name"] == "fimlsp"
    assert meta["Version"] == fimlsp.__version__
    assert dist["wheel"].name == f"fimlsp-{fimlsp.__version__}-py3-none-any.whl"
    assert meta["Summary"] and meta["Author"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "## Install" in meta.get_payload()  # the README is the long description
    classifiers = meta.get_all("Classifier") or []
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert {"gpu", "test"} <= set(meta.get_all("Provides-Extra") or [])
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("torch") for r in requires)
    assert any(r.startswith("bitsandbytes") and "extra == 'gpu'" in r for r in requires)


def test_wheel_holds_the_package_the_license_and_the_command_but_no_benchmarks(
        dist: dict[str, Path]) -> None:
    """A user's install carries what the server needs; the benchmarks and their corpus stay in
    the checkout (`fimlsp_bench/`, docs/architecture.md)."""
    with zipfile.ZipFile(dist["wheel"]) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    for module in (ROOT / "fimlsp").rglob("*.py"):
        assert module.relative_to(ROOT).as_posix() in names
    assert (ROOT / "fimlsp_bench" / "corpus" / "limiter.go").is_file()
    assert not [n for n in names if n.startswith("fimlsp_bench/") or "/bench/" in n
                or "corpus" in n]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "editors/", "docs/")) for n in names)
    assert "fimlsp = fimlsp.cli:main" in entry_points


def test_sdist_holds_the_sources_tests_docs_and_clients(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for path in ("pyproject.toml", "README.md", "LICENSE", "fimlsp/cli.py",
                 "fimlsp_bench/corpus/limiter.go", "fimlsp_bench/quality.py",
                 "tests/conftest.py", "docs/configuration.md", "docs/architecture.md",
                 "scripts/options_docs.py", "editors/vscode/package.json",
                 "editors/neovim/lua/fimlsp/init.lua", "editors/emacs/fimlsp.el"):
        assert path in names, path
    assert not any("node_modules/" in n or n.startswith(".ci/") for n in names)


def test_installed_wheel_runs_fimlsp_version_away_from_the_checkout(
        dist: dict[str, Path], tmp_path: Path) -> None:
    """The wheel as pip installs it, imported from the install, not from this checkout."""
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-index", "--target", str(site), str(dist["wheel"])],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    command = site / "bin" / "fimlsp"
    assert command.is_file()
    version = subprocess.run([str(command), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"fimlsp {fimlsp.__version__}"
    where = subprocess.run([sys.executable, "-c", "import fimlsp; print(fimlsp.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site)
    listed = subprocess.run([str(command), "options", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr


# -- what the documents tell a newcomer ----------------------------------------------------------


def _documents() -> list[Path]:
    found = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for path in (ROOT / "editors").rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & {"node_modules", ".test-deps", ".deps"} \
                and path.suffix in {".md", ".txt", ".lua", ".el", ".json", ".ts", ".sh"} \
                and path.name != "package-lock.json":
            found.append(path)
    return found


def test_no_document_installs_a_package_that_does_not_exist() -> None:
    """fimlsp is not on PyPI: `pip install fimlsp` (or `fimlsp[gpu]`) would fail or, worse,
    install someone else's package of that name. Paths (`.`, `/path/to/fimlsp`) are fine."""
    wrong = re.compile(r"\b(?:pip|pipx|uv pip) install (?:-U )?['\"]?fimlsp\b")
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in _documents()
                 for m in wrong.finditer(p.read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []


def test_readme_gives_the_install_story() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme[readme.index("## Install"):readme.index("## First suggestion")]
    for command in ("pipx install .", "pip install .", "'.[gpu]'", "fimlsp --version",
                    "pip install torch --index-url https://download.pytorch.org/whl/cpu"):
        assert command in install, command
    # The project's rule: the README opens with its two commands (demo, tests); the install story
    # follows at once, on the first screen.
    assert readme.index("make demo") < readme.index("make test") < readme.index("## Install")
    assert readme[:readme.index("## Install")].count("\n") <= 25


def test_install_scripts_set_only_npm_settings_npm_knows(tmp_path: Path) -> None:
    """npm warns `Unknown env config` for each setting it does not know (CI logs showed
    `unsafe-perm`, gone since npm 7). The one exception is code-server's own install: its
    postinstall.sh exits 1 as root unless `npm_config_unsafe_perm=true` (4.100.3), so that one
    command keeps it and npm warns once there."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (apt install npm); it checks its own settings")
    run = subprocess.run([npm, "config", "ls", "-l", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "npm_config_update_notifier": "false"})
    assert run.returncode == 0, run.stderr
    known = set(json.loads(run.stdout))
    for script in (ROOT / "editors").glob("*/install-deps.sh"):
        for name in re.findall(r"\bnpm_config_(\w+)=", script.read_text(encoding="utf-8")):
            if name == "unsafe_perm":
                assert script.parent.name == "vscode", script  # code-server's postinstall only
                continue
            assert name.replace("_", "-") in known, f"{script.relative_to(ROOT)}: {name}"
