"""Folder sources end to end: files dropped into a watched directory are imported once each through
`cdp import`'s path, moved to done/ or failed/ with their rejects, and a restart of `cdp run` (also one in the
middle of a file) imports nothing twice.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.support.service import CdpProcess, cdp_cli

pytestmark = pytest.mark.e2e


def wait_files(folder: Path, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not names <= (have := {p.name for p in folder.iterdir()} if folder.exists() else set()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{folder} has {sorted(have)}, expected {sorted(names)}")
        time.sleep(0.2)


def drop(folder: Path, name: str, text: str) -> None:
    """As a well-behaved writer does: write beside, then rename in (the watcher never sees half a file)."""
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(folder / name)


def test_three_files_are_imported_once_across_a_restart(kafka, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    drops = tmp_path / "drops"
    drops.mkdir()
    cdp = CdpProcess(kafka.bootstrap, tmp_path / "data", f"t{uuid.uuid4().hex[:10]}").start()
    try:
        out = cdp_cli(cdp, "sources", "create", "--name", "drops", "--kind", "folder", "--path", str(drops))
        assert out.strip().splitlines()[-1].startswith("wk_")
        receipts = "\n".join(
            ["receipt_id,timestamp,email,total,currency"]
            + [f"R-{run}-{i},2024-05-01T10:0{i}:00Z,ann-{run}@example.com,{i}.50,EUR" for i in range(1, 5)]
        )
        contacts = "\n".join(
            [
                "crm_id,email,first_name,updated_at",
                f"C-{run}-1,bob-{run}@example.com,Bob,2024-05-01T09:00:00Z",
                f",nobody-{run}@example.com,Nobody,2024-05-01T09:00:00Z",  # line 3: no crm_id
                f"C-{run}-3,carol-{run}@example.com,Carol,01/05/2024",  # line 4: not ISO-8601
                f"C-{run}-4,dan-{run}@example.com,Dan,2024-05-01T09:00:00Z",
            ]
        )
        events = "\n".join(
            orjson.dumps({"type": "track", "event": "Catalog Viewed", "userId": f"u-{run}-{i}"}).decode()
            for i in range(3)
        )
        drop(drops, "receipts.csv", receipts)
        drop(drops, "contacts.csv", contacts)
        drop(drops, "events.jsonl", events)
        wait_files(drops / "done", {"receipts.csv", "contacts.csv", "contacts.csv.rejects.jsonl", "events.jsonl"})
        rejects = [
            orjson.loads(line) for line in (drops / "done" / "contacts.csv.rejects.jsonl").read_bytes().splitlines()
        ]
        assert [r["line"] for r in rejects] == [3, 4]
        assert not (drops / "done" / "receipts.csv.rejects.jsonl").exists()
        expected = 4 + 2 + 3
        count = "SELECT count() FROM cdp.events WHERE source_id = 'drops'"
        cdp.wait_for(count, expected, timeout=60)
        assert (
            cdp.scalar(
                "SELECT toString(round(sum(JSONExtractFloat(properties, 'revenue')), 2)) FROM cdp.events "
                "WHERE source_id = 'drops'"
            )
            == "12"
        )

        # Stopped in the middle of a file: it was claimed (and its rows maybe sent) but not yet moved. A file
        # is also dropped while no worker runs.
        assert cdp.stop() == 0
        claimed = drops / "processing" / "w0"
        shutil.copy(drops / "done" / "receipts.csv", claimed / "receipts.csv")
        drop(drops, "late.jsonl", orjson.dumps({"type": "track", "event": "Late", "userId": f"u-{run}-late"}).decode())
        cdp.start().wait_ready()
        wait_files(drops / "done", {"late.jsonl"})
        deadline = time.monotonic() + 30
        while list(claimed.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(claimed.iterdir()) == []
        cdp.wait_for(count, expected + 1, timeout=60)
        time.sleep(2)  # anything imported twice would have landed by now: it is counted once
        assert cdp.scalar(count) == expected + 1
        assert len(list((drops / "done").glob("receipts*.csv"))) == 2  # the second run kept beside the first

        # kind, channel, name, state, lag, rows today (the rows read: the re-read file counts again), last error
        line = next(li for li in cdp_cli(cdp, "sources", "list").splitlines() if li.split()[2:3] == ["drops"])
        fields = line.split()
        assert fields[:4] == ["folder", "offline", "drops", "running"], line
        assert int(fields[5]) >= expected + 1 and "contacts.csv: 2 rows rejected" in line, line
    finally:
        cdp.stop()
