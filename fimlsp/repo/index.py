"""The workspace index: definitions by name and a lexical (BM25) index over syntax chunks.

Built on one background thread (`RepoIndex.executor`): walking happens there, reading and
parsing (analysis.py) in a worker process for batches of files, else there too, outside the
lock; each file's result is merged under the lock in one short step, so the model's thread,
which queries the index while building a prompt, waits at most for one merge.

The lexical index is an inverted index kept in dicts, scored with BM25 at query time. `bm25s`
was the library the issue named; it builds a static sparse matrix, so every saved file would
mean rebuilding the whole index (or querying a stale one), and its query path tokenizes and
scores through numpy for every chunk. Here a file change updates its own postings only, and a
query touches only the postings of its (rarer) terms: well under a millisecond for thousands of
files (`fimlsp bench context` measures it), with no dependency.

Memory is bounded by the caps (files, bytes) and reported as an estimate: the chunk and
definition texts held (about the size of the indexed source) plus the postings.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import pickle
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fimlsp.repo import files as repo_files
from fimlsp.repo.analysis import CHUNK_ID_SPAN, Analysis, analyse, lower_priority
from fimlsp.repo.parse import Chunk, Definition

K1, B = 1.2, 0.75
COMMON_SHARE = 0.05  # a term in more than this share of the chunks says little: not scored
MERGE_WORK_S = 0.001  # merging this long, the index thread pauses MERGE_PAUSE_S: it holds
MERGE_PAUSE_S = 0.001  # the GIL about half the time, and small files cost no sleep each
MAX_POSTINGS = 2500  # postings scored per query, rarest terms first: bounds a query's time
@dataclass
class FileEntry:
    path: Path
    root: Path
    rel: str  # path relative to its workspace folder, as the prompt shows it
    mtime_ns: int
    size: int
    parser: str
    definitions: list[Definition]
    chunk_ids: range
    terms: tuple[str, ...]  # the terms its chunks hold: what to take out of the postings
    version: int  # changes each time the file is indexed again


@dataclass
class Hit:
    """A chunk the lexical index found, with the terms that matched (for `fimlsp.prompt`)."""

    entry: FileEntry
    chunk: Chunk
    score: float
    matched: tuple[str, ...]


@dataclass
class Counters:
    definition_lookups: int = 0  # identifiers looked up
    definition_hits: int = 0  # ... found defined in another file
    searches: int = 0
    search_hits: int = 0  # searches that found a chunk
    requests: int = 0  # prompts built with the index on
    requests_with_context: int = 0  # ... that got at least one snippet from it
    query_ms_max: float = 0.0
    query_ms_total: float = 0.0


@dataclass
class Progress:
    state: str = "idle"  # idle | indexing | ready | off
    done: int = 0
    total: int = 0
    started: float = 0.0
    seconds: float = 0.0  # the last full index's duration
    truncated: str = ""  # which cap stopped it, if one did
    skipped: Counter[str] = field(default_factory=Counter)


class RepoIndex:
    """Files of the workspace folders → definitions by name and BM25 over chunks."""

    def __init__(self, max_files: int = 5_000, max_bytes: int = 20_000_000,
                 timeout_s: float = 120.0) -> None:
        self.max_files, self.max_bytes, self.timeout_s = max_files, max_bytes, timeout_s
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="fimlsp-index")
        self._lock = threading.RLock()
        self.roots: dict[Path, str] = {}  # folder → its name (the `<repo_name>`)
        self.files: dict[Path, FileEntry] = {}
        self._definitions: dict[str, list[tuple[Path, Definition]]] = {}
        self._chunks: dict[int, tuple[Path, Chunk, int]] = {}  # id → file, chunk, length
        self._postings: dict[str, dict[int, int]] = {}
        self._total_length = 0
        self._next_chunk = 0
        self._versions = 0
        self._bytes = 0
        self.generation = 0  # changes whenever any file is added, changed or removed
        self.counters = Counters()
        self.progress = Progress()
        self._cancel = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_failed = False
        self.use_worker = True
        self._since_pause = 0.0

    # -- building (on the executor) ---------------------------------------------------------

    def candidates(self, roots: Iterable[Path]) -> list[tuple[Path, repo_files.Candidate]]:
        """The files to index under `roots`, within the file and byte caps (walking stops at the
        first cap it meets, and says which)."""
        found: list[tuple[Path, repo_files.Candidate]] = []
        total = 0
        started = time.perf_counter()
        for root in roots:
            for candidate in repo_files.walk(root):
                if self._cancel.is_set():
                    return found
                if len(found) >= self.max_files:
                    self.progress.truncated = f"maxFiles ({self.max_files})"
                    return found
                if total + candidate.size > self.max_bytes:
                    self.progress.truncated = f"maxBytes ({self.max_bytes})"
                    return found
                if time.perf_counter() - started > self.timeout_s:
                    self.progress.truncated = f"timeout ({self.timeout_s:g}s)"
                    return found
                found.append((root, candidate))
                total += candidate.size
        return found

    def index_files(self, batch: list[tuple[Path, repo_files.Candidate]]) -> None:
        """Indexes a batch of files found by `candidates`: analysed in the worker process when
        there is one (several files: worth the trip), merged here."""
        todo = []
        for root, candidate in batch:
            held = self.files.get(candidate.path)
            if held is None or held.mtime_ns != candidate.mtime_ns or held.size != candidate.size:
                todo.append((root, candidate))
        if not todo:
            return
        pool = self._worker() if len(todo) > 2 else None
        paths = [str(c.path) for _r, c in todo]
        bases = [self._reserve() for _ in todo]
        results: Iterator[Analysis | None] | None = None
        if pool is not None:
            try:
                # All sent at once, one file per message (short unpickles); taken as they come,
                # so the worker parses the next files while this thread merges.
                results = pool.map(analyse, paths, bases)
            except Exception:  # the worker cannot take work: here, then
                self._pool_failed = True
        for number, (root, candidate) in enumerate(todo):
            if self._cancel.is_set():
                return
            result = None
            if results is not None:
                try:
                    result = next(results)
                except Exception:  # the worker died (killed, out of memory): here, then
                    self._pool_failed, results = True, None
            if results is None:
                result = analyse(paths[number], bases[number])
            self._merge(root, candidate.path, candidate.size, candidate.mtime_ns, result,
                        bases[number])

    def index_file(self, root: Path, path: Path, size: int = -1, mtime_ns: int = -1) -> bool:
        """Reads, parses and merges one file (replacing what was held for it); False when it
        is no longer indexable (gone, binary, too large): then it is dropped."""
        if size < 0:
            try:
                stat = path.stat()
            except OSError:
                self.remove_file(path)
                return False
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
        held = self.files.get(path)
        if held is not None and held.mtime_ns == mtime_ns and held.size == size:
            return True
        base = self._reserve()
        return self._merge(root, path, size, mtime_ns, analyse(str(path), base), base)

    def _reserve(self) -> int:
        """The first chunk id of a file about to be analysed (ids are never reused)."""
        base = self._next_chunk
        self._next_chunk += CHUNK_ID_SPAN
        return base

    def _merge(self, root: Path, path: Path, size: int, mtime_ns: int,
               result: Analysis | None, base: int) -> bool:
        if result is None:
            self.progress.skipped["unreadable"] += 1
            self.remove_file(path)
            return False
        parser, definitions, chunks, lengths, slices = result
        rel = path.relative_to(root).as_posix()
        ids = range(base, base + len(chunks))
        with self._lock:
            self._drop(path)
            self._versions += 1
            for cid, chunk, length in zip(ids, chunks, lengths, strict=True):
                self._chunks[cid] = (path, chunk, length)
            self._total_length += sum(lengths)
        # The postings in slices of terms, giving up the lock and the GIL between them: the
        # event loop or the model's thread may be waiting. A term new to the index takes the
        # worker's dict as it came (its key the string unpickled once per file); one already
        # held is one C-level update. Until the entry is in `files` (below), searches skip
        # its chunks and it has no definitions.
        postings = self._postings
        file_terms: list[str] = []
        for piece in slices:
            items = pickle.loads(piece)
            with self._lock:
                for term, posting in items:
                    held = postings.get(term)
                    if held is None:
                        postings[term] = posting
                    else:
                        held.update(posting)
                    file_terms.append(term)
            if time.perf_counter() - self._since_pause > MERGE_WORK_S:
                time.sleep(MERGE_PAUSE_S)
                self._since_pause = time.perf_counter()
        with self._lock:
            for definition in definitions:
                self._definitions.setdefault(definition.name, []).append((path, definition))
            self.files[path] = FileEntry(path, root, rel, mtime_ns, size, parser,
                                         definitions, ids, tuple(file_terms), self._versions)
            self._bytes += size
            self.generation += 1
        return True

    def remove_file(self, path: Path) -> None:
        with self._lock:
            if self._drop(path):
                self.generation += 1

    def _drop(self, path: Path) -> bool:
        entry = self.files.pop(path, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        ids = entry.chunk_ids
        for cid in ids:
            _path, _chunk, length = self._chunks.pop(cid)
            self._total_length -= length
        for term in entry.terms:
            posting = self._postings.get(term)
            if posting is None:
                continue
            if len(posting) <= len(ids):
                gone = [cid for cid in posting if cid in ids]  # a range: O(1) membership
            else:
                gone = [cid for cid in ids if cid in posting]
            for cid in gone:
                del posting[cid]
            if not posting:
                del self._postings[term]
        for definition in entry.definitions:
            held = self._definitions.get(definition.name)
            if held is not None:
                held[:] = [d for d in held if d[0] != path]
                if not held:
                    del self._definitions[definition.name]
        return True

    def remove_root(self, root: Path) -> None:
        with self._lock:
            self.roots.pop(root, None)
            for path in [p for p, e in self.files.items() if e.root == root]:
                self._drop(path)
            self.generation += 1

    def cancel(self) -> None:
        """Stops a walk or build under way (a later `resume` clears it)."""
        self._cancel.set()

    def resume(self) -> None:
        self._cancel.clear()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def close(self) -> None:
        self.cancel()
        self.release_worker()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _worker(self) -> ProcessPoolExecutor | None:
        """The process that parses files, started on first use; None where one cannot be
        started (then files are parsed on the index thread)."""
        if self._pool is None and not self._pool_failed and self.use_worker:
            try:
                self._pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=lower_priority)
            except (OSError, ValueError, NotImplementedError):
                self._pool_failed = True
        return self._pool

    def release_worker(self, wait: bool = False) -> None:
        """Ends the parsing process (after the first index: single saved files are cheap)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    # -- queries (any thread) ---------------------------------------------------------------

    def root_of(self, path: Path) -> Path | None:
        return next((r for r in self.roots if path.is_relative_to(r)), None)

    def entry(self, path: Path) -> FileEntry | None:
        return self.files.get(path)

    def definitions(self, name: str) -> list[tuple[FileEntry, Definition]]:
        with self._lock:
            return [(self.files[p], d) for p, d in self._definitions.get(name, ())
                    if p in self.files]

    def search(self, query: Counter[str], exclude: set[Path], k: int = 4) -> list[Hit]:
        """The `k` chunks that score best for `query` under BM25, outside `exclude`."""
        with self._lock:
            n = len(self._chunks)
            if not n or not query:
                return []
            average = max(self._total_length / n, 1.0)
            common = max(32, int(n * COMMON_SHARE))
            scores: dict[int, float] = {}
            chunks = self._chunks
            postings = sorted((len(p), t, p) for t in query
                              if (p := self._postings.get(t)) and len(p) <= common)
            visited = 0
            for df, _term, posting in postings:
                visited += df
                if visited > MAX_POSTINGS:
                    break
                weight = math.log(1 + (n - df + 0.5) / (df + 0.5)) * (K1 + 1)
                slope = K1 * B / average
                for cid, tf in posting.items():
                    gain = weight * tf / (tf + K1 * (1 - B) + slope * chunks[cid][2])
                    scores[cid] = scores.get(cid, 0.0) + gain
            hits = []
            for cid in heapq.nlargest(k * 4, scores, key=scores.__getitem__):
                score = scores[cid]
                path, chunk, _length = self._chunks[cid]
                if path in exclude or path not in self.files:  # excluded, or still merging
                    continue
                matched = tuple(t for _df, t, p in postings if cid in p)
                hits.append(Hit(self.files[path], chunk, score, matched))
                if len(hits) == k:
                    break
            return hits

    def count_query(self, ms: float) -> None:
        c = self.counters
        c.query_ms_total += ms
        c.query_ms_max = max(c.query_ms_max, ms)

    def memory_estimate(self) -> int:
        """Bytes held, roughly: texts (str of ASCII: one byte per character plus its header)
        and dict entries of the postings."""
        with self._lock:
            texts = sum(len(c.text) + 80 for _p, c, _l in self._chunks.values())
            texts += sum(len(d.text) + 200 for e in self.files.values() for d in e.definitions)
            postings = sum(len(p) for p in self._postings.values()) * 100
            return texts + postings + len(self._postings) * 120 + len(self.files) * 400

    def report(self) -> dict[str, Any]:
        """For `fimlsp.stats`."""
        p, c = self.progress, self.counters
        with self._lock:
            parsers = Counter(e.parser for e in self.files.values())
            report: dict[str, Any] = {
                "state": p.state, "folders": len(self.roots), "files": len(self.files),
                "bytes": self._bytes, "chunks": len(self._chunks),
                "definitions": sum(len(v) for v in self._definitions.values()),
                "terms": len(self._postings), "parsers": dict(parsers),
                "memory_bytes_estimate": self.memory_estimate(),
                "index_s": round(p.seconds, 2), "progress": [p.done, p.total],
                "truncated": p.truncated or None, "skipped": dict(p.skipped),
            }
        report.update({
            "requests": c.requests, "requests_with_context": c.requests_with_context,
            "definition_lookups": c.definition_lookups, "definition_hits": c.definition_hits,
            "definition_hit_rate": round(c.definition_hits / c.definition_lookups, 3)
            if c.definition_lookups else None,
            "searches": c.searches,
            "search_hit_rate": round(c.search_hits / c.searches, 3) if c.searches else None,
            "query_ms_max": round(c.query_ms_max, 2),
            "query_ms_mean": round(c.query_ms_total / c.requests, 3) if c.requests else None,
        })
        return report
