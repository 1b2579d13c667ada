"""Analyst SQL on the real engine: escape attempts are refused with what was refused named, analysts' queries run.

Each statement is parsed by the engine of the session's chDB store (one migrated database for the module), so
this is the engine's own reading of every quoting, comment and spelling below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdp.analyst import sql_limits
from schemas.settings import Settings
from sinks.analyst import AnalystSql
from sinks.clickhouse import ClickHouse
from sinks.sql_guard import SqlRefused

README = Path(__file__).resolve().parents[2] / "README.md"
README_QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def analyst(module_db: ClickHouse) -> Iterator[AnalystSql]:
    sql = AnalystSql(module_db.url, module_db.database, sql_limits(Settings()), clients=1)
    yield sql
    sql.close()


# (statement, what the refusal must name). `{db}` is the analysts' database.
ESCAPES = [
    # quoted and backticked names of table functions
    ("SELECT * FROM \"file\"('/etc/hostname', 'LineAsString')", "table function file()"),
    ("SELECT * FROM `file`('/etc/hostname', 'LineAsString')", "table function file()"),
    ("SELECT * FROM `url`('http://127.0.0.1:1/', 'CSV', 'a String')", "table function url()"),
    ("SELECT * FROM \"s3\"('http://127.0.0.1:1/b/k', 'CSV')", "table function s3()"),
    ("SELECT * FROM `remote`('127.0.0.1', system.one)", "table function remote()"),
    # comments and whitespace inside and around names
    ("SELECT * FROM file/* a comment */('/etc/hostname', 'LineAsString')", "table function file()"),
    ("SELECT * FROM file\n  -- a comment\n  ('/etc/hostname', 'LineAsString')", "table function file()"),
    ("SELECT * FROM `fi le`('/etc/hostname')", "table function fi le()"),
    ("SELECT * FROM fi/**/le('/etc/hostname')", "Syntax error"),
    ("SELECT * FROM system . users", "system.users"),
    # mixed case
    ("SELECT * FROM FiLe('/etc/hostname', 'LineAsString')", "table function FiLe()"),
    ("SELECT * FROM URL('http://127.0.0.1:1/', 'CSV', 'a String')", "table function URL()"),
    ("SELECT * FROM SYSTEM.users", "database 'SYSTEM'"),
    ("SELECT * FROM `System`.`users`", "database 'System'"),
    ("SELECT FiLe('/etc/hostname')", "function FiLe() reads a file"),
    # unicode look-alikes (Cyrillic letters, fullwidth letters)
    ("SELECT * FROM `f\u0456le`('/etc/hostname', 'LineAsString')", "table function f\u0456le()"),
    ("SELECT * FROM `\u0455ystem`.users", "database '\u0455ystem'"),
    ("SELECT \uff26\uff29\uff2c\uff25('/etc/hostname')", "Unrecognized token"),
    # subqueries, CTEs, joins, unions
    ("SELECT (SELECT line FROM file('/etc/hostname', 'LineAsString')) AS s", "table function file()"),
    ("SELECT * FROM {db}.events WHERE user_id IN (SELECT name FROM system.users)", "system.users"),
    ("SELECT 1 WHERE EXISTS (SELECT 1 FROM system.grants)", "system.grants"),
    ("WITH leak AS (SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')) SELECT * FROM leak", "url()"),
    ("SELECT * FROM {db}.events AS e JOIN (SELECT * FROM remote('x', system.one)) AS r ON 1", "remote()"),
    ("SELECT 1 UNION ALL SELECT count() FROM system.named_collections", "system.named_collections"),
    ("SELECT * FROM {db}.events WHERE user_id IN system.users", "system.users"),
    ("SELECT * FROM {db}.events WHERE user_id GLOBAL NOT IN `default`.`secrets`", "database 'default'"),
    ("SELECT * FROM {db}.events WHERE user_id IN `system.users`", "with a dot"),
    ("SELECT * FROM `{db}.x`.events", "database '{db}.x'"),
    # view / merge / input / cluster-style functions
    ("SELECT * FROM view(SELECT * FROM system.users)", "table function view()"),
    ("SELECT * FROM merge('system', '^users$')", "table function merge()"),
    ("SELECT * FROM input('a String')", "table function input()"),
    ("SELECT * FROM cluster('default', system.users)", "table function cluster()"),
    ("SELECT * FROM clusterAllReplicas('default', system.one)", "table function clusterAllReplicas()"),
    ("SELECT * FROM executable('id', 'TSV', 'a String')", "table function executable()"),
    ("SELECT * FROM loop(numbers(3))", "table function loop()"),
    ("SELECT * FROM format(JSONEachRow, '{{\"a\": 1}}')", "table function format()"),
    ("SELECT * FROM numbers_mt(10)", "table function numbers_mt()"),
    # dictionaries and other tables reached by name
    ("SELECT dictGet('secrets', 'value', toUInt64(1))", "function dictGet() reads a dictionary"),
    ("SELECT dictGetString('secrets', 'value', toUInt64(1))", "function dictGetString() reads a dictionary"),
    ("SELECT dictHas('secrets', toUInt64(1))", "function dictHas() reads a dictionary"),
    ("SELECT * FROM dictionary('secrets')", "table function dictionary()"),
    ("SELECT * FROM system.dictionaries", "system.dictionaries"),
    ("SELECT joinGet('{db}.j', 'v', 1)", "function joinGet() reads a Join table"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "hasColumnInTable()"),
    ("SELECT generateSerialID('x')", "generateSerialID()"),
    ("SELECT aiGenerate('say something')", "aiGenerate()"),
    # SETTINGS anywhere
    ("SELECT count() FROM {db}.events SETTINGS max_memory_usage = 0", "SETTINGS clause"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS clause"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_threads = 64)", "SETTINGS clause"),
    ("EXPLAIN SELECT 1 SETTINGS max_execution_time = 0", "SETTINGS clause"),
    ("SHOW TABLES SETTINGS max_threads = 64", "SETTINGS clause"),
    ("DESCRIBE {db}.events SETTINGS max_threads = 64", "SETTINGS clause"),
    ("EXPLAIN max_threads = 64 SELECT 1", "EXPLAIN option 'max_threads'"),
    # INTO OUTFILE and FORMAT
    ("SELECT 1 INTO OUTFILE '/tmp/cdp-leak'", "INTO OUTFILE"),
    ("SELECT 1 INTO OUTFILE '/tmp/cdp-leak' TRUNCATE COMPRESSION 'gzip'", "INTO OUTFILE"),
    ("EXPLAIN SELECT 1 INTO OUTFILE '/tmp/cdp-leak'", "INTO OUTFILE"),
    ("SELECT 1 FORMAT JSON", "FORMAT clause"),
    ("SELECT 1 UNION ALL SELECT 2 FORMAT Template", "FORMAT clause"),
    ("SHOW TABLES FORMAT CSV", "FORMAT clause"),
    # several statements, writes, settings, admin statements
    ("SELECT 1; DROP TABLE {db}.events_store", "Multi-statements"),
    ("SELECT 1;SELECT * FROM file('/etc/hostname')", "Multi-statements"),
    ("SELECT 1 /* ; */ ; /* */ CREATE TABLE {db}.pwn (a Int8) ENGINE = Memory", "Multi-statements"),
    ("INSERT INTO {db}.events_store SELECT * FROM {db}.events_store", "INSERT statement"),
    ("ALTER TABLE {db}.events_store DELETE WHERE 1", "ALTER statement"),
    ("DROP TABLE {db}.events_store", "DROP statement"),
    ("CREATE TABLE {db}.pwn (a Int8) ENGINE = Memory", "CREATE statement"),
    ("TRUNCATE TABLE {db}.events_store", "DROP statement"),
    ("SET readonly = 0", "SET statement"),
    ("SYSTEM FLUSH LOGS", "SYSTEM statement"),
    ("KILL QUERY WHERE 1", "KILL QUERY statement"),
    ("GRANT ALL ON *.* TO default", "cannot read"),
    ("USE system", "USE statement"),
    ("OPTIMIZE TABLE {db}.events_store FINAL", "OPTIMIZE statement"),
    ("EXPLAIN AST INSERT INTO {db}.events_store SELECT * FROM {db}.events_store", "INSERT"),
    ("EXPLAIN TABLE OVERRIDE mysql('h', 'd', 't', 'u', 'p') PARTITION BY x", "EXPLAIN TABLE OVERRIDE"),
    ("SHOW CREATE USER default", "cannot read"),
    ("SHOW GRANTS", "cannot read"),
    ("SHOW PROCESSLIST", "cannot read"),
    ("SHOW DICTIONARIES", "SHOW DICTIONARIES"),
    ("SHOW CLUSTERS", "SHOW CLUSTERS"),
    ("SHOW TABLES FROM default", "database 'default'"),
    ("SHOW COLUMNS FROM users FROM system", "system.users"),
    ("DESCRIBE file('/etc/hostname', 'LineAsString')", "table function file()"),
    # system tables with secrets, and the rest of the database outside the list
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT * FROM system.quotas", "system.quotas"),
    ("SELECT * FROM system.processes", "system.processes"),
    ("SELECT query FROM system.query_log", "system.query_log"),
    ("SELECT * FROM system.text_log", "system.text_log"),
    ("SELECT * FROM system.server_settings", "system.server_settings"),
    ("SELECT command FROM system.mutations", "system.mutations"),
    ("SELECT * FROM system.macros", "system.macros"),
    ("SELECT * FROM system.clusters", "system.clusters"),
    ("SELECT * FROM system.user_directories", "system.user_directories"),
    ("SELECT * FROM system.settings_profile_elements", "system.settings_profile_elements"),
    ("SELECT * FROM information_schema.key_column_usage", "information_schema.key_column_usage"),
    ("SELECT * FROM default.anything", "database 'default'"),
]

ANALYST_QUERIES = [
    *README_QUERIES,
    "SELECT count() FROM system.settings",
    "SELECT name, value FROM system.settings WHERE name LIKE 'max_%' ORDER BY name LIMIT 5",
    "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name",
    "SELECT table, name, type FROM system.columns WHERE database = '{db}' AND table = 'events'",
    "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' AND active GROUP BY table",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}'",
    "SHOW TABLES",
    "SHOW TABLES FROM {db} LIKE 'event%'",
    "SHOW DATABASES",
    "SHOW SETTINGS LIKE 'max_memory%'",
    "SHOW COLUMNS FROM events",
    "DESCRIBE {db}.events",
    "DESC events",
    "DESCRIBE (SELECT 1 AS x)",
    "EXPLAIN SELECT count() FROM {db}.events",
    "EXPLAIN indexes = 1 SELECT count() FROM {db}.events WHERE type = 'track'",
    "EXPLAIN SYNTAX SELECT * FROM {db}.profiles WHERE orders > 0",
    "SELECT currentDatabase()",
    "SELECT count() FROM events",  # the session's database is the analysts' one
    "SELECT type, event, count() AS n FROM {db}.events GROUP BY type, event ORDER BY n DESC LIMIT 20",
    "SELECT toStartOfDay(timestamp) AS day, uniqExact(anonymous_id) FROM {db}.events GROUP BY day ORDER BY day",
    # a funnel with sequenceMatch, and window functions
    """SELECT countIf(converted) FROM (
           SELECT profile_id, sequenceMatch('(?1).*(?2)')(toDateTime(timestamp), event = 'Product Viewed',
                                                           event = 'Order Completed') AS converted
           FROM {db}.events_with_profile WHERE profile_id != '' GROUP BY profile_id)""",
    """SELECT profile_id, event, timestamp,
              row_number() OVER (PARTITION BY profile_id ORDER BY timestamp) AS nth,
              lagInFrame(event) OVER (PARTITION BY profile_id ORDER BY timestamp) AS previous
       FROM {db}.events_with_profile ORDER BY profile_id, nth LIMIT 100""",
    """SELECT channel, quantiles(0.5, 0.9)(JSONExtractFloat(properties, 'revenue')) AS revenue
       FROM {db}.events WHERE event = 'Order Completed' GROUP BY channel WITH ROLLUP""",
    """WITH buyers AS (SELECT DISTINCT profile_id FROM {db}.events_with_profile WHERE event = 'Order Completed')
       SELECT count() FROM {db}.profiles WHERE profile_id IN (SELECT profile_id FROM buyers)""",
    """SELECT e.event, i.id_type, count() FROM {db}.events AS e
       INNER JOIN {db}.identities AS i ON e.anonymous_id = i.id_value GROUP BY e.event, i.id_type""",
    "SELECT arrayJoin(['a', 'b']) AS x, x IN ('a') AS first",
    "SELECT number, number % 3 AS k FROM numbers(10) ORDER BY k LIMIT 1 BY k",
    "SELECT * FROM generate_series(1, 5)",
    "SELECT * FROM values('k String, v UInt8', ('a', 1), ('b', 2))",
    "SELECT 'file(''/etc/hostname'') SETTINGS readonly = 0' AS not_a_call -- INTO OUTFILE in a comment",
    "SELECT 1 AS `SETTINGS`, 'x; DROP TABLE t' AS s",
]


@pytest.mark.parametrize("query,named", ESCAPES, ids=[f"e{i}" for i in range(len(ESCAPES))])
def test_escape_is_refused_naming_what(analyst: AnalystSql, query: str, named: str) -> None:
    db = analyst.database
    with pytest.raises(SqlRefused) as refused:
        analyst.run(query.format(db=db))
    assert named.format(db=db) in str(refused.value)


def test_refused_statements_did_not_run(analyst: AnalystSql, module_db: ClickHouse) -> None:
    """The embedded engine runs every statement of a call; the guard never hands it the analyst's text."""
    with pytest.raises(SqlRefused):
        analyst.run(f"SELECT 1; CREATE TABLE {module_db.database}.pwn (a Int8) ENGINE = Memory")
    assert module_db.scalar(f"EXISTS TABLE {module_db.database}.pwn") == 0


@pytest.mark.parametrize("query", ANALYST_QUERIES, ids=[f"q{i}" for i in range(len(ANALYST_QUERIES))])
def test_analyst_query_runs(analyst: AnalystSql, query: str) -> None:
    db = analyst.database
    analyst.run(query.replace("cdp.", f"{db}.").replace("{db}", db))


def test_bare_names_are_the_analysts_database(analyst: AnalystSql) -> None:
    assert analyst.run("SELECT currentDatabase()")[1] == [[analyst.database]]
