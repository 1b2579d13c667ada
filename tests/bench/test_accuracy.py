"""Tests of pairwise identity-accuracy scoring (bench/accuracy.py)."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.accuracy import Scores, pairwise_scores, read_truth
from bench.generator import write_truth

TRUTH = {"a": "p1", "b": "p1", "c": "p1", "d": "p2", "e": "p2", "f": "p3"}  # 3 + 1 + 0 = 4 true pairs


def test_perfect() -> None:
    predicted = {k: f"profile-{v}" for k, v in TRUTH.items()}
    s = pairwise_scores(predicted, TRUTH)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert (s.pairs_predicted, s.pairs_true, s.pairs_correct) == (4, 4, 4)
    assert (s.identifiers, s.true_clusters, s.predicted_clusters, s.largest_predicted_cluster) == (6, 3, 3, 3)


def test_all_merged() -> None:
    s = pairwise_scores(dict.fromkeys(TRUTH, "blob"), TRUTH)
    assert s.pairs_predicted == 15  # C(6, 2)
    assert s.precision == pytest.approx(4 / 15)
    assert s.recall == 1.0
    assert s.f1 == pytest.approx(2 * (4 / 15) / (1 + 4 / 15))
    assert s.largest_predicted_cluster == 6


def test_all_split() -> None:
    for predicted in ({}, {k: k for k in TRUTH}):  # missing keys are singletons too
        s = pairwise_scores(predicted, TRUTH)
        assert (s.precision, s.recall, s.f1) == (1.0, 0.0, 0.0)
        assert (s.pairs_predicted, s.pairs_correct, s.predicted_clusters) == (0, 0, 6)


def test_hand_checked_mixed() -> None:
    predicted = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "Z", "junk:undefined": "Y"}
    s = pairwise_scores(predicted, TRUTH)  # f missing: singleton; junk key not in truth: ignored
    assert (s.pairs_predicted, s.pairs_true, s.pairs_correct) == (2, 4, 1)
    assert s.precision == 0.5 and s.recall == 0.25
    assert s.f1 == pytest.approx(1 / 3)
    assert s.predicted_clusters == 4


def test_edge_cases() -> None:
    assert pairwise_scores({}, {}) == Scores(1.0, 1.0, 1.0, 0, 0, 0)
    s = pairwise_scores({"a": "X", "b": "X"}, {"a": "p1", "b": "p2"})  # no true pairs, one wrong pair
    assert (s.precision, s.recall, s.f1) == (0.0, 1.0, 0.0)
    assert s.as_dict()["pairs_predicted"] == 1


def test_truth_file_round_trip(tmp_path) -> None:
    path = tmp_path / "truth.tsv"
    events = [
        {"userId": "u1", "anonymousId": "a1", "_truth": {"person": "p1", "channel": "online", "shared": []}},
        {"userId": "u1", "_truth": {"person": "p1", "channel": "online", "shared": []}},
        {
            "traits": {"email": " X@Y.example "},
            "_truth": {"person": "p2", "channel": "offline", "shared": []},
        },
    ]
    assert write_truth(events, path) == 3
    assert read_truth(path) == {"user_id:u1": "p1", "anonymous_id:a1": "p1", "email:x@y.example": "p2"}


def test_scales_linearly() -> None:
    n = 300_000
    truth = {f"id{i}": f"p{i // 5}" for i in range(n)}
    predicted = {f"id{i}": f"c{i // 10}" for i in range(n)}  # every predicted cluster = 2 people
    started = time.perf_counter()
    s = pairwise_scores(predicted, truth)
    assert time.perf_counter() - started < 3
    assert s.pairs_true == (n // 5) * 10 and s.pairs_predicted == (n // 10) * 45
    assert s.pairs_correct == s.pairs_true and s.precision == pytest.approx(20 / 45)


def _brute_force(predicted: dict[str, str], truth: dict[str, str]) -> tuple[int, int, int]:
    pred_pairs = true_pairs = correct = 0
    for x, y in itertools.combinations(sorted(truth), 2):
        same_true = truth[x] == truth[y]
        px, py = predicted.get(x), predicted.get(y)
        same_pred = px is not None and px == py
        true_pairs += same_true
        pred_pairs += same_pred
        correct += same_true and same_pred
    return pred_pairs, true_pairs, correct


keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    truth=st.dictionaries(keys, st.sampled_from(["p1", "p2", "p3", "p4"]), max_size=25),
    predicted=st.dictionaries(keys, st.sampled_from(["X", "Y", "Z"]), max_size=30),
)
def test_matches_brute_force(truth: dict[str, str], predicted: dict[str, str]) -> None:
    s = pairwise_scores(predicted, truth)
    pred_pairs, true_pairs, correct = _brute_force(predicted, truth)
    assert (s.pairs_predicted, s.pairs_true, s.pairs_correct) == (pred_pairs, true_pairs, correct)
    assert s.precision == (correct / pred_pairs if pred_pairs else 1.0)
    assert s.recall == (correct / true_pairs if true_pairs else 1.0)
    assert 0.0 <= s.f1 <= 1.0
    assert s.f1 == pytest.approx(
        2 * s.precision * s.recall / (s.precision + s.recall) if s.precision + s.recall else 0.0
    )
    # relabelling predicted profiles never changes the scores
    renamed = {k: f"other-{v}" for k, v in predicted.items()}
    assert pairwise_scores(renamed, truth) == s
