-- The DMP counts each event once however often it is delivered. A block's deduplication token names its exact
-- offsets, so it only drops a retry of the same block; an event can also come back in another block (a sink
-- killed between its insert and its offset commit reads again from the committed offsets and cuts its blocks
-- elsewhere; an SDK that lost an answer sends the same event again, a second record). events_store collapses
-- such copies by message_id; the per-block sums before counted them twice. Counts are now exact distinct counts
-- (uniqExact states) of a per-event key: the event's identity in events_store (message_id, type, event name,
-- day), so a cookie's counts are those of its rows in the `events` view (sinks/views/anonymous_profiles*.sql).
-- The store is made anew here; the migration runner then creates its view over the empty store and refills it
-- from the deduplicated events (the view's `history`). Re-runnable: a rerun drops and rebuilds it again.
DROP VIEW IF EXISTS {db}.anonymous_profiles_landing_mv;

DROP TABLE IF EXISTS {db}.anonymous_profiles_store;

CREATE TABLE IF NOT EXISTS {db}.anonymous_profiles_store
(
    id_type         LowCardinality(String),
    id_value        String,
    first_seen      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen       SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events          AggregateFunction(uniqExact, UInt64),
    pages           AggregateFunction(uniqExact, UInt64),
    screens         AggregateFunction(uniqExact, UInt64),
    event_counts    AggregateFunction(uniqExactMap, Map(String, UInt64)),
    page_counts     AggregateFunction(uniqExactMap, Map(String, UInt64)),
    category_counts AggregateFunction(uniqExactMap, Map(String, UInt64)),
    device_type     AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    os              AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    browser         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    country         AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    region          AggregateFunction(argMax, String, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (id_type, id_value)
TTL toDateTime(last_seen) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
