"""The pure part of `make bench`: results, the stage registry, modes, percentiles, the table and the JSON.

Nothing here touches a broker, a process or the network, so it is tested fast (tests/bench/test_run.py).

A stage is anything with a ``name``, a one-line ``description`` and ``run(ctx) -> list[Result]``; it is added to
:data:`STAGES` with :func:`register`. ``bench/run.py`` runs the registered stages in registration order (or the
ones named by ``--only``) and prints one table. See bench/README.md.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "FULL",
    "MODES",
    "QUICK",
    "STAGES",
    "Mode",
    "Result",
    "Stage",
    "StageError",
    "format_number",
    "format_ratio",
    "format_rss",
    "format_table",
    "percentile",
    "register",
    "report_json",
    "selected_stages",
]


# ------------------------------------------------------------------------------------------- results


@dataclass
class Result:
    """One row of the table: a figure measured by a stage, beside the raw baseline measured in the same run.

    ``ratio`` is ``value / baseline`` whatever the unit: for throughput higher is better, for latency lower is
    better (``lower_is_better`` says which). ``peak_rss_mb`` maps a process label (``cdp``, ``kafka``,
    ``load x2``: the largest of two load processes) to its peak resident memory in MiB during the stage.
    """

    stage: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    lower_is_better: bool = False
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or not self.baseline:
            return None
        if not (math.isfinite(self.value) and math.isfinite(self.baseline)):
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return _finite(out)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class StageError(RuntimeError):
    """A stage could not produce its figures (the message says why); the run goes on with the next stage.

    ``results`` are the rows it did measure, shown beside the failure (a check that failed on some of them)."""

    def __init__(self, message: str, results: Sequence[Result] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


# -------------------------------------------------------------------------------------------- stages


@runtime_checkable
class Stage(Protocol):
    name: str
    description: str

    def run(self, ctx: Any) -> list[Result]: ...


STAGES: dict[str, Stage] = {}

S = TypeVar("S")


def register(stage: S) -> S:
    """Add a stage (an instance, or a class with a no-argument constructor) to :data:`STAGES`.

    Usable as a class decorator. Names are unique: registering a second stage under a taken name is an error,
    so a plug-in cannot silently replace another stage.
    """
    instance = stage() if isinstance(stage, type) else stage
    if not isinstance(instance, Stage):
        raise TypeError(f"{stage!r} is not a Stage: it needs name, description and run(ctx)")
    name = instance.name
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"stage name must be lower-case letters, digits and _: {name!r}")
    if name in STAGES and STAGES[name] is not instance:
        raise ValueError(f"a stage named {name!r} is already registered")
    STAGES[name] = instance
    return stage


def selected_stages(only: str | Iterable[str] | None, registry: Mapping[str, Stage] | None = None) -> list[Stage]:
    """The stages to run: all in registration order, or those named in ``only`` (comma separated), in the
    registry's order. Unknown names raise ValueError listing the known ones."""
    registry = STAGES if registry is None else registry
    if only is None or only == "" or only == []:
        return list(registry.values())
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    return [stage for name, stage in registry.items() if name in names]


# --------------------------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class Mode:
    """Sizes and durations of one bench mode. Stages read their knobs from here (``ctx.mode``)."""

    name: str
    # collector
    collector_processes: int = 2  # CDP_COLLECTOR_PROCESSES of the measured `cdp collector`
    load_processes: int = 2
    connections_per_process: int = 8
    batch_size: int = 100
    warmup_s: float = 2.0
    collector_s: float = 8.0
    track_rate: float = 200.0  # offered single-event /v1/track requests per second
    track_s: float = 8.0
    # sink
    sink_rows: int = 300_000
    # stitching
    stitch_events: int = 10_000  # the journeys shape
    stitch_shapes: tuple[str, ...] = ("journeys", "steady", "cold")
    steady_people: int = 1_000  # the steady shape: this many people's journeys in time order (~42 events each)
    cold_events: int = 20_000
    catchup_events: int = 100_000  # 0: no catch-up row
    stitch_workers: tuple[int, ...] = (1, 2)
    stitch_timeout_s: float = 300.0
    # end to end
    e2e_events: int = 20_000
    e2e_connections: int = 8
    # soak: steady load through `cdp run` at a share of the end-to-end capacity, sampled every soak_sample_s
    soak_s: float = 120.0
    soak_warmup_s: float = 30.0  # load before soak_s whose samples are shown but not judged
    soak_people: int = 2_000  # the soak's population: returning customers once all have come
    soak_sample_s: float = 10.0
    soak_capacity_share: float = 0.5
    # freshness
    freshness_s: float = 15.0
    freshness_background_rate: float = 20.0
    freshness_probe_rate: float = 4.0
    # identity accuracy
    accuracy_people: int = 2_000
    accuracy_timeout_s: float = 600.0
    # Lean journeys for the accuracy population: one session per cookie/device, one event per session, one
    # receipt. Every identity pattern stays (cookies, devices, logins, aliases, receipts, CRM, shared devices,
    # junk); only the repeated page views go, so stitching has a fifth of the events to get through.
    accuracy_lean: bool = False
    # database change capture: rows of the PostgreSQL table snapshotted to profiles
    cdc_rows: int = 2_000
    cdc_timeout_s: float = 600.0
    # console: events stored while the console's pages are timed (the target is stated at 1M: full mode)
    console_events: int = 200_000
    console_rounds: int = 20
    console_passes: int = 3
    seed: int = 42

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


QUICK = Mode(
    name="quick",
    collector_s=6.0,
    track_s=6.0,
    stitch_events=2_000,
    freshness_s=10.0,
    accuracy_people=500,
    accuracy_lean=True,
)
FULL = Mode(
    name="full",
    load_processes=2,
    connections_per_process=16,
    warmup_s=5.0,
    collector_s=30.0,
    track_rate=300.0,  # from 2 load processes; at 500/s the load processes alone took a core of the two
    track_s=30.0,
    sink_rows=1_000_000,
    stitch_events=100_000,
    steady_people=5_000,
    cold_events=100_000,
    catchup_events=1_000_000,
    e2e_events=80_000,
    soak_s=1_200.0,
    soak_warmup_s=300.0,
    soak_people=20_000,
    stitch_timeout_s=1_800.0,
    freshness_s=60.0,
    accuracy_people=5_000,  # ~44,000 events: about 8 minutes at today's stitching rate (2 cores)
    accuracy_timeout_s=7_200.0,
    cdc_rows=1_000_000,
    cdc_timeout_s=7_200.0,
    console_events=1_000_000,
    accuracy_lean=True,  # 50,000 people with full journeys are ~2.2M events: hours at today's stitching rate
)
MODES: dict[str, Mode] = {"quick": QUICK, "full": FULL}


# ------------------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float] | Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    None for no values. ``q`` outside 0..100 is an error.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return float(data[lo] + (data[hi] - data[lo]) * frac)


def format_number(value: float | None) -> str:
    """Readable figures: thousands separated integers from 100 up, three significant digits below."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def format_ratio(ratio: float) -> str:
    """Two decimals, or two significant digits below 0.1 (a stage at 0.0004 of its raw limit is not "0.00")."""
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 or ratio == 0 else f"{ratio:.2g}"


def format_rss(peaks: Mapping[str, float]) -> str:
    if not peaks:
        return "-"
    return ", ".join(f"{label} {value:,.0f}" for label, value in peaks.items())


COLUMNS = ("stage", "figure", "value", "unit", "raw baseline", "ratio", "peak RSS MiB")


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        baseline = format_number(r.baseline)
        if r.baseline is not None and r.baseline_label:
            baseline += f" ({r.baseline_label})"
        ratio = "-" if r.ratio is None else format_ratio(r.ratio) + (" (lower=better)" if r.lower_is_better else "")
        rows.append([r.stage, r.figure, format_number(r.value), r.unit, baseline, ratio, format_rss(r.peak_rss_mb)])
    return rows


def format_table(results: Sequence[Result], errors: Mapping[str, str] | None = None) -> str:
    """The one table: stage, figure, value, unit, raw baseline, ratio, peak RSS per process; failed stages
    are listed under it with their reason."""
    rows = [list(COLUMNS), *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = {2, 5}

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return " | ".join(cells).rstrip()

    out = [line(rows[0]), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows[1:]]
    for stage, reason in (errors or {}).items():
        out.append(f"{stage}: FAILED: {reason}")
    return "\n".join(out) + "\n"


def report_json(
    mode: Mode,
    results: Sequence[Result],
    errors: Mapping[str, str] | None = None,
    *,
    started: float | None = None,
    finished: float | None = None,
    environment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document written beside the table (same rows, plus details and the mode's knobs)."""
    return _finite(
        {
            "schema": 1,
            "mode": mode.name,
            "started_at": started,
            "finished_at": finished if finished is not None else time.time(),
            "machine": {
                "cpus": _cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "environment": dict(environment or {}),
            "settings": mode.as_dict(),
            "columns": list(COLUMNS),
            "results": [r.as_dict() for r in results],
            "errors": dict(errors or {}),
        }
    )


def _cpu_count() -> int | None:
    import os

    return os.cpu_count()
