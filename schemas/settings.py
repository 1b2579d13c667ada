"""The one settings object. Every knob is an environment variable with the prefix ``CDP_``.

Passed in to whatever needs it; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.currency import parse_rates

CHANNELS: tuple[str, ...] = ("online", "mobile", "offline")
# sdk: events pushed with the source's write key; the others are pull sources (streams/pull.py, webhooks).
SOURCE_KINDS: tuple[str, ...] = ("sdk", "postgres", "webhook", "folder")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", extra="ignore")

    data_dir: Path = Field(Path(".cdp-data"), description="Local state: chDB store, Faust RocksDB, tokens.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    clickhouse_url: str = Field(
        "", description="chdb:///path (embedded, default under data_dir) or http://host:8123 (server)."
    )
    clickhouse_database: str = "cdp"
    admin_token: str = Field("", description="Bearer token for admin endpoints; generated once if empty.")
    read_token: str = Field("", description="Bearer token for lookups/profiles; generated once if empty.")
    analyst_token: str = Field(
        "", description="Bearer token for SQL and reading profiles and audiences; generated once if empty."
    )
    privacy_key: str = Field(
        "",
        description="Secret of the keyed hash (HMAC) that names a person in the privacy ledger and the regulations' "
        "audit trail; generated once if empty. Every process of one deployment needs the same one.",
    )
    profile_key: str = Field(
        "",
        description="Secret key profile ids are derived with (identity/profile_id.py), so nobody can compute a "
        "person's profile id from a guessed identifier; generated once if empty. Every stitch worker of one install "
        "needs the same one. Installs that had profiles before keyed ids keep their unkeyed ids (README).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    topic_prefix: str = "cdp"
    topic_partitions: int = Field(4, ge=1)
    topic_replication: int = Field(1, ge=1, description="3 on a real cluster.")
    topic_min_insync: int = Field(1, ge=1, description="2 on a real cluster, with replication 3.")
    # How long an erased or overwritten value can survive on the broker's disk in the compacted topics that can hold a
    # person (README, "Purge bounds"): Kafka's compaction only removes a record once its segment is rolled (rolls are
    # evaluated on append), the cleaner has reached it, and, for a tombstone, delete.retention.ms has passed since.
    purge_segment_ms: int = Field(
        600_000,
        ge=1000,
        description="segment.ms of the compacted topics that can hold a person: the active segment "
        "is never compacted, so this bounds how long a value waits in it.",
    )
    purge_max_compaction_lag_ms: int = Field(
        600_000,
        ge=1000,
        description="max.compaction.lag.ms of those topics: a rolled record older than this is "
        "compacted whatever the dirty ratio.",
    )
    purge_delete_retention_ms: int = Field(
        600_000,
        ge=1000,
        description="delete.retention.ms of those topics: how long a tombstone (which holds the "
        "key, an identifier) stays after compaction. A stitch worker whose local store is older than half of it "
        "rebuilds the store from the changelog, since it may have missed tombstones removed meanwhile.",
    )
    purge_min_cleanable_dirty_ratio: float = Field(
        0.1, gt=0, le=1, description="min.cleanable.dirty.ratio of those topics: compact once a tenth is dirty."
    )

    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    produce_timeout_s: float = Field(4.0, description="Longest wait for the broker before answering 503.")
    trust_forwarded_for: bool = False
    shutdown_timeout_s: float = Field(
        45.0,
        description="After SIGTERM/SIGINT the process exits within this bound even if Kafka or ClickHouse is gone "
        "(what was not committed is read again after a restart).",
    )
    cors_origins: str = "*"
    public_url: str = Field(
        "",
        description="The collector's URL as SDKs reach it (https://cdp.example.com), written into the settings "
        "documents SDKs fetch; empty: each request's own scheme and Host.",
    )
    collector_processes: int = Field(
        1,
        ge=1,
        description="`cdp collector` only: processes sharing the HTTP port (SO_REUSEPORT), about one core each.",
    )

    sink_batch_rows: int = Field(
        50_000,
        ge=1,
        description="Rows per insert at most. Bigger blocks mean fewer parts for the engine to merge in the "
        "background (README, 'Why these settings').",
    )
    sink_flush_s: float = Field(
        0.25,
        gt=0,
        description="A batch older than this is inserted as it is, if a writer is free to take it; while all "
        "writers are busy it grows to sink_batch_rows (a cut block is only one more part to write and merge).",
    )
    sink_writers: int = Field(2, ge=1, description="Parallel inserts into ClickHouse (about one core each).")
    anonymous_ttl_days: int = Field(90, ge=1, description="Retention of the DMP side (anonymous profiles), days.")
    anonymous_events_ttl_days: int | None = Field(
        None,
        ge=1,
        description="Retention of the raw events of never-identified identifiers (cookies, devices), days; "
        "unset: the DMP side's (anonymous_ttl_days).",
    )
    refusals_ttl_days: int = Field(30, ge=1, description="Retention of refused identity links, days.")
    audience_history_ttl_days: int = Field(
        365, ge=1, description="Audience membership changes older than this are rolled up to each member's state."
    )
    retention_mark_s: float = Field(
        3600.0,
        gt=0,
        description="How often the worker marks the earlier events of newly identified cookies as identified, "
        "so the anonymous-events retention spares them.",
    )
    base_currency: str = Field("USD", description="The currency of a profile's lifetime value (ISO 4217 code).")
    currency_rates: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="One unit of each other currency in the base currency, e.g. EUR=1.08,GBP=1.27: converts "
        "revenue_by_currency into the lifetime value; a currency without a rate is left out of it, and named.",
    )
    audience_refresh_s: float = Field(1.0, description="Debounce of event-driven audience re-evaluation.")
    audience_window_refresh_s: float = Field(30.0, description="Schedule for audiences with time windows.")
    profile_rollup_s: float = Field(
        1.0, gt=0, description="How often per-key profile totals are recomputed for the keys new data touched."
    )
    identity_rules: Path | None = Field(None, description="Identity rules YAML; packaged defaults if unset.")
    worker_sinks: bool = Field(
        True, description="false: this worker only stitches (Faust agents), leaving ClickHouse to another process."
    )
    identity_store_mb: int = Field(
        32, ge=4, description="RocksDB memory (write buffers + block cache) per identity-table partition."
    )
    worker_id: str = Field(
        "w0",
        description="Names this worker's local state folder (RocksDB), its transactional id and its claims in drop "
        "folders: unique per worker.",
    )
    worker_session_timeout_s: float = Field(
        15.0,
        ge=6.0,
        description="A stitch worker that stops heartbeating (killed, frozen) loses its partitions after this long.",
    )
    connect_url: str = Field(
        "http://127.0.0.1:8083", description="Kafka Connect's REST API, for database sources (make connect-up)."
    )
    webhook_tolerance_s: float = Field(
        300.0, gt=0, description="Stripe-style signatures older or newer than this are refused (replays)."
    )
    folder_poll_s: float = Field(1.0, gt=0, description="How often folder sources look for new files.")
    source_status_s: float = Field(2.0, gt=0, description="How often pull sources publish their status.")
    log_level: str = "INFO"

    # Analyst SQL (POST /v1/sql, `cdp sql`): limits the engine enforces on every statement, so one query cannot
    # take the memory or the cores of the process that also collects, stitches and writes.
    sql_max_memory_mb: int = Field(1024, ge=16, description="Memory one analyst query may use (max_memory_usage).")
    sql_max_rows_read: int = Field(1_000_000_000, ge=1, description="Rows one query may read (max_rows_to_read).")
    sql_max_read_mb: int = Field(100_000, ge=1, description="Bytes one query may read, MiB (max_bytes_to_read).")
    sql_max_result_rows: int = Field(100_000, ge=1, description="Rows in one answer (max_result_rows).")
    sql_max_result_mb: int = Field(64, ge=1, description="Size of one answer, MiB (max_result_bytes).")
    sql_timeout_s: float = Field(30.0, gt=0, description="Execution time of one query (max_execution_time).")
    sql_max_threads: int = Field(1, ge=1, description="Engine threads of one query (max_threads).")
    sql_concurrency: int = Field(2, ge=1, description="Analyst queries running at once; more wait, then get 429.")
    sql_queue_s: float = Field(1.0, ge=0, description="How long a query waits for a free slot before 429.")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://cdp.example.com")
        return value

    @field_validator("base_currency")
    @classmethod
    def _base_currency(cls, value: str) -> str:
        return next(iter(parse_rates({value: 1.0})))

    @field_validator("currency_rates", mode="before")
    @classmethod
    def _currency_rates(cls, value: object) -> dict[str, float]:
        if isinstance(value, str | dict):
            return parse_rates(value)
        raise ValueError("write CODE=RATE pairs, comma separated (EUR=1.08,GBP=1.27)")

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.clickhouse_url:
            self.clickhouse_url = f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
        return self

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    def purge_configs(self) -> dict[str, str]:
        """Topic configs of the compacted topics that can hold a person: bound how long an erased value stays."""
        return {
            "segment.ms": str(self.purge_segment_ms),
            "max.compaction.lag.ms": str(self.purge_max_compaction_lag_ms),
            "delete.retention.ms": str(self.purge_delete_retention_ms),
            "min.cleanable.dirty.ratio": str(self.purge_min_cleanable_dirty_ratio),
        }

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    def known_privacy_key(self) -> str | None:
        """The deployment's privacy key as set or kept in ``data_dir``, never generated: a command run beside the
        stack (`cdp import`) must hash identifiers as the stack does, or it would screen nobody."""
        if self.privacy_key:
            return self.privacy_key
        path = self.data_dir / "privacy_key"
        return (path.read_text().strip() or None) if path.exists() else None

    def ensure_tokens(self) -> Settings:
        """Fill empty tokens (and the privacy and profile id keys) from ``data_dir`` or generate them once (mode 0600):
        never committed, stable across restarts so clients keep working, the ledger's hashes keep matching and profile
        ids stay the same."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for name in ("admin_token", "read_token", "analyst_token", "privacy_key", "profile_key"):
            if getattr(self, name):
                continue
            path = self.data_dir / name
            if path.exists():
                value = path.read_text().strip()
            else:
                value = secrets.token_urlsafe(24)
                path.write_text(value)
                path.chmod(0o600)
            setattr(self, name, value)
        return self
