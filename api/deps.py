"""What routes need, handed in by whoever builds the app (the runner), never imported from other rooms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.settings import Settings
    from sinks.analyst import AnalystSql
    from sinks.clickhouse import ClickHouse
    from streams.producer import AsyncProducer
    from streams.sources import SourceRegistry
    from streams.topics import Topics


@dataclass
class Services:
    settings: Settings
    topics: Topics
    producer: AsyncProducer | None = None  # collector parts
    sources: SourceRegistry | None = None
    ch: ClickHouse | None = None  # query parts
    analyst: AnalystSql | None = None  # POST /v1/sql: guarded, limited clients of their own
    kafka_ready: Any = None  # () -> bool
    extra: dict[str, Any] = field(default_factory=dict)
