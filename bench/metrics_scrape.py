"""What moved on a `cdp` process's ``/metrics`` while the bench drove it: per metric family of the README's metrics
table, whether its series changed between a scrape before the load and the scrapes during and after it, and by how
much.

The families come from the README itself (``readme_families``), so the list an operator reads is the list the bench
checks; a unit test holds that list to the metrics the code registers. A family whose series did not move is named
as such: the scrape shows the metrics are wired, not only declared. The few families the bench cannot move on a
healthy stack (fault counters, another process's) are in :data:`NOT_DRIVEN` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "NOT_DRIVEN",
    "README",
    "FamilyMove",
    "family_moves",
    "moved_families",
    "moved_summary",
    "parse_metrics",
    "readme_families",
    "report_lines",
    "scrape",
]

README = Path(__file__).resolve().parents[1] / "README.md"

# Families the bench's load cannot move on a healthy stack, and why (reported, never required).
NOT_DRIVEN: dict[str, str] = {
    "cdp_stitch_aborted_batches_total": "a fault counter: a stitch batch aborted and read again",
    "cdp_producer_queue_full_total": "a back-pressure counter: a producer's local queue full",
    "cdp_import_rows_total": "counted in the `cdp import` process (its summary line), not the service",
    "cdp_source_rows_total": "only in a process running a pull source (the cdc stage's own `cdp run`)",
    "cdp_source_errors_total": "only in a process running a pull source, and only for a row it cannot take",
    "cdp_source_lag": "only in a process running a pull source (the cdc stage's own `cdp run`)",
    "cdp_source_up": "only in a process running a pull source (the cdc stage's own `cdp run`)",
}


def readme_families(text: str | None = None) -> dict[str, list[str]]:
    """Per stage (first column) of the README's "### Metrics" table, the metric families its row names, in order."""
    text = README.read_text() if text is None else text
    section = text.partition("\n### Metrics\n")[2].partition("\n#")[0]
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = line.strip().strip("|").split("|", 1)
        if len(cells) == 2 and "`cdp_" in cells[1]:
            stage = cells[0].strip().partition(" (")[0]
            out[stage] = list(dict.fromkeys(re.findall(r"`(cdp_[a-z_]+)", cells[1])))
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {series (name with its labels): value}; comments and unreadable lines left out."""
    series: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            series[name] = float(value)
        except ValueError:
            continue
    return series


@dataclass(frozen=True)
class FamilyMove:
    """One family between the scrapes: its series after, whether any changed, and the change of their sum
    (a histogram by its ``_count``: observations; a gauge's sum may be back where it was although it moved)."""

    stage: str
    family: str
    series: int
    moved: bool
    delta: float

    @property
    def required(self) -> bool:
        return self.family not in NOT_DRIVEN


def _of(snapshot: dict[str, float], name: str) -> dict[str, float]:
    return {s: v for s, v in snapshot.items() if s.partition("{")[0] == name}


def family_moves(
    before: dict[str, float], later: Sequence[dict[str, float]], families: dict[str, list[str]] | None = None
) -> list[FamilyMove]:
    """Each family of ``families`` (default: the README's) compared between ``before`` and every later scrape (the
    last one is "after"). A series that appeared, or whose value differs in any later scrape, moved (one missing
    from a scrape, say one that did not answer, did not)."""
    families = readme_families() if families is None else families
    last = next((snapshot for snapshot in reversed(later) if snapshot), {})
    moves = []
    for stage, names in families.items():
        for family in names:
            name = f"{family}_count" if any(s.startswith(f"{family}_count") for s in last) else family
            start = _of(before, name)
            moved = any(start.get(s) != v for snapshot in later for s, v in _of(snapshot, name).items())
            end = _of(last, name)
            moves.append(FamilyMove(stage, family, len(end), moved, sum(end.values()) - sum(start.values())))
    return moves


def moved_families(moves: Sequence[FamilyMove]) -> dict[str, dict[str, float]]:
    """{family: delta} of the families that moved, per stage (for the JSON)."""
    out: dict[str, dict[str, float]] = {}
    for m in moves:
        if m.moved:
            out.setdefault(m.stage, {})[m.family] = m.delta
    return out


def moved_summary(moves: Sequence[FamilyMove]) -> str:
    """One line: the families that moved with their deltas, then those that did not."""
    moved = ", ".join(f"{m.family} {m.delta:+,.0f}" for m in moves if m.moved) or "nothing"
    still = ", ".join(m.family for m in moves if not m.moved and m.series)
    return f"moved: {moved}" + (f"; present, did not move: {still}" if still else "")


def report_lines(moves: Sequence[FamilyMove]) -> list[str]:
    """One line per family: stage, family, moved or not (a required one not moving says FAIL), delta, series."""
    lines = []
    for m in moves:
        if m.moved:
            state = "moved"
        elif m.required:
            state = "FAIL: did not move"
        else:
            state = f"did not move ({NOT_DRIVEN[m.family]})"
        lines.append(f"{m.stage:<24} {m.family:<34} {m.delta:>+14,.0f} {m.series:>3} series  {state}")
    return lines


def scrape(url: str) -> dict[str, float]:
    """The series of ``url``/metrics; empty when the process does not answer (the bench goes on)."""
    try:
        r = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10)
        r.raise_for_status()
    except httpx.HTTPError:
        return {}
    return parse_metrics(r.text)
