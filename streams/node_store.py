"""The identity graph's node states on a worker's disk: one RocksDB per owned partition, behind a small interface.

The truth is the compacted changelog topic (one record per node state, on the node's partition); the local
RocksDB is a copy of a committed prefix of it, so a worker that gets a partition reads only the changelog's
tail. A partition's states and the changelog offset they reach are written in one atomic RocksDB write, and
only after the Kafka transaction that produced them committed (streams.stitcher): whatever the moment of a
crash, the local copy is some committed prefix of the changelog, never ahead of it.

The partition is an explicit argument everywhere, as in quix-streams' stores: one worker holds several.

A deleted node (an erased person, streams/stitch_batch.py) is not gone from disk when the delete is written: its key
and state stay in the write-ahead log, in SST files and in the MANIFEST's file records until compactions rewrite
them (shared/research/privacy.md). So a write that deletes purges the partition at once: flush, a compaction of the
whole store that forces the bottommost level (the keys' own range would be named in RocksDB's LOG), and a reopen,
which starts a new MANIFEST. Deletes are rare (erasures), so the cost is paid only then.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from rocksdict import BlockBasedOptions, BottommostLevelCompaction, Cache, CompactOptions, Options, Rdict, WriteBatch

__all__ = ["NodeStore"]

# Node keys are "type:value" text, so a key starting with NUL never collides with a node.
_OFFSET_KEY = b"\x00changelog-next-offset"
_WRITTEN_KEY = b"\x00written-at-ms"


def _options(store_mb: int) -> Options:
    """RocksDB memory per partition in about ``store_mb``: two write buffers of a quarter each and a block cache of
    half. RocksDB's defaults let memory grow with the graph; with a bound the graph lives on disk and the worker's
    memory stays flat."""
    quarter = max(1, store_mb // 4) * 1024 * 1024
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(quarter)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(2 * quarter))
    # Most reads of a growing graph ask for a node that does not exist yet (every new identifier): a Bloom filter
    # answers those without reading a block. Filters and indexes live in the block cache, inside the bound.
    table.set_bloom_filter(10, False)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    return options


def _now_ms() -> bytes:
    return str(int(time.time() * 1000)).encode()


class NodeStore:
    """Serialised node states by partition and node key (the changelog's value bytes, decoded by the caller).

    ``max_age_s``: a partition's copy last written longer ago than this is wiped when opened, and rebuilt from the
    changelog. The changelog drops a tombstone ``delete.retention.ms`` after compacting it, so a copy older than that
    may have missed a delete (an erased person) that no record says any more. The time is that of the last write, or
    of the close: until then the partition was this worker's, and no one else wrote its changelog."""

    def __init__(self, root: Path, store_mb: int, max_age_s: float | None = None) -> None:
        self.root = root
        self.store_mb = store_mb
        self.max_age_s = max_age_s
        self._dbs: dict[int, Rdict] = {}

    def _path(self, partition: int) -> Path:
        return self.root / f"p{partition}"

    def open(self, partition: int) -> int:
        """Open a partition's store (created if missing); returns the next changelog offset it has not seen."""
        if partition not in self._dbs:
            self.root.mkdir(parents=True, exist_ok=True)
            db = self._dbs[partition] = Rdict(str(self._path(partition)), _options(self.store_mb))
            written = db.get(_WRITTEN_KEY)
            if (
                self.max_age_s is not None
                and written is not None
                and time.time() - int(written) / 1000 > self.max_age_s
            ):
                self.wipe(partition)
                return self.open(partition)
        return self.next_offset(partition)

    def next_offset(self, partition: int) -> int:
        raw = self._dbs[partition].get(_OFFSET_KEY)
        return 0 if raw is None else int(raw)

    def get(self, partition: int, key: str) -> bytes | None:
        value: bytes | None = self._dbs[partition].get(key.encode())
        return value

    def write(self, partition: int, states: Mapping[str, bytes | None], next_offset: int) -> None:
        """Store ``states`` (``None`` deletes a node) and the changelog offset they reach, atomically; a write that
        deletes a node the store held is followed by a purge of the partition's files (a tombstone of a node it never
        held, as most of a changelog's are when read from the start, costs nothing)."""
        db = self._dbs[partition]
        batch = WriteBatch(raw_mode=True)
        held = False  # a deleted node the store held: only then are there files to rewrite
        for key, value in states.items():
            if value is None:
                held = held or db.get(key.encode()) is not None
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value)
        batch.put(_OFFSET_KEY, str(next_offset).encode())
        batch.put(_WRITTEN_KEY, _now_ms())
        db.write(batch)
        if held:
            self.purge(partition)

    def purge(self, partition: int) -> None:
        """Rewrite a partition's files so that deleted keys are in none of them (see the module docstring)."""
        db = self._dbs[partition]
        db.flush()
        options = CompactOptions()
        options.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        db.compact_range(None, None, options)
        self.close(partition)
        self.open(partition)

    def wipe(self, partition: int) -> None:
        """Forget a partition's local copy (it no longer matches the changelog): the next open starts empty."""
        self.close(partition)
        shutil.rmtree(self._path(partition), ignore_errors=True)

    def close(self, partition: int) -> None:
        """Until now the partition was this worker's, so its copy is as new as the changelog: said with the time."""
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.put(_WRITTEN_KEY, _now_ms())
            db.close()

    def close_all(self) -> None:
        for partition in list(self._dbs):
            self.close(partition)

    @property
    def partitions(self) -> set[int]:
        return set(self._dbs)
