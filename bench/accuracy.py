"""Identity-resolution accuracy: pairwise precision / recall / F1 against a known ground truth.

``truth`` maps identifier key (``"email:a@example.com"``, ``"user_id:u_1"``...) to the person who really owns
it; ``predicted`` maps identifier key to the profile id the system under test assigned.  Scoring is pairwise:
every unordered pair of identifiers in the truth is either *together* (same cluster) or not.

* precision = correctly-together pairs / pairs the system put together
* recall    = correctly-together pairs / pairs that truly belong together
* F1        = harmonic mean (0.0 when both are 0)

Conventions:

* Only keys present in ``truth`` are evaluated.  Keys the system knows but the truth does not (junk
  placeholders, shared family devices) are ignored as such; a junk-driven merge still costs precision because
  the true identifiers it drags together end up in one predicted cluster.
* A truth key missing from ``predicted`` is a singleton: it is together with nothing.
* precision = 1.0 when the system put no pair together (nothing claimed, nothing wrong); recall = 1.0 when the
  truth has no pair together (nothing to find).

The counts come from cluster sizes and the contingency table (``sum C(n, 2)``), so scoring is linear in the
number of identifiers and works for millions of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from identity.rules import IdentityRules

__all__ = [
    "TYPE_MAP",
    "Scores",
    "evidence_clusters",
    "fold_case",
    "pairwise_scores",
    "predicted_key",
    "read_truth",
    "rules_clusters",
]

# The stitcher's identifier types -> the generator's truth key types (the generator folds advertising ids
# into device_id).
TYPE_MAP = {"advertising_id": "device_id"}


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    pairs_predicted: int
    pairs_true: int
    pairs_correct: int
    identifiers: int = 0  # truth keys evaluated
    true_clusters: int = 0  # people among them
    predicted_clusters: int = 0  # predicted clusters among them (missing keys count as singletons)
    largest_predicted_cluster: int = 0  # in evaluated identifiers: a "blob" profile shows up here

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predicted_key(id_type: str, id_value: str) -> str:
    """The truth's key for one of the stitcher's identifiers."""
    return f"{TYPE_MAP.get(id_type, id_type)}:{id_value}"


def fold_case(clusters: dict[str, str]) -> dict[str, str]:
    """``device_id`` keys lower-cased on both sides of a comparison: the pipeline keys advertising ids (which the
    generator folds into device_id, in the case it made them) lower-cased, since IDFA / GAID are case-insensitive."""
    return {(key.lower() if key.startswith("device_id:") else key): value for key, value in clusters.items()}


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise_scores(predicted: Mapping[str, str], truth: Mapping[str, str]) -> Scores:
    """Pairwise precision, recall and F1 of ``predicted`` clusters against ``truth`` (see module doc)."""
    true_sizes: Counter[str] = Counter()
    pred_sizes: Counter[str] = Counter()
    joint: Counter[tuple[str, str]] = Counter()
    singletons = 0
    for key, person in truth.items():
        true_sizes[person] += 1
        profile = predicted.get(key)
        if profile is None:
            singletons += 1
            continue
        pred_sizes[profile] += 1
        joint[(profile, person)] += 1

    pairs_true = sum(_pairs(n) for n in true_sizes.values())
    pairs_predicted = sum(_pairs(n) for n in pred_sizes.values())
    pairs_correct = sum(_pairs(n) for n in joint.values())
    precision = pairs_correct / pairs_predicted if pairs_predicted else 1.0
    recall = pairs_correct / pairs_true if pairs_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    largest = max(pred_sizes.values(), default=0)
    if singletons and largest == 0:
        largest = 1
    return Scores(
        precision=precision,
        recall=recall,
        f1=f1,
        pairs_predicted=pairs_predicted,
        pairs_true=pairs_true,
        pairs_correct=pairs_correct,
        identifiers=len(truth),
        true_clusters=len(true_sizes),
        predicted_clusters=len(pred_sizes) + singletons,
        largest_predicted_cluster=largest,
    )


def read_truth(path: str | Path) -> dict[str, str]:
    """Load a truth sidecar written by ``bench.generator`` (``key<TAB>person`` per line)."""
    truth: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line:
                key, _, person = line.rpartition("\t")
                truth[key] = person
    return truth


def evidence_clusters(events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The best clustering a deterministic stitcher can reach on generated events: the ceiling.

    Links the true identifiers that occur together in one event (junk placeholders and shared-device ids are
    already left out by ``truth_identifiers``), with union-find.  Its precision against the truth is 1.0 by
    construction; its recall is the highest reachable, below 1.0 because some people leave unlinkable traces
    (cookies of people who never identify, a till receipt with only a phone number...).  Returns identifier
    key -> cluster id (one member key of the cluster).
    """
    from bench.generator import truth_identifiers

    parent: dict[str, str] = {}

    def find(key: str) -> str:
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    for event in events:
        keys = [key for key, _ in truth_identifiers(event)]
        for key in keys:
            parent.setdefault(key, key)
        if len(keys) > 1:
            root = find(keys[0])
            for key in keys[1:]:
                other = find(key)
                if other != root:
                    parent[other] = root
    return {key: find(key) for key in parent}


def rules_clusters(
    events: Iterable[Mapping[str, Any]], rules: IdentityRules | None = None, only: Collection[str] | None = None
) -> dict[str, str]:
    """What a deterministic stitcher with the project's identity rules reaches on these events, in this order.

    The evidence (``evidence_clusters``) links what one event proves about one person and leaves out what the
    generator knows is not a person's; a stitcher cannot know that. It links through every identifier its rules
    accept (a placeholder e-mail missing from the blocklist is an e-mail to it) and refuses
    what a limit forbids, so its best answer differs from the evidence where placeholders or limits decide.
    This is that answer: the pure protocol (``identity.simulate``) with ``rules`` (default: identity/rules.yaml),
    each event's messages delivered until quiet before the next event, so every limit is decided with the whole
    component known, as the stitching protocol decides it for events one after the other. Without a binding limit
    the result is the same for any order; where a limit refuses a link, the order decides which side gets it.

    Returns truth-form key (``predicted_key``, ``fold_case``) -> profile id, for the keys in ``only`` that some
    event carries (default: every identifier the rules extract, shared devices and placeholders included).
    """
    from identity.simulate import GraphSimulator

    sim = GraphSimulator(rules or IdentityRules.load(None))
    for event in events:
        sim.submit(event)
        sim.run()
    clusters = fold_case(
        {predicted_key(*key.split(":", 1)): sim.rules.profile_id(state.label) for key, state in sim.states.items()}
    )
    if only is None:
        return clusters
    return {key: clusters[key] for key in only if key in clusters}
