"""The identity table's RocksDB memory follows the setting instead of Faust's multi-GiB defaults."""

from __future__ import annotations

from pathlib import Path

from cdp.settings import Settings
from identity.rules import IdentityRules
from streams.app import create_app, rocksdb_options


def test_options_stay_within_the_budget() -> None:
    for mb in (4, 32, 100, 1024):
        o = rocksdb_options(mb)
        used = o["write_buffer_size"] * o["max_write_buffer_number"] + o["block_cache_size"]
        assert used <= mb * 1024 * 1024
        assert used >= mb * 1024 * 1024 * 0.9 or mb < 8


def test_the_table_store_is_opened_with_them(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, identity_store_mb=64), IdentityRules.load())
    store = app.tables["identity-nodes"].data.rocksdb_options  # type: ignore[attr-defined]
    assert store.write_buffer_size == 16 * 1024 * 1024
    assert store.max_write_buffer_number == 2
    assert store.block_cache_size == 32 * 1024 * 1024
