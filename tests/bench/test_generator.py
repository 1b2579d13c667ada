"""Tests of the synthetic customer generator (bench/generator.py)."""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.accuracy import evidence_clusters, pairwise_scores, read_truth
from bench.generator import (
    CHANNELS,
    CRM_COLUMNS,
    EVENT_TYPES,
    MAX_PEOPLE,
    RECEIPT_COLUMNS,
    GeneratorConfig,
    generate_events,
    generate_offline_csv,
    identifier_keys,
    is_junk_key,
    main,
    normalise_email,
    normalise_phone,
    strip_truth,
    truth_identifiers,
    truth_map,
)

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEST_NET_RE = re.compile(r"^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}$")


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate_events(GeneratorConfig(people=400, seed=11)))


def _ms(ts: str) -> int:
    return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000 + 0.5)


# ------------------------------------------------------------------------------ determinism & streaming


def test_same_seed_same_events() -> None:
    cfg = GeneratorConfig(people=60, seed=5)
    assert list(generate_events(cfg)) == list(generate_events(GeneratorConfig(people=60, seed=5)))


def test_different_seeds_differ() -> None:
    a = list(generate_events(GeneratorConfig(people=60, seed=1)))
    b = list(generate_events(GeneratorConfig(people=60, seed=2)))
    assert a != b
    assert not {e["messageId"] for e in a} & {e["messageId"] for e in b}
    assert set(truth_map(a)) != set(truth_map(b))


def test_slices_concatenate_to_full_stream() -> None:
    cfg = GeneratorConfig(people=41, seed=9)
    parts = [
        generate_events(cfg, range(0, 13)),
        generate_events(cfg, range(13, 30)),
        generate_events(cfg, range(30, 41)),
    ]
    assert [e for part in parts for e in part] == list(generate_events(cfg))


def test_streams_without_building_everything() -> None:
    started = time.perf_counter()
    tracemalloc.start()
    try:
        first = list(itertools.islice(generate_events(GeneratorConfig(people=200_000, seed=3)), 3_000))
        huge = list(itertools.islice(generate_events(GeneratorConfig(people=MAX_PEOPLE, seed=3)), 3_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(first) == len(huge) == 3_000
    assert first == huge[: len(first)]  # a person does not depend on the population size (except household)
    assert time.perf_counter() - started < 5
    assert peak < 30 * 1024 * 1024  # the 6,000 kept events, not millions


def test_events_grouped_by_person_and_time_ordered_within(events: list[dict]) -> None:
    persons = [e["_truth"]["person"] for e in events]
    order = [p for p, _ in itertools.groupby(persons)]
    assert order == sorted(set(persons))  # each person appears in one contiguous block, in index order
    for _, group in itertools.groupby(events, key=lambda e: e["_truth"]["person"]):
        stamps = [e["timestamp"] for e in group]
        assert stamps == sorted(stamps)


# ---------------------------------------------------------------------------------------- content


def test_covers_every_type_channel_and_source(events: list[dict]) -> None:
    assert {e["type"] for e in events} == set(EVENT_TYPES)
    assert {e["_truth"]["channel"] for e in events} == set(CHANNELS)
    assert {e["_truth"]["source"] for e in events} == {"web", "app", "till", "crm"}
    names = {e.get("event") for e in events if e["type"] == "track"}
    assert {"Order Completed", "Product Viewed", "Product Added", "Application Opened"} <= names
    paths = {e["context"]["page"]["path"] for e in events if e["type"] == "page"}
    assert {"/pricing", "/cart"} <= paths
    assert any(p.startswith("/products/") for p in paths)


@pytest.mark.parametrize(("start_ms", "days"), [(1_767_225_600_000, 30), (1_700_000_000_123, 1)])
def test_timestamps_within_window(start_ms: int, days: int) -> None:
    cfg = GeneratorConfig(people=150, seed=4, start_ms=start_ms, days=days)
    for event in generate_events(cfg):
        assert ISO_RE.match(event["timestamp"]), event["timestamp"]
        assert start_ms <= _ms(event["timestamp"]) < start_ms + days * 86_400_000
        if event["type"] == "identify" and "createdAt" in event["traits"]:
            assert start_ms <= _ms(event["traits"]["createdAt"]) < cfg.end_ms


def test_segment_shape(events: list[dict]) -> None:
    message_ids = [e["messageId"] for e in events]
    assert len(set(message_ids)) == len(message_ids)
    for event in events:
        clean, truth = strip_truth(event)
        assert "_truth" not in clean and truth is not None and "_truth" in event
        assert len(json.dumps(clean)) < 32 * 1024
        ctx = event["context"]
        if "ip" in ctx:
            assert TEST_NET_RE.match(ctx["ip"]), ctx["ip"]
        channel = truth["channel"]
        if channel == "online":
            assert event.get("anonymousId") is not None
            assert set(ctx["page"]) == {"path", "url", "title", "referrer"}
            assert ctx["userAgent"]
        elif channel == "mobile":
            assert {"id", "type", "manufacturer", "model"} <= set(ctx["device"])
            assert ctx["os"]["name"] and ctx["app"]["version"]
        else:
            assert "anonymousId" not in event and "userId" not in event
            traits = event.get("traits") or ctx["traits"]
            assert traits.get("email") or traits.get("phone")
        if event["type"] == "alias":
            assert event["previousId"] and event["userId"]
        if event.get("event") == "Order Completed":
            props = event["properties"]
            assert props["order_id"] and props["currency"] and props["products"]
            assert props["revenue"] == pytest.approx(sum(p["price"] * p["quantity"] for p in props["products"]))
        if event.get("event") == "Product Viewed":
            assert event["properties"]["category"]
    receipts = [e for e in events if e["_truth"]["source"] == "till"]
    assert all(e["context"]["traits"]["loyalty_id"] for e in receipts)


def test_anonymous_browsing_precedes_identification() -> None:
    cfg = GeneratorConfig(people=200, seed=8, junk_rate=0.0)
    by_anon: dict[str, list[dict]] = defaultdict(list)
    for event in generate_events(cfg):
        if event["_truth"]["source"] == "web":
            by_anon[event["anonymousId"]].append(event)
    linked = 0
    for trail in by_anon.values():
        with_user = [i for i, e in enumerate(trail) if e.get("userId")]
        if with_user:
            linked += 1
            assert trail[with_user[0]]["type"] in ("identify", "alias")
            assert all(e.get("userId") for e in trail[with_user[0] :])  # stays logged in on that cookie
    assert 0 < linked < len(by_anon)
    assert sum(1 for t in by_anon.values() if not t[0].get("userId")) > len(by_anon) * 0.9


def test_population_shares(events: list[dict]) -> None:
    people = Counter()
    identified, app, offline = set(), set(), set()
    for event in events:
        person = event["_truth"]["person"]
        people[person] += 1
        if event.get("userId") and not is_junk_key(f"user_id:{event['userId']}"):
            identified.add(person)
        if event["_truth"]["source"] == "app" and not event["_truth"]["shared"]:
            app.add(person)
        if event["_truth"]["source"] == "till":
            offline.add(person)
    n = len(people)
    assert n == 400
    assert 0.5 < len(identified) / n < 0.7  # never_identify_share 0.4
    assert 0.2 < len(app) / n < 0.4
    assert 0.17 < len(offline) / n < 0.33


def test_email_and_phone_variants_normalise_to_one_value_per_person(events: list[dict]) -> None:
    phonenumbers = pytest.importorskip("phonenumbers")
    emails: dict[str, set[str]] = defaultdict(set)
    phones: dict[str, set[str]] = defaultdict(set)
    raw_emails = set()
    for event in events:
        for traits in (event.get("traits"), event["context"].get("traits")):
            if not traits:
                continue
            person = event["_truth"]["person"]
            if (raw := traits.get("email")) and not is_junk_key(f"email:{normalise_email(raw)}"):
                raw_emails.add(raw)
                emails[person].add(normalise_email(raw))
            if (raw := traits.get("phone")) and not is_junk_key(f"phone:{normalise_phone(raw)}"):
                region = "DE" if raw.startswith("00") else "US"
                expected = phonenumbers.format_number(
                    phonenumbers.parse(raw, region), phonenumbers.PhoneNumberFormat.E164
                )
                assert normalise_phone(raw) == expected, raw
                phones[person].add(expected)
    assert all(len(v) == 1 for v in emails.values())
    assert all(len(v) == 1 for v in phones.values())
    assert any(r != r.strip() for r in raw_emails) and any(r != r.lower() for r in raw_emails)
    assert len({next(iter(v)) for v in emails.values()}) == len(emails)  # unique across people


# ------------------------------------------------------------------------------------- truth & junk


def test_truth_is_consistent_and_clean(events: list[dict]) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for event in events:
        shared = set(event["_truth"]["shared"])
        for key, person in truth_identifiers(event):
            assert person == event["_truth"]["person"]
            assert not is_junk_key(key) and key not in shared
            owners[key].add(person)
        assert set(dict(truth_identifiers(event))) <= set(identifier_keys(event))
    assert all(len(p) == 1 for p in owners.values())
    types = {key.split(":", 1)[0] for key in owners}
    assert types == {"user_id", "anonymous_id", "device_id", "email", "phone", "loyalty_id", "crm_id"}


@pytest.mark.parametrize("rate", [0.0, 0.02, 0.1])
def test_junk_rate(rate: float) -> None:
    evs = list(generate_events(GeneratorConfig(people=250, seed=21, junk_rate=rate)))
    junk = [e for e in evs if any(is_junk_key(k) for k in identifier_keys(e))]
    assert abs(len(junk) / len(evs) - rate) < max(0.006, rate * 0.2)
    if rate:
        values = {k for e in junk for k in identifier_keys(e) if is_junk_key(k)}
        assert "user_id:[object Object]" in values or rate < 0.05
        assert any(k.startswith("anonymous_id:") for k in values)
        assert all(not is_junk_key(k) for e in evs for k, _ in truth_identifiers(e))


def test_shared_family_devices_belong_to_no_one() -> None:
    evs = list(generate_events(GeneratorConfig(people=40, seed=2, shared_device_share=1.0, junk_rate=0.0)))
    users_by_shared: dict[str, set[str]] = defaultdict(set)
    persons_by_shared: dict[str, set[str]] = defaultdict(set)
    for event in evs:
        for key in event["_truth"]["shared"]:
            persons_by_shared[key].add(event["_truth"]["person"])
            if event.get("userId"):
                users_by_shared[key].add(event["userId"])
    assert persons_by_shared and all(len(p) == 2 for p in persons_by_shared.values())
    assert any(len(u) == 2 for u in users_by_shared.values())  # two people log in on one device
    truth = truth_map(evs)
    assert not set(persons_by_shared) & set(truth)
    # a naive stitcher that links everything in an event merges households; the evidence ceiling does not
    assert pairwise_scores(evidence_clusters(evs), truth).precision == 1.0


def test_evidence_ceiling_and_naive_blob(events: list[dict]) -> None:
    truth = truth_map(events)
    ceiling = pairwise_scores(evidence_clusters(events), truth)
    assert ceiling.precision == 1.0
    assert 0.5 < ceiling.recall < 1.0  # unlinkable cookies of people who never identify
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent[k] != k:
            k = parent[k]
        return k

    for event in events:  # link every identifier in an event, junk included
        keys = identifier_keys(event)
        for k in keys:
            parent.setdefault(k, k)
        for k in keys[1:]:
            a, b = find(keys[0]), find(k)
            if a != b:
                parent[b] = a
    naive = pairwise_scores({k: find(k) for k in parent}, truth)
    assert naive.precision < 0.2 and naive.largest_predicted_cluster > 100


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**63), people=st.integers(0, 8), junk=st.sampled_from([0.0, 0.3]))
def test_property_truth_owners_unique(seed: int, people: int, junk: float) -> None:
    cfg = GeneratorConfig(people=people, seed=seed, junk_rate=junk, shared_device_share=0.5)
    owners: dict[str, str] = {}
    persons = set()
    for event in generate_events(cfg):
        persons.add(event["_truth"]["person"])
        assert cfg.start_ms <= _ms(event["timestamp"]) < cfg.end_ms
        for key, person in truth_identifiers(event):
            assert owners.setdefault(key, person) == person
    assert len(persons) == people


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(people=-1)
    with pytest.raises(ValueError):
        GeneratorConfig(people=1, junk_rate=1.5)
    with pytest.raises(ValueError):
        GeneratorConfig(people=1, cookies_per_person=(3, 2))
    with pytest.raises(ValueError):
        GeneratorConfig(people=1, days=0)
    assert GeneratorConfig(people=1).end_ms == 1_767_225_600_000 + 30 * 86_400_000
    assert datetime.fromtimestamp(1_767_225_600, UTC).isoformat() == "2026-01-01T00:00:00+00:00"


def test_normalisers() -> None:
    assert normalise_email("  John.Doe@Example.COM ") == "john.doe@example.com"
    assert normalise_email("   ") is None
    assert normalise_phone("+49 30 1234567") == "+49301234567"
    assert normalise_phone("0049 30 1234567") == "+49301234567"
    assert normalise_phone("(415) 555-2671") == "+14155552671"
    assert normalise_phone("n/a") is None
    assert normalise_phone("0000000000") is None  # "00" prefix, then country code 0
    assert is_junk_key("user_id:[object Object]") and is_junk_key("anonymous_id:undefined")
    assert is_junk_key("phone:+10000000000") and not is_junk_key("user_id:u_0000000001")


# ---------------------------------------------------------------------------------------- CSV & CLI


def test_offline_csv_matches_events(tmp_path) -> None:
    cfg = GeneratorConfig(people=300, seed=13)
    evs = list(generate_events(cfg))
    receipts = tmp_path / "receipts.csv"
    rtruth = tmp_path / "receipts.truth.tsv"
    n = generate_offline_csv(cfg, receipts, "receipts", truth_path=rtruth)
    with open(receipts, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    till = [e for e in evs if e["_truth"]["source"] == "till"]
    assert n == len(rows) == len(till) > 0
    assert tuple(rows[0]) == RECEIPT_COLUMNS
    for row, event in zip(rows, till, strict=True):
        assert row["receipt_id"] == event["properties"]["order_id"]
        assert row["timestamp"] == event["timestamp"]
        assert row["email"] or row["phone"]
        items = json.loads(row["items"])
        assert float(row["total"]) == pytest.approx(sum(i["price"] * i["quantity"] for i in items))
    assert read_truth(rtruth) == truth_map(till)

    crm = tmp_path / "crm.csv"
    n = generate_offline_csv(cfg, crm, "crm")
    with open(crm, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    contacts = [e for e in evs if e["_truth"]["source"] == "crm"]
    assert n == len(rows) == len(contacts) > 0
    assert tuple(rows[0]) == CRM_COLUMNS
    assert [r["crm_id"] for r in rows] == [e["traits"]["crm_id"] for e in contacts]
    with pytest.raises(ValueError):
        generate_offline_csv(cfg, tmp_path / "x.csv", "nope")


def test_cli_jsonl_with_truth_sidecar(tmp_path, capsys) -> None:
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.tsv"
    assert main(["--people", "120", "--seed", "6", "--format", "jsonl", "--out", str(out), "--truth", str(truth)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    expected = list(generate_events(GeneratorConfig(people=120, seed=6)))
    assert len(lines) == len(expected)
    decoded = [json.loads(line) for line in lines]
    assert all("_truth" not in e for e in decoded)
    assert decoded == [strip_truth(e)[0] for e in expected]
    sidecar = truth.read_text(encoding="utf-8").splitlines()
    assert len(sidecar) == len(set(sidecar))  # deduplicated
    assert read_truth(truth) == truth_map(expected)
    assert "events for 120 people" in capsys.readouterr().err


def test_cli_csv(tmp_path) -> None:
    out = tmp_path / "crm.csv"
    assert main(["--people", "80", "--format", "csv", "--kind", "crm", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(CRM_COLUMNS)
