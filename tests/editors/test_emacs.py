"""Emacs: `editors/emacs/fimlsp.el` beside eglot + pylsp, against the real server, in
`emacs --batch`.

Two Emacsen when installed (`bash editors/emacs/install-deps.sh`): Debian's 28.2 with elpa-eglot
1.9, and 30.1 from bookworm-backports (eglot 1.17 built in) unpacked under /opt/fimlsp-emacs30.
For each, fimlsp.el must byte-compile without a warning, and the driver
`editors/emacs/test/fimlsp-test.el` opens a Python file whose language server, run by eglot, is a
real pylsp (PyPI, in editors/emacs/.deps/venv); `global-fimlsp-mode` runs fimlsp (tiny
random-weight model) beside it on its own jsonrpc connection. The driver checks that eglot kept
pylsp, the overlay, accept, accept-line, dismiss, stale-request handling, the idle trigger, that
eglot's `completion-at-point` still answers from pylsp and `fimlsp-completion-at-point` from
fimlsp. It writes its checks as JSON; both servers' events and stderr go to
`.artifacts/emacs-*.log`. fimlsp.el also passes checkdoc and package-lint (Emacs 28), and installs
with `package-vc-install` (Emacs 30).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import editor_missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EMACS_DIR = ROOT / "editors" / "emacs"
DRIVER = EMACS_DIR / "test" / "fimlsp-test.el"
LINT = EMACS_DIR / "test" / "fimlsp-lint.el"
INSTALL = "bash editors/emacs/install-deps.sh"
ELPA = Path("/usr/share/emacs/site-lisp/elpa")
EMACS30_PREFIX = Path("/opt/fimlsp-emacs30")
PYLSP = EMACS_DIR / ".deps" / "venv" / "bin" / "pylsp"


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env, stdin=subprocess.DEVNULL, check=False)


def _load_path(executable: str) -> list[str]:
    """Emacs < 29 has no eglot: add Debian's elpa-eglot and its dependencies (-Q skips the
    site-start that would). Emacs 29+ has eglot built in; adding 1.9 would shadow it."""
    probe = _run([executable, "--batch", "-Q", "--eval", "(princ emacs-major-version)"], 30)
    major = int(probe.stdout.strip() or 0)
    if major >= 29:
        return []
    dirs = []
    for package in ("eglot", "project", "xref", "seq"):
        found = sorted(ELPA.glob(f"{package}-[0-9]*"))
        if found:
            dirs.append(str(found[-1]))
    return dirs


def _lp_args(load_path: list[str]) -> list[str]:
    return [arg for directory in load_path for arg in ("-L", directory)]


@pytest.fixture(scope="module", params=["emacs", "emacs30"])
def emacs(request: pytest.FixtureRequest) -> tuple[str, str, list[str]]:
    """(name, executable, load-path) of an Emacs that can load eglot, or a skip saying why."""
    name = request.param
    if name == "emacs":
        executable = shutil.which("emacs")
        if executable is None:
            editor_missing("Emacs (Debian emacs-nox + elpa-eglot)", INSTALL)
    else:
        if os.environ.get("FIMLSP_EMACS30") == "0":
            pytest.skip("Emacs 30 left out on purpose (FIMLSP_EMACS30=0)")
        candidate = shutil.which("emacs30") or str(EMACS30_PREFIX / "bin" / "emacs30")
        executable = candidate if os.access(candidate, os.X_OK) else None
        if executable is None:
            editor_missing("Emacs 30 (bookworm-backports, unpacked in /opt/fimlsp-emacs30)",
                           INSTALL)
    assert executable is not None
    load_path = _load_path(executable)
    probe = _run([executable, "--batch", "-Q", *_lp_args(load_path), "--eval",
                  "(progn (require 'eglot) (princ emacs-version))"], 60)
    if probe.returncode != 0:
        editor_missing(f"eglot for {executable}", f"{INSTALL} ({probe.stderr.strip()[-300:]})")
    return name, executable, load_path


def test_install_script_fails_when_emacs30_cannot_be_installed(tmp_path: Path) -> None:
    """CI's Emacs 30 leg must fail, not skip, when its Emacs cannot be installed: the script
    exits non-zero with the reason (here: a Debian mirror that refuses connections)."""
    if shutil.which("emacs") is None or not PYLSP.exists():
        editor_missing("Emacs 28 and pylsp (the script's first parts)", INSTALL)
    env = {**os.environ, "FIMLSP_EMACS30_PREFIX": str(tmp_path / "emacs30"),
           "FIMLSP_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}
    env.pop("FIMLSP_EMACS30", None)
    result = _run(["bash", str(EMACS_DIR / "install-deps.sh")], 300, env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "emacs 30: NOT installed" in result.stderr, result.stderr
    assert not (tmp_path / "emacs30" / "bin" / "emacs30").exists()


def test_fimlsp_el_byte_compiles_without_warnings(emacs: tuple[str, str, list[str]],
                                                  tmp_path: Path) -> None:
    _name, executable, load_path = emacs
    source = tmp_path / "fimlsp.el"
    shutil.copy(EMACS_DIR / "fimlsp.el", source)
    result = _run([executable, "--batch", "-Q", *_lp_args(load_path), "-L", str(tmp_path),
                   "--eval", "(setq byte-compile-error-on-warn t)",
                   "-f", "batch-byte-compile", str(source)], 120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"(?i)\bwarning\b", output), output
    assert (tmp_path / "fimlsp.elc").exists()


def test_ghost_text_accept_dismiss_and_capf(emacs: tuple[str, str, list[str]],
                                            server_command: list[str], artifacts_dir: Path,
                                            tmp_path: Path) -> None:
    name, executable, load_path = emacs
    work = tmp_path / "work"
    work.mkdir()
    results = tmp_path / "results.json"
    events = tmp_path / "events.log"
    if not PYLSP.exists():
        editor_missing("pylsp (the language server eglot runs beside fimlsp)", INSTALL)
    env = {**os.environ, "FIMLSP_TEST_SERVER": json.dumps(server_command),
           "FIMLSP_TEST_PYLSP": json.dumps([str(PYLSP)]),
           "FIMLSP_TEST_DIR": str(work), "FIMLSP_TEST_RESULTS": str(results),
           "FIMLSP_TEST_EVENTS": str(events), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    argv = [executable, "--batch", "-Q", *_lp_args(load_path), "-L", str(EMACS_DIR),
            "-l", str(DRIVER)]
    log = artifacts_dir / f"{name}.log"
    try:
        result = _run(argv, 180, env)
    except subprocess.TimeoutExpired as timeout:
        log.write_text(f"$ {' '.join(argv)}\nTIMED OUT after 180 s\n{timeout.stderr or ''}",
                       encoding="utf-8")
        pytest.fail(f"{name} driver timed out; log in {log}")
    log.write_text(
        f"$ {' '.join(argv)}\nexit {result.returncode}\n\n;;;; driver output\n"
        f"{result.stdout}{result.stderr}\n"
        + (events.read_text(encoding="utf-8", errors="replace") if events.exists() else ""),
        encoding="utf-8")
    assert results.exists(), f"{name} wrote no results (exit {result.returncode}); log: {log}"
    report = json.loads(results.read_text(encoding="utf-8"))
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed, f"{name}: failed checks (log: {log}):\n" + "\n".join(failed)
    assert report["ok"] is True and result.returncode == 0, f"exit {result.returncode}; {log}"
    names = {c["name"] for c in report["checks"]}
    for required in ("fimlsp-setup leaves eglot-server-programs alone",
                     "eglot's server is the user's pylsp",
                     "fimlsp has its own connection, not eglot's",
                     "suggestion shown as overlay after-string",
                     "accept inserts the suggestion at point",
                     "accept-line inserts up to the first newline",
                     "accept-word takes a word, a run of punctuation, a line break at a time",
                     "M-n shows the server's second item, another text",
                     "M-n again cycles the list without a request", "M-p goes back",
                     "TAB inserts the alternative shown",
                     "the server counts the alternative's characters",
                     "dismiss removes the overlay "
                     "and leaves the text", "eglot's completion-at-point answers from pylsp",
                     "eglot still runs pylsp for the buffer",
                     "fimlsp-completion-at-point offers fimlsp's candidates",
                     "fimlsp-version names both versions, model, device, quantization",
                     "the server's copy of the buffer is the buffer (fimlsp.prompt)",
                     "yanking what the suggestion predicts keeps the rest shown",
                     "with electric pairs the ghost text leaves out the closer after point",
                     "c-electric-paren typing what the suggestion predicts keeps the rest",
                     "fimlsp-completion-at-point gives way to input (:cancel-on-input)",
                     "mode line: loading", "renamed: the server runs the warm start there",
                     "new names before point start a definition lookup",
                     "the definitions found are sent (fimlsp.context)",
                     "pylsp's definition in another file is in the prompt (fimlsp.prompt)",
                     "the prompt lists it as the editor's definition",
                     "typing a word after the names looks nothing up again"):
        assert required in names, f"{name}: check {required!r} did not run"
    sys.stderr.write(f"{name} {report['info'].get('emacs')}: {len(names)} checks passed, "
                     f"timings {report['timings']}\n")


def test_dir_locals_cannot_set_fimlsp_variables(emacs: tuple[str, str, list[str]],
                                                tmp_path: Path) -> None:
    """A repository's .dir-locals.el naming another server program, endpoint, API key variable
    or model is not applied without asking: no fimlsp variable is marked safe, so Emacs asks
    (and, where it may not ask, as with `enable-local-variables' :safe, leaves them out)."""
    name, executable, load_path = emacs
    project = tmp_path / "cloned"
    project.mkdir()
    (project / ".dir-locals.el").write_text(
        '((nil . ((fimlsp-server-command . ("/bin/sh" "-c" "echo owned"))\n'
        '         (fimlsp-endpoint . "http://203.0.113.7:8000/v1")\n'
        '         (fimlsp-api-key-env . "MY_UNRELATED_SECRET")\n'
        '         (fimlsp-engine . "openai") (fimlsp-model . "/elsewhere/model"))))\n')
    (project / "a.py").write_text("x = 1\n")
    program = f"""
(progn
  (require 'fimlsp)
  (let ((enable-local-variables :safe))
    (find-file {json.dumps(str(project / "a.py"))}))
  (princ (json-encode
          (list (cons "applied" (vconcat (mapcar (lambda (v) (symbol-name (car v)))
                                                 (cl-remove-if-not
                                                  (lambda (v) (string-prefix-p "fimlsp-"
                                                                (symbol-name (car v))))
                                                  file-local-variables-alist))))
                (cons "endpoint" fimlsp-endpoint)
                (cons "command" (vconcat fimlsp-server-command))
                (cons "safe" (vconcat
                              (let (safe)
                                (mapatoms
                                 (lambda (s)
                                   (when (and (custom-variable-p s)
                                              (string-prefix-p "fimlsp-" (symbol-name s))
                                              (or (get s 'safe-local-variable)
                                                  (safe-local-variable-p s "x")))
                                     (push (symbol-name s) safe))))
                                safe)))))))"""
    result = _run([executable, "--batch", "-Q", *_lp_args(load_path), "-L", str(EMACS_DIR),
                   "--eval", "(require 'cl-lib)", "--eval", "(require 'json)",
                   "--eval", program], 60, dict(os.environ))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"applied": [], "endpoint": None, "command": ["fimlsp", "serve"],
                    "safe": []}, (name, seen)


def test_fimlsp_el_uses_no_private_eglot_or_jsonrpc_functions() -> None:
    """fimlsp.el talks to its server on its own jsonrpc connection, and only jsonrpc's public
    API (private `--` names change between releases). Of eglot it loads nothing and calls two
    public functions, where eglot is loaded: the connection to ask for the editor's
    definitions, and its position encoding."""
    source = (EMACS_DIR / "fimlsp.el").read_text(encoding="utf-8")
    code = "\n".join(line.split(";", 1)[0] for line in source.splitlines())
    assert not re.findall(r"\b(?:eglot|jsonrpc)--[\w-]+", code)
    assert "(require 'eglot)" not in code
    called = set(re.findall(r"(?:\(|')(eglot-[\w-]+)", code))  # calls and quoted symbols
    assert called == {"eglot-current-server", "eglot-server-capable"}, called


def test_fimlsp_el_passes_checkdoc_and_package_lint(tmp_path: Path) -> None:
    """The package headers and docstrings a package archive checks: checkdoc, and Debian's
    package-lint 0.16 (elpa-package-lint; MELPA is not reachable here). fimlsp-lint.el gives it
    jsonrpc's archive entry (GNU ELPA's index is offline) and sets aside its one stale warning
    (0.16 predates Emacs 28's release)."""
    executable = shutil.which("emacs")
    lint_dirs = [sorted(ELPA.glob(f"{name}-[0-9]*")) for name in ("package-lint", "let-alist")]
    if executable is None or not all(lint_dirs):
        editor_missing("Emacs 28 with elpa-package-lint", INSTALL)
    source = tmp_path / "fimlsp.el"
    shutil.copy(EMACS_DIR / "fimlsp.el", source)
    checkdoc = _run([executable, "--batch", "-Q", "--eval",
                     f"(checkdoc-file {json.dumps(str(source))})"], 120)
    complaints = re.findall(r"(?m)^fimlsp\.el:\d+: .*$", checkdoc.stdout + checkdoc.stderr)
    assert checkdoc.returncode == 0 and not complaints, "\n".join(complaints) or checkdoc.stderr
    lint = _run([executable, "--batch", "-Q", *_lp_args([str(d[-1]) for d in lint_dirs]),
                 "-l", str(LINT), str(source)], 120)
    output = lint.stdout + lint.stderr
    assert lint.returncode == 0 and "PROBLEM" not in output, output
    assert "package-lint: 0 problems" in output, output


def test_package_vc_install_from_a_git_repository(tmp_path: Path) -> None:
    """Emacs 30's `package-vc-install` installs fimlsp.el from a git repository laid out like
    this one (`:lisp-dir "editors/emacs"`), its dependency (jsonrpc) being built in, and the
    installed package loads; no package archive is contacted."""
    candidate = shutil.which("emacs30") or str(EMACS30_PREFIX / "bin" / "emacs30")
    if os.environ.get("FIMLSP_EMACS30") == "0":
        pytest.skip("Emacs 30 left out on purpose (FIMLSP_EMACS30=0)")
    if not os.access(candidate, os.X_OK):
        editor_missing("Emacs 30 (bookworm-backports, unpacked in /opt/fimlsp-emacs30)", INSTALL)
    if shutil.which("git") is None:
        editor_missing("git", "apt-get install git")
    repo = tmp_path / "fimlsp"
    (repo / "editors" / "emacs").mkdir(parents=True)
    shutil.copy(EMACS_DIR / "fimlsp.el", repo / "editors" / "emacs" / "fimlsp.el")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fimlsp"]):
        done = _run([*git, *argv], 60)
        assert done.returncode == 0, done.stderr
    elpa = tmp_path / "elpa"
    (tmp_path / ".emacs.d").mkdir()  # HOME: package-vc remembers the checkout as a project
    program = f"""(progn
      (setq package-user-dir {json.dumps(str(elpa))} package-archives nil)
      (require 'package-vc)
      (package-vc-install '(fimlsp :url {json.dumps(str(repo))} :lisp-dir "editors/emacs"))
      (require 'fimlsp)
      (princ (format "LOADED %s %s\\n" fimlsp-version (locate-library "fimlsp"))))"""
    result = _run([candidate, "--batch", "-Q", "--eval", program], 180,
                  {**os.environ, "HOME": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(rf"LOADED 0\.1\.0 {re.escape(str(elpa))}/fimlsp/", output), output


@pytest.fixture(scope="module")
def qwen_server_command(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> list[str]:
    """The server with a tiny random-weight Qwen2 (real Qwen2.5 tokenizer): a next-edit model."""
    from test_engine_archs import build_arch_model

    folder = build_arch_model(tmp_path_factory.mktemp("emacs-qwen2"), "qwen2", shared)
    return [sys.executable, "-m", "fimlsp", "serve", "--model", str(folder)]


def test_next_edit(emacs: tuple[str, str, list[str]], qwen_server_command: list[str],
                   tmp_path: Path) -> None:
    """A rename arms the next-edit idle timer, which asks the real server by itself
    (triggerKind 2); fimlsp-next-edit asks outright; both get edits for the buffer's version. A
    known edit shows as an overlay diff (the replaced text in the delete face, the new text after
    it), jump goes there, apply applies it; a change hides it, apply refuses. An accepted
    suggestion arms the timer too; with fimlsp-next-edit-auto off a change arms nothing."""
    _name, executable, _load_path = emacs
    results = tmp_path / "results.json"
    env = {**os.environ, "FIMLSP_TEST_SERVER": json.dumps(qwen_server_command),
           "FIMLSP_TEST_DIR": str(tmp_path), "FIMLSP_TEST_RESULTS": str(results),
           "HF_HUB_OFFLINE": "1"}
    result = _run([executable, "--batch", "-Q", "-L", str(EMACS_DIR), "-l",
                   str(EMACS_DIR / "test" / "fimlsp-nextedit-test.el")], 300, env)
    assert results.exists(), result.stdout + result.stderr
    r = json.loads(results.read_text(encoding="utf-8"))
    assert "crash" not in r and result.returncode == 0, (r, result.stderr[-2000:])
    assert r["state"] == "ready" and r["asked"] is True and r["answered"] is True, r
    assert r["error"] is None and r["server_text_is_buffer"] is True, r
    assert all(version == r["version"] for version in r["versions"]), r
    assert (r["replaced"], r["replaced_face"], r["shown"]) == (
        "h = h", "fimlsp-next-edit-delete-face", "height = height"), r
    assert r["jumped"] is True and r["point"] == [4, 13], r
    assert r["applied"] is True and r["line4"] == "        self.height = height", r
    assert r["overlays_after_apply"] == 0, r
    assert r["hidden_by_change"] is True and not r["stale_applied"], r  # nil: refused
    assert r["line1"] == "class Box:", r
    assert r["armed_by_change"] is True and r["auto_sent"] is True, r
    assert r["auto_answered"] is True, r
    assert all(version == r["version"] for version in r["auto_versions"]), r
    assert r["suggestion_shown"] is True and r["accepted_line"].endswith("# accepted"), r
    assert r["armed_by_accept"] is True and r["accept_sent"] is True, r
    assert r["accept_answered"] is True, r
    assert not r["armed_when_off"], r  # nil: no timer
