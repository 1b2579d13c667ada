"""The README's table of parts is the runner's: every part it names exists, in the order the runner starts them
(the stack stops them in reverse), so a newcomer's map cannot drift from the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from cdp import runner

README = Path(__file__).resolve().parents[1] / "README.md"


def table_rows() -> list[list[str]]:
    """The rows of the table under "The parts of a process and their lifecycle": the backticked names of each."""
    section = README.read_text().split("### The parts of a process and their lifecycle", 1)[1]
    table = re.search(r"^\| part \|.*?(?=^$)", section, re.M | re.S)
    assert table, "no table of parts in the README"
    rows = table.group(0).splitlines()[2:]
    return [re.findall(r"`([^`]+)`", row.split("|")[1]) for row in rows]


def start_sequence() -> str:
    """The source of start_parts with the helpers it calls written out in place: the start order as code."""
    source = inspect.getsource(runner.start_parts)
    for helper in (
        runner.start_privacy_parts,
        runner.start_audience_parts,
        runner.start_source_parts,
        runner.start_http,
    ):
        source = source.replace(f"{helper.__name__}(", inspect.getsource(helper))
    return source


def test_every_part_in_the_table_is_started_in_the_order_of_the_table() -> None:
    rows = table_rows()
    assert len(rows) >= 8
    code = start_sequence()
    positions = []
    for names in rows:
        last = names[-1].split(".")[-1]  # the wrapper in cdp/parts.py, else the class
        found = [m.start() for m in re.finditer(rf"\b{re.escape(last)}\(", code)]  # a call, not a setting
        assert found, f"{last} (README) is not started by cdp/runner.py"
        positions.append(found[0])
    assert positions == sorted(positions), "the README lists the parts in another order than the runner starts them"
