"""Known e-mails and phones sent through the whole pipeline never reach the DMP side."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e


def test_no_email_or_phone_in_anonymous_profiles(kafka, data_dir, topic_prefix) -> None:
    service = CdpProcess(kafka.bootstrap, data_dir, topic_prefix).start()
    try:
        service.wait_ready()
        run = uuid.uuid4().hex[:6]
        emails = [f"Person.{run}.{i}@Example.com" for i in range(5)]
        phones = ["+49 30 1234567", "(415) 555-2671", "+44 20 7946 0958"]
        e164 = ["+49301234567", "+14155552671", "+442079460958"]
        batch = []
        for i, email in enumerate(emails):
            phone = phones[i % len(phones)]
            ctx = {
                "traits": {"email": email, "phone": phone},
                "device": {"id": f"{run}-dev{i}"},
                "page": {"path": "/checkout"},
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                "consent": {"categoryPreferences": {"Advertising": True}},  # the DMP keeps consenting cookies only
            }
            batch += [
                {
                    "type": "identify",
                    "anonymousId": f"{run}-c{i}",
                    "userId": f"{run}-u{i}",
                    "traits": {"email": email, "phone": phone, "name": "Ann Example"},
                    "context": ctx,
                },
                {
                    "type": "page",
                    "anonymousId": f"{run}-c{i}",
                    "name": "Checkout",
                    "context": ctx,
                    "properties": {"path": "/checkout", "email": email},
                },
                {
                    "type": "track",
                    "event": "Order Completed",
                    "anonymousId": f"{run}-c{i}",
                    "context": ctx,
                    "properties": {"revenue": 10, "phone": phone, "category": "shoes"},
                },
            ]
        r = httpx.post(f"{service.url}/v1/batch", json={"batch": batch}, auth=(service.write_keys["online"], ""))
        assert r.status_code == 200, r.text
        service.wait_for(f"SELECT count() FROM cdp.anonymous_profiles WHERE id_value LIKE '{run}-%'", 10, 60)
        dump = orjson.dumps(service.sql("SELECT * FROM cdp.anonymous_profiles")).decode().lower()
        assert f"{run}-c0" in dump  # the profiles are there ...
        for needle in [e.lower() for e in emails] + [p.lower() for p in phones] + e164 + ["ann example", "127.0.0.1"]:
            assert needle not in dump  # ... and no PII in them
        columns = {
            r[0]
            for r in service.sql(
                "SELECT name FROM system.columns WHERE database = 'cdp' AND table = 'anonymous_profiles_store'"
            )
        }
        assert not columns & {"email", "phone", "name", "ip", "user_id", "traits"}
    finally:
        assert service.stop() == 0
