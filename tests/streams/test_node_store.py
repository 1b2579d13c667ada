"""The worker's local copy of the node states: per partition, written atomically with the changelog offset."""

from __future__ import annotations

from pathlib import Path

from streams.node_store import NodeStore


def test_states_and_offset_survive_a_reopen(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, store_mb=8)
    assert store.open(0) == 0 and store.open(1) == 0
    store.write(0, {"email:a@x.io": b"A", "user_id:u": b"U"}, next_offset=12)
    store.write(1, {"anonymous_id:c": b"C"}, next_offset=3)
    store.close_all()

    again = NodeStore(tmp_path, store_mb=8)
    assert again.open(0) == 12 and again.open(1) == 3
    assert again.get(0, "email:a@x.io") == b"A" and again.get(0, "anonymous_id:c") is None
    assert again.get(1, "anonymous_id:c") == b"C"
    again.write(0, {"user_id:u": None}, next_offset=13)  # a tombstone in the changelog deletes the node
    assert again.get(0, "user_id:u") is None and again.next_offset(0) == 13
    assert again.partitions == {0, 1}
    again.close_all()


def test_wipe_forgets_one_partition_only(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, store_mb=8)
    store.open(0)
    store.open(1)
    store.write(0, {"k:1": b"x"}, 5)
    store.write(1, {"k:2": b"y"}, 7)
    store.wipe(0)
    assert store.open(0) == 0 and store.get(0, "k:1") is None
    assert store.get(1, "k:2") == b"y" and store.next_offset(1) == 7
    store.close_all()


def test_a_deleted_node_is_in_no_file_of_the_store(tmp_path: Path) -> None:
    """An erased person's node key and state must leave the disk, not only the store's answers: RocksDB keeps a
    deleted key in its log, SST files and MANIFEST until they are rewritten."""
    store = NodeStore(tmp_path, store_mb=8)
    store.open(0)
    canary = "email:canary-4f1d@example.com"
    store.write(0, {canary: b'{"summary": "canary-4f1d"}', "email:other@x.io": b"O"}, 1)
    store.write(0, {f"anonymous_id:filler{i}": b"F" * 100 for i in range(2000)}, 2)
    store.purge(0)  # the canary's state is in an SST file now, as after any flush
    assert any(b"canary-4f1d" in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    store.write(0, {canary: None}, 3)
    assert store.get(0, canary) is None and store.get(0, "email:other@x.io") == b"O"
    assert [f for f in tmp_path.rglob("*") if f.is_file() and b"canary-4f1d" in f.read_bytes()] == []
    store.close_all()


def test_a_copy_older_than_the_changelog_keeps_tombstones_is_rebuilt(tmp_path: Path) -> None:
    """A copy last written (or closed) longer ago than the changelog keeps tombstones may have missed a delete: it
    starts empty, to be read again from the changelog; a recent one is kept."""
    store = NodeStore(tmp_path, store_mb=8, max_age_s=3600)
    store.open(0)
    store.write(0, {"email:a@x.io": b"A"}, 9)
    store.close_all()
    recent = NodeStore(tmp_path, store_mb=8, max_age_s=3600)
    assert recent.open(0) == 9
    recent.close_all()
    stale = NodeStore(tmp_path, store_mb=8, max_age_s=0.0)
    assert stale.open(0) == 0 and stale.get(0, "email:a@x.io") is None
    stale.close_all()


def test_only_a_delete_of_a_node_the_store_held_rewrites_its_files(tmp_path: Path, monkeypatch) -> None:
    """A tombstone of a node the copy never held (a changelog read from its start) has nothing to purge."""
    store = NodeStore(tmp_path, store_mb=8)
    store.open(0)
    purged: list[int] = []
    monkeypatch.setattr(store, "purge", purged.append)
    store.write(0, {"email:a@x.io": b"A"}, 1)
    store.write(0, {"email:never@x.io": None}, 2)
    assert purged == []
    store.write(0, {"email:a@x.io": None}, 3)
    assert purged == [0] and store.get(0, "email:a@x.io") is None
    store.close_all()
