"""The pipeline figures' rates (streams/pipeline_figures.py): differences between samples per second, never
negative (a topic re-created under the same name starts again at zero), and the stages named as the workers'
consumer groups are."""

from __future__ import annotations

from streams.pipeline_figures import PipelineFigures, Sample, stages
from streams.topics import Topics


def sample(at_s: float, online: int, stitched: int) -> Sample:
    return Sample(int(at_s * 1000), {"online": online, "mobile": 0}, stitched, {"stitching": 0, "sink": 0}, 0)


def test_rates_are_per_second_between_samples() -> None:
    figures = PipelineFigures("127.0.0.1:1", Topics("t"), ["online", "mobile"], keep=2)
    figures.add(sample(10, 100, 50))
    figures.add(sample(12, 300, 250))
    assert figures.samples[-1].rates == {"online": 100.0, "mobile": 0.0, "stitched": 100.0}
    figures.add(sample(13, 0, 0))
    assert figures.samples[-1].rates["online"] == 0.0
    assert len(figures.samples) == 2


def test_stages_are_the_groups_of_the_stitcher_and_the_sink() -> None:
    stitching, sink = stages(Topics("t"), ["online"])
    assert (stitching.group, sink.group) == ("t-stitch", "t-sink")
    assert "t.events.online" in stitching.topics and "t.events.stitched" in sink.topics


def test_the_commit_marker_closing_a_transactional_topic_is_not_lag() -> None:
    stitching, sink = stages(Topics("t"), ["online"])
    assert sink.behind("t.events.stitched", end=10, committed=9) == 0
    assert sink.behind("t.events.stitched", end=10, committed=5) == 4
    assert stitching.behind("t.events.online", end=10, committed=9) == 1  # the collector writes no transactions
    assert stitching.behind("t.events.online", end=10, committed=10) == 0
