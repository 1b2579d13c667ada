"""Tests of the pure parts of `make bench`: percentiles, figures, the table, the JSON, the stage registry, mode
overrides. No broker, no process, no network."""

from __future__ import annotations

import json

import pytest

import bench.core as core
from bench.core import (
    FULL,
    MODES,
    QUICK,
    Result,
    StageError,
    format_number,
    format_ratio,
    format_rss,
    format_table,
    percentile,
    register,
    report_json,
    selected_stages,
)
from bench.load import Window

# ------------------------------------------------------------------------------------------ percentile


def test_percentile_empty_and_single() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 0) == 7.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile(values, 40) == 29.0
    assert percentile(values, 99) == pytest.approx(49.6)
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)


def test_percentile_ignores_input_order_and_accepts_iterables() -> None:
    assert percentile(iter([5, 1, 4, 2, 3]), 50) == 3
    assert percentile((x for x in [10.0, 0.0]), 25) == pytest.approx(2.5)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1, 2], q)


# -------------------------------------------------------------------------------------------- figures


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (0, "0"),
        (0.0, "0"),
        (0.99769, "0.998"),
        (5.664, "5.66"),
        (42.1, "42.1"),
        (99.94, "99.9"),
        (131.2, "131"),
        (200_939.4, "200,939"),
        (-1234.0, "-1,234"),
    ],
)
def test_format_number(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_format_ratio() -> None:
    assert format_ratio(1.6789) == "1.68"
    assert format_ratio(0.1) == "0.10"
    assert format_ratio(0.0503) == "0.05"
    assert format_ratio(0.000414) == "0.00041"
    assert format_ratio(0.0) == "0.00"


def test_format_rss() -> None:
    assert format_rss({}) == "-"
    assert format_rss({"cdp": 110.4, "load x2": 50.0}) == "cdp 110, load x2 50"


def test_ratio() -> None:
    assert Result("s", "f", 50.0, "ev/s", 200.0).ratio == 0.25
    assert Result("s", "f", 50.0, "ev/s").ratio is None
    assert Result("s", "f", None, "ev/s", 3.0).ratio is None
    assert Result("s", "f", 5.0, "ev/s", 0.0).ratio is None
    assert Result("s", "f", float("inf"), "ev/s", 1.0).ratio is None


# ---------------------------------------------------------------------------------------------- table

RESULTS = [
    Result(
        "collector",
        "/v1/batch accepted",
        10_100.0,
        "events/s",
        200_939.0,
        "raw producer",
        peak_rss_mb={"cdp": 110.2, "kafka": 404.0, "load x2": 50.1},
    ),
    Result("collector", "/v1/track p99", 31.5, "ms", 5.2, "raw produce+ack", lower_is_better=True),
    Result("freshness", "POST -> visible p50", 511.0, "ms", lower_is_better=True),
]


def test_table_has_header_rule_and_one_line_per_result() -> None:
    lines = format_table(RESULTS).splitlines()
    assert lines[0].split(" | ")[0].strip() == "stage"
    assert [c.strip() for c in lines[0].split("|")] == list(core.COLUMNS)
    assert set(lines[1]) <= {"-", "+"}
    assert len(lines) == 2 + len(RESULTS)
    first = [c.strip() for c in lines[2].split("|")]
    assert first == [
        "collector",
        "/v1/batch accepted",
        "10,100",
        "events/s",
        "200,939 (raw producer)",
        "0.05",
        "cdp 110, kafka 404, load x2 50",
    ]
    second = [c.strip() for c in lines[3].split("|")]
    assert second[4:6] == ["5.20 (raw produce+ack)", "6.06 (lower=better)"]
    third = [c.strip() for c in lines[4].split("|")]
    assert third[4:] == ["-", "-", "-"]


def test_table_columns_line_up() -> None:
    lines = format_table(RESULTS).splitlines()
    bars = {tuple(i for i, ch in enumerate(line) if ch == "|") for line in [lines[0], *lines[2:]]}
    assert len(bars) == 1  # every separator at the same position on every line


def test_table_lists_failed_stages() -> None:
    text = format_table(RESULTS[:1], {"sink": "StageError: child failed"})
    assert text.splitlines()[-1] == "sink: FAILED: StageError: child failed"
    assert format_table([], {}).count("\n") == 2  # header and rule only


# ----------------------------------------------------------------------------------------------- json


def test_report_json_shape() -> None:
    bad = Result("stitching", "events/s", float("nan"), "events/s", 10.0, details={"x": [1.0, float("inf")]})
    doc = report_json(
        QUICK, [*RESULTS, bad], {"sink": "boom"}, started=1.0, finished=2.0, environment={"kafka": "127.0.0.1:1"}
    )
    text = json.dumps(doc, allow_nan=False)  # strictly valid JSON: NaN/inf became null
    back = json.loads(text)
    assert back["schema"] == 1
    assert back["mode"] == "quick"
    assert (back["started_at"], back["finished_at"]) == (1.0, 2.0)
    assert back["errors"] == {"sink": "boom"}
    assert back["environment"] == {"kafka": "127.0.0.1:1"}
    assert back["columns"] == list(core.COLUMNS)
    assert back["settings"]["accuracy_people"] == QUICK.accuracy_people
    assert back["machine"]["cpus"] >= 1
    assert len(back["results"]) == 4
    first = back["results"][0]
    assert set(first) == {
        "stage",
        "figure",
        "value",
        "unit",
        "baseline",
        "baseline_label",
        "lower_is_better",
        "peak_rss_mb",
        "details",
        "ratio",
    }
    assert first["ratio"] == pytest.approx(10_100 / 200_939)
    assert first["peak_rss_mb"] == {"cdp": 110.2, "kafka": 404.0, "load x2": 50.1}
    assert back["results"][3]["value"] is None
    assert back["results"][3]["ratio"] is None
    assert back["results"][3]["details"] == {"x": [1.0, None]}


# ------------------------------------------------------------------------------------------- registry


class _Dummy:
    name = "dummy"
    description = "a test stage"

    def run(self, ctx: object) -> list[Result]:
        return [Result(self.name, "figure", 1.0, "unit")]


def test_register_class_and_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "STAGES", {})
    assert register(_Dummy) is _Dummy  # usable as a class decorator
    assert isinstance(core.STAGES["dummy"], _Dummy)

    other = _Dummy()
    other.name = "other"
    register(other)
    assert core.STAGES["other"] is other
    assert list(core.STAGES) == ["dummy", "other"]
    assert core.STAGES["dummy"].run(None)[0].stage == "dummy"


def test_register_refuses_duplicates_and_non_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "STAGES", {})
    register(_Dummy)
    with pytest.raises(ValueError, match="already registered"):
        register(_Dummy())

    class NoRun:
        name = "norun"
        description = "x"

    with pytest.raises(TypeError):
        register(NoRun)
    bad = _Dummy()
    bad.name = "Bad Name"
    with pytest.raises(ValueError, match="lower-case"):
        register(bad)


def test_selected_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: dict[str, core.Stage] = {}
    for name in ("a", "b", "c"):
        stage = _Dummy()
        stage.name = name
        registry[name] = stage
    assert [s.name for s in selected_stages(None, registry)] == ["a", "b", "c"]
    assert [s.name for s in selected_stages("", registry)] == ["a", "b", "c"]
    assert [s.name for s in selected_stages("c,a", registry)] == ["a", "c"]  # registry order, not argument order
    assert [s.name for s in selected_stages(["b"], registry)] == ["b"]
    with pytest.raises(ValueError, match="unknown stage"):
        selected_stages("a,nope", registry)


def test_builtin_stages_register_in_table_order() -> None:
    import bench.stages  # noqa: F401

    names = list(core.STAGES)
    assert names[:6] == ["collector", "sink", "stitching", "freshness", "identity_accuracy", "end_to_end"]
    assert names[6:8] == ["lookup", "metrics"]  # the last of the shared pipeline's stages checks its /metrics
    for stage in core.STAGES.values():
        assert isinstance(stage, core.Stage)
        assert stage.description


def test_stage_error_is_a_runtime_error() -> None:
    assert issubclass(StageError, RuntimeError)


# ---------------------------------------------------------------------------------------------- modes


def test_modes() -> None:
    assert MODES == {"quick": QUICK, "full": FULL}
    assert FULL.accuracy_people > QUICK.accuracy_people
    assert FULL.stitch_events > QUICK.stitch_events
    assert FULL.collector_s > QUICK.collector_s
    assert QUICK.stitch_workers == (1, 2)


def test_apply_overrides() -> None:
    from bench.run import apply_overrides

    mode = apply_overrides(QUICK, ["sink_rows=5000", "track_rate=50.5", "stitch_workers=1,2,4", "accuracy_lean=false"])
    assert mode.sink_rows == 5000
    assert mode.track_rate == 50.5
    assert mode.stitch_workers == (1, 2, 4)
    assert mode.accuracy_lean is False
    assert mode.name == "quick"
    assert apply_overrides(QUICK, []) is QUICK
    for bad in (["nope=1"], ["sink_rows"], ["name=x"]):
        with pytest.raises(ValueError):
            apply_overrides(QUICK, bad)


def test_cli_list_and_bad_stage_start_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.run import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "collector" in out and "identity_accuracy" in out
    assert main(["--only", "nope"]) == 2
    assert "unknown stage" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- timing


def test_window() -> None:
    w = Window(start_at=100.0, warmup_s=2.0, duration_s=8.0)
    assert (w.begin, w.end) == (102.0, 110.0)
    assert not w.contains(101.9)
    assert w.contains(102.0)
    assert w.contains(109.99)
    assert not w.contains(110.0)


def test_predicted_key_maps_advertising_ids_to_the_truths_device_ids() -> None:
    from bench.accuracy import predicted_key

    assert predicted_key("advertising_id", "AD-1") == "device_id:AD-1"
    assert predicted_key("email", "a@example.com") == "email:a@example.com"
