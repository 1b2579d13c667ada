"""The file side of folder drops: claim, import once, move to done/ or failed/ with the rejects (no Kafka)."""

from __future__ import annotations

import os
from pathlib import Path

from streams.folder import DropFolder, Outcome, process_once, rejects_path


def importer(seen: list[str], outcomes: dict[str, Outcome]):
    def import_one(path: Path) -> Outcome:
        seen.append(path.name)
        outcome = outcomes.get(path.name, Outcome(3, 0))
        if outcome.rejected:
            rejects_path(path).write_text('{"line": 2}\n')
        return outcome

    return import_one


def test_each_file_is_imported_once_and_moved(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, "w0")
    folder.prepare()
    for name in ("a.csv", "b.jsonl", "c.csv", ".hidden.csv", "d.csv.part", "notes.txt"):
        (tmp_path / name).write_text("x\n")
    seen: list[str] = []
    outcomes = {"b.jsonl": Outcome(2, 1), "c.csv": Outcome(0, 4)}
    assert process_once(folder, importer(seen, outcomes)) == []  # not yet known to be complete
    done = process_once(folder, importer(seen, outcomes))
    assert sorted(seen) == ["a.csv", "b.jsonl", "c.csv"]
    assert {p.parent.name for p, _ in done} == {"done", "failed"}
    assert sorted(os.listdir(tmp_path / "done")) == ["a.csv", "b.jsonl", "b.jsonl.rejects.jsonl"]
    assert sorted(os.listdir(tmp_path / "failed")) == ["c.csv", "c.csv.rejects.jsonl"]
    assert process_once(folder, importer(seen, outcomes)) == []
    assert len(seen) == 3  # nothing twice
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [".hidden.csv", "d.csv.part", "notes.txt"]


def test_a_file_still_growing_waits(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, "w0")
    folder.prepare()
    f = tmp_path / "big.csv"
    f.write_text("a\n")
    seen: list[str] = []
    process_once(folder, importer(seen, {}))
    f.write_text("a\nb\n")  # the copy goes on
    process_once(folder, importer(seen, {}))
    assert seen == []
    process_once(folder, importer(seen, {}))
    assert seen == ["big.csv"]


def test_an_unreadable_file_fails(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, "w0")
    folder.prepare()
    (tmp_path / "latin1.csv").write_bytes(b"\xe9")
    folder.ready()
    ((moved, _),) = process_once(folder, lambda p: Outcome(0, 0, "not UTF-8"))
    assert moved == tmp_path / "failed" / "latin1.csv"


def test_claimed_files_of_a_stopped_worker_are_found_again(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, "w0")
    folder.prepare()
    (tmp_path / "a.csv").write_text("x\n")
    folder.ready()
    claimed = folder.claim(tmp_path / "a.csv")
    assert claimed is not None
    # ... the worker stops here; its successor (same worker id) resumes, another worker does not see it.
    assert DropFolder(tmp_path, "w0").claimed() == [claimed]
    other = DropFolder(tmp_path, "w1")
    other.prepare()
    assert other.claimed() == []


def test_two_workers_claim_a_file_once(tmp_path: Path) -> None:
    one, two = DropFolder(tmp_path, "w0"), DropFolder(tmp_path, "w1")
    one.prepare()
    two.prepare()
    (tmp_path / "a.csv").write_text("x\n")
    assert one.claim(tmp_path / "a.csv") is not None
    assert two.claim(tmp_path / "a.csv") is None


def test_a_name_dropped_twice_keeps_both(tmp_path: Path) -> None:
    folder = DropFolder(tmp_path, "w0")
    folder.prepare()
    for _ in range(2):
        (tmp_path / "a.csv").write_text("x\n")
        folder.ready()
        process_once(folder, lambda p: Outcome(1, 0))
    assert len(os.listdir(tmp_path / "done")) == 2
