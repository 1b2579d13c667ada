"""Every SQL example in README.md runs on the real engine against the real schema."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(QUERIES) >= 4


@pytest.mark.parametrize("query", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_example_runs(ch, query: str) -> None:
    ch.query(query.replace("cdp.", f"{ch.database}."))
