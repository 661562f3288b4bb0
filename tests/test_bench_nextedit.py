"""`fimlsp bench nextedit`'s machinery without a model: a git history becomes cases, a change
becomes hunks that rebuild it, and the oracle counts speculation's forwards correctly."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fimlsp_bench.nextedit import _hunks, cases, oracle_forwards

LINES = st.lists(st.sampled_from(["a\n", "b\n", "def f():\n", "    return 1\n", "\n"]),
                 max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(LINES, LINES)
def test_hunks_applied_in_order_rebuild_the_new_text(old: str, new: str) -> None:
    text, shift = old, 0
    for start, end, replacement in _hunks(old, new):
        text = text[:start + shift] + replacement + text[end + shift:]
        shift += len(replacement) - (end - start)
    assert text == new


def test_oracle_counts_one_forward_per_token_without_drafts_fewer_with() -> None:
    context = [*range(100), 7, 8, 9]
    target = list(range(10, 40))  # what follows 7 8 9 in the context: all drafted
    assert oracle_forwards(context, target, 0) == len(target)
    assert oracle_forwards(context, target, 6) == 5  # 1 sampled + 6 drafted, 30 tokens
    fresh = [1000 + i for i in range(10)]  # never seen: nothing to draft
    assert oracle_forwards(context, fresh, 6) == len(fresh)


def test_cases_are_files_changed_with_two_hunks(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    body = "".join(f"line {i}\n" for i in range(40))
    (repo / "a.py").write_text(body)
    (repo / "b.py").write_text(body)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "a.py").write_text(body.replace("line 3\n", "line three\n")
                               .replace("line 30\n", "line thirty\n"))  # two hunks
    (repo / "b.py").write_text(body.replace("line 3\n", "line three\n"))  # one: not a case
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    found = cases(str(repo / ".git"), 5, 10_000)
    assert [(path, old == body) for path, old, _new in found] == [("a.py", True)]


def test_the_forced_oracle_writes_the_pattern_and_its_edits_are_exact() -> None:
    """`--oracle`: a random model made to write what a right one would (the same comment on the
    next line) answers edits that rebuild exactly that document, request after request, and
    its drafts are accepted as a copying model's would."""
    import argparse

    from fimlsp_bench.nextedit import big_file, completer_for

    args = argparse.Namespace(model=None, geometry="tiny", max_new_tokens=384, window=8192,
                              quantization="none")
    report = big_file(completer_for(args), lines=400, requests=3, oracle=True)
    assert report["oracle_exact"] == "3/3"
    after = report["after_first"]
    assert after["tokens_per_forward"] > 2.0  # the region is copied: drafts are accepted
    assert after["reused_tokens_p50"] > 0.5 * after["prompt_tokens_p50"]
