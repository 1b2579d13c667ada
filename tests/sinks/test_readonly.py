import pytest

from sinks.readonly import ReadOnlyViolation, check_readonly, run_readonly


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "select count() from cdp.events where event = 'file(x)'",
        "WITH a AS (SELECT 1) SELECT * FROM a;",
        "SHOW TABLES FROM cdp",
        "DESCRIBE TABLE cdp.events",
        "EXPLAIN SELECT 1",
        "SELECT name FROM system.tables",
        "SELECT 'SETTINGS readonly=0' AS s -- harmless comment with url(",
    ],
)
def test_reads_are_allowed(query: str) -> None:
    assert check_readonly(query)


@pytest.mark.parametrize(
    "query,why",
    [
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV')", "url"),
        ("select * from S3 ('x')", "s3"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "remote"),
        ("SELECT * FROM executable('id', 'TSV', 'x String')", "executable"),
        ("INSERT INTO cdp.events_store SELECT * FROM cdp.events_store", "only"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT 1; DROP TABLE cdp.events_store", "one statement"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "OUTFILE"),
        ("ALTER TABLE cdp.events_store DELETE WHERE 1", "only"),
        ("SET readonly = 0", "only"),
        ("SYSTEM FLUSH LOGS", "only"),
        ("/* SELECT */ DROP TABLE x", "only"),
        ("", "empty"),
    ],
)
def test_escapes_are_refused(query: str, why: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=why):
        check_readonly(query)


def test_runs_against_the_engine(ch) -> None:
    columns, rows = run_readonly(ch, f"SELECT count() AS n FROM {ch.database}.events")
    assert columns == ["n"]
    assert rows == [[0]]
