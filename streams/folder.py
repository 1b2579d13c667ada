"""Folder drops: a directory watched for CSV and JSON Lines files, each imported once (the file side, no Kafka).

A file is claimed by renaming it into ``processing/WORKER/`` (a rename is atomic: of several workers watching
one folder, one wins), imported through the same path as `cdp import`, then moved to ``done/`` (at least one
row imported; the rejects file of its bad rows beside it) or ``failed/`` (nothing could be imported). A worker
that stopped half-way finds its claimed files again at start and imports them again: the rows carry
messageIds derived from their content, so what was already sent is stored once.

A file is taken only once its size and modification time stayed the same for one poll, so a file still
being copied in is not read half-written (writers that can should write elsewhere and rename into the
folder). Hidden files and names ending in .tmp or .part are left alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
IGNORED_SUFFIXES = (".tmp", ".part", ".rejects.jsonl")


@dataclass(frozen=True)
class Outcome:
    accepted: int
    rejected: int
    error: str | None = None  # the file could not be read at all


class DropFolder:
    def __init__(self, root: Path, worker: str) -> None:
        self.root = root
        self.processing = root / "processing" / worker
        self.done = root / "done"
        self.failed = root / "failed"
        self._seen: dict[str, tuple[int, int]] = {}

    def prepare(self) -> None:
        for d in (self.processing, self.done, self.failed):
            d.mkdir(parents=True, exist_ok=True)

    def claimed(self) -> list[Path]:
        """Files this worker claimed before it stopped (to import again)."""
        return sorted(p for p in self.processing.iterdir() if p.is_file() and not _ignored(p.name))

    def ready(self) -> list[Path]:
        """Files in the folder whose size and mtime did not change since the previous call."""
        seen: dict[str, tuple[int, int]] = {}
        ready = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.is_file() or _ignored(entry.name) or not entry.name.lower().endswith(SUFFIXES):
                continue
            st = entry.stat()
            mark = (st.st_size, st.st_mtime_ns)
            seen[entry.name] = mark
            if self._seen.get(entry.name) == mark:
                ready.append(Path(entry.path))
        self._seen = seen
        return ready

    def waiting(self) -> int:
        return len(self._seen)

    def claim(self, path: Path) -> Path | None:
        target = self.processing / path.name
        try:
            os.rename(path, target)
        except FileNotFoundError:  # another worker took it
            return None
        self._seen.pop(path.name, None)
        return target

    def finish(self, claimed: Path, outcome: Outcome) -> Path:
        """Move the file (and its rejects file) to done/ or failed/; returns where the file went."""
        folder = self.done if outcome.error is None and (outcome.accepted or not outcome.rejected) else self.failed
        target = _free_name(folder / claimed.name)
        rejects = rejects_path(claimed)
        if rejects.exists():
            os.rename(rejects, rejects_path(target))
        os.rename(claimed, target)
        return target


def rejects_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES)


def _free_name(path: Path) -> Path:
    """A file dropped twice under one name keeps both in done/: the later one gets a time suffix."""
    if not path.exists():
        return path
    return path.with_name(f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}{path.suffix}")


def process_once(folder: DropFolder, import_one: Callable[[Path], Outcome]) -> list[tuple[Path, Outcome]]:
    """One poll: claim each ready file, import it, move it. Returns what was done (for status)."""
    out = []
    for path in folder.ready():
        claimed = folder.claim(path)
        if claimed is None:
            continue
        outcome = import_one(claimed)
        out.append((folder.finish(claimed, outcome), outcome))
    return out
