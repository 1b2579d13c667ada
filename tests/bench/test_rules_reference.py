"""bench.accuracy.rules_clusters: what a stitcher with the identity rules reaches, where it parts from the evidence."""

from typing import Any

from bench.accuracy import evidence_clusters, rules_clusters
from bench.generator import GeneratorConfig, generate_events
from bench.stages.identity import sent_order
from identity.rules import IdentityRules


def receipt(person: str, **traits: str) -> dict[str, Any]:
    """A till receipt as the generator writes it (identifiers in context.traits, the truth beside them)."""
    truth = {"person": person, "channel": "offline"}
    return {"type": "track", "event": "Order Completed", "context": {"traits": traits}, "_truth": truth}


def test_a_placeholder_email_the_blocklist_lacks_links_people_under_the_rules_but_not_in_the_evidence() -> None:
    events = [
        receipt("p1", email="test@test.com", phone="+49 30 1234567"),
        receipt("p2", email="test@test.com", phone="+1 415 555 2671"),
    ]
    evidence = evidence_clusters(events)
    assert set(evidence) == {"phone:+49301234567", "phone:+14155552671"}
    assert evidence["phone:+49301234567"] != evidence["phone:+14155552671"]

    # The shipped rules block the placeholder: they reach the evidence.
    shipped_reference = rules_clusters(events, only=evidence)
    assert set(shipped_reference) == set(evidence)
    assert shipped_reference["phone:+49301234567"] != shipped_reference["phone:+14155552671"]
    # Rules without it in the blocklist join the two people through it.
    shipped = IdentityRules.load(None).model_dump()
    values = [v for v in shipped["blocklist"]["values"] if v != "test@test.com"]
    lax = IdentityRules.model_validate({**shipped, "blocklist": {**shipped["blocklist"], "values": values}})
    reference = rules_clusters(events, rules=lax, only=evidence)
    assert set(reference) == set(evidence)  # the placeholder itself is not scored, only what it joined
    assert reference["phone:+49301234567"] == reference["phone:+14155552671"]
    assert "email:test@test.com" in rules_clusters(events, rules=lax)


def test_a_limit_refuses_the_link_the_evidence_makes_and_the_order_decides_which() -> None:
    # One login with six e-mails: the evidence links all six, the rules keep five (email limit 5), the first
    # five in the order given.
    events = [
        {"type": "identify", "userId": "u1", "traits": {"email": f"e{n}@example.com"}, "_truth": {"person": "p1"}}
        for n in range(6)
    ]
    evidence = evidence_clusters(events)
    assert len(set(evidence.values())) == 1

    reference = rules_clusters(events, only=evidence)
    profile = reference["user_id:u1"]
    assert [reference[f"email:e{n}@example.com"] == profile for n in range(6)] == [True] * 5 + [False]
    backwards = rules_clusters(reversed(events), only=evidence)
    assert backwards["email:e0@example.com"] != backwards["user_id:u1"]


def test_sent_order_is_the_posted_events_as_generated_then_the_imported_ones() -> None:
    cfg = GeneratorConfig(people=6, seed=3, offline_share=1.0)
    generated = [event["messageId"] for event in generate_events(cfg)]
    sent = list(sent_order(cfg))
    offline = [event["_truth"]["channel"] == "offline" for event in sent]
    assert sorted(event["messageId"] for event in sent) == sorted(generated)
    assert True in offline and offline == sorted(offline)  # every offline event after every posted one
    position = {message_id: n for n, message_id in enumerate(generated)}
    for is_offline in (False, True):
        order = [position[e["messageId"]] for e, off in zip(sent, offline, strict=True) if off is is_offline]
        assert order == sorted(order)
