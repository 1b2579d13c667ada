"""`cdp import` end to end: till receipts (CSV), CRM contacts (CSV) and Segment events (JSON Lines) go through
the CLI as a subprocess, the same validation and the same Kafka path as the collector, into cdp.events on the
offline channel; bad rows end up in the reject file with their line numbers and reasons.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from tests.e2e.fixtures import cdp_import, in_list, wait_rows
from tests.support.service import CdpProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cdp(shared_cdp: CdpProcess) -> CdpProcess:
    return shared_cdp


def rejects_of(path: Path) -> dict[int, dict]:
    return {r["line"]: r for r in map(orjson.loads, path.read_bytes().splitlines())}


def test_import_till_receipts(cdp: CdpProcess, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    digits = f"{int(run, 16) % 10_000:04d}"
    lines = [
        "receipt_id,timestamp,store_id,email,phone,loyalty_id,total,currency,items,note",
        f'R-{run}-1,2024-05-01T10:15:00Z,S01, Alice.Smith+{run}@Example.COM ,,L-{run}-1,"12,50",GBP,'
        '"[{""sku"":""A1"",""qty"":2}]",',
        f"R-{run}-2,2024-05-01 11:00:00,S01,,+44 20 7946 {digits},,7.99,GBP,milk,",
        f'R-{run}-3,2024-05-02T09:00:00+01:00,S02,,(020) 7946-0959,L-{run}-3,100,GBP,,"gift',
        'wrap please"',  # a quoted field over two lines: later line numbers stay physical
        f"R-{run}-4,2024-05-02T09:30:00Z,S02,,,,5.00,GBP,,",  # line 6: no identifier at all
        f"R-{run}-5,2024-05-02T09:45:00Z,S02,bob-{run}@example.com,,,abc,GBP,,",  # line 7: total not a number
        ",2024-05-02T10:00:00Z,S02,carol@example.com,,,1,GBP,,",  # line 8: no receipt_id
        f"R-{run}-7,01/05/2024 10:00,S03,dave-{run}@example.com,,,3,GBP,,",  # line 9: not ISO-8601
        f"R-{run}-8,2024-05-03T08:00:00Z,S03,EVE-{run}@EXAMPLE.COM,0044 20 7946 0960,,0.5,EUR,,",
        f"R-{run}-9,2024-05-03T09:00:00Z,S03,,06 12 34 56 78,,2,EUR,,",  # line 11: a French mobile, not a GB number
    ]
    file = tmp_path / "receipts.csv"
    file.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    proc = cdp_import(cdp, file, cdp.write_keys["offline"], "--phone-region", "GB")  # the tills are in the UK
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imported 4 events" in proc.stdout and "5 rejected" in proc.stdout, proc.stdout

    rejects = rejects_of(Path(f"{file}.rejects.jsonl"))
    assert sorted(rejects) == [6, 7, 8, 9, 11]
    assert "not a phone number in region GB" in rejects[11]["reason"]
    assert "at least one is required" in rejects[6]["reason"]
    assert rejects[7]["reason"].startswith("total:")
    assert rejects[8]["reason"].startswith("receipt_id:")
    assert rejects[9]["reason"].startswith("timestamp:")
    assert rejects[7]["row"]["receipt_id"] == f"R-{run}-5"  # the original row, for fixing and re-importing

    good = [f"receipt-R-{run}-{i}" for i in (1, 2, 3, 8)]
    rows = wait_rows(
        cdp,
        good,
        "message_id, type, event, channel, toString(timestamp), "
        "JSONExtractFloat(properties, 'revenue'), JSONExtractString(context, 'traits', 'email')",
    )
    assert {r[1:4] == ["track", "Order Completed", "offline"] for r in rows.values()} == {True}
    assert rows[good[0]][4:6] == ["2024-05-01 10:15:00.000", 12.5]
    assert rows[good[1]][4] == "2024-05-01 11:00:00.000"  # naive = UTC
    assert rows[good[2]][4] == "2024-05-02 08:00:00.000"  # offset applied
    items = cdp.scalar(f"SELECT JSONExtractRaw(properties, 'items') FROM cdp.events WHERE message_id = '{good[0]}'")
    assert orjson.loads(items) == [{"sku": "A1", "qty": 2}]
    note = cdp.scalar(f"SELECT JSONExtractString(properties, 'note') FROM cdp.events WHERE message_id = '{good[2]}'")
    assert note == "gift\r\nwrap please"
    # The identifiers reach the identity graph normalised (trimmed, lower-cased e-mail; E.164 phone).
    cdp.wait_for(
        f"SELECT count() FROM cdp.identities WHERE id_type = 'email' AND id_value IN "
        f"({in_list([f'alice.smith+{run}@example.com', f'eve-{run}@example.com'])})",
        2,
        timeout=60,
    )
    cdp.wait_for(
        f"SELECT count() FROM cdp.identities WHERE id_type = 'phone' AND id_value IN ('+44207946{digits}', "
        "'+442079460959')",  # the national (020) 7946-0959, read in the import's region
        2,
        timeout=60,
    )

    # Re-importing the same file (say after a failed run) stores nothing twice.
    again = cdp_import(cdp, file, cdp.write_keys["offline"], "--phone-region", "GB")
    assert again.returncode == 0, again.stdout + again.stderr
    marker = tmp_path / "marker.jsonl"
    marker.write_text(
        orjson.dumps({"type": "track", "event": "Marker", "userId": f"m-{run}", "messageId": f"marker-{run}"}).decode()
        + "\n"
    )
    assert cdp_import(cdp, marker, cdp.write_keys["offline"]).returncode == 0
    wait_rows(cdp, [f"marker-{run}"])
    assert cdp.scalar(f"SELECT count() FROM cdp.events WHERE message_id IN ({in_list(good)})") == 4


def test_import_crm_contacts(cdp: CdpProcess, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [
        "\ufeffcrm_id,customer_id,Email,Phone,first_name,last_name,created_at,updated_at",  # BOM + mixed case header
        f"C-{run}-1,cust-{run},Frank.{run}@Example.com,+1 (415) 555-0100,Frank,Ng,2023-01-01T00:00:00Z,"
        "2024-04-01T00:00:00Z",
        f"C-{run}-2,,grace-{run}@example.com,,Grace,Hopper,2023-02-01,",
        ",,nobody@example.com,,No,Id,2023-02-01,",  # line 4: no crm_id
        f"C-{run}-4,,h-{run}@example.com,,H,,not a date,",  # line 5: bad created_at
        f"C-{run}-5,,,,Only,CrmId,2023-03-01,",  # only the CRM id: still an identifier
    ]
    file = tmp_path / "crm_contacts.csv"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reject_file = tmp_path / "crm.rejects"
    proc = cdp_import(cdp, file, cdp.write_keys["offline"], "--reject-file", str(reject_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imported 3 events" in proc.stdout and "2 rejected" in proc.stdout, proc.stdout
    rejects = rejects_of(reject_file)
    assert sorted(rejects) == [4, 5]
    assert rejects[4]["reason"].startswith("crm_id:")
    assert "timestamp" in rejects[5]["reason"]

    ids = {
        f"crm-C-{run}-1-2024-04-01T00:00:00Z": f"cust-{run}",
        f"crm-C-{run}-2-2023-02-01": "",
        f"crm-C-{run}-5-2023-03-01": "",
    }
    rows = wait_rows(
        cdp,
        list(ids),
        "message_id, type, channel, user_id, JSONExtractString(traits, 'crm_id'), "
        "JSONExtractString(traits, 'first_name'), toString(timestamp)",
    )
    for message_id, user_id in ids.items():
        assert rows[message_id][1:4] == ["identify", "offline", user_id]
        assert rows[message_id][4].startswith(f"C-{run}-")
    first = rows[f"crm-C-{run}-1-2024-04-01T00:00:00Z"]
    assert first[4:] == [f"C-{run}-1", "Frank", "2024-04-01 00:00:00.000"]
    assert rows[f"crm-C-{run}-5-2023-03-01"][4] == f"C-{run}-5"


def test_import_json_lines(cdp: CdpProcess, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [
        orjson.dumps(
            {
                "type": "track",
                "event": "Catalog Viewed",
                "userId": f"u-{run}",
                "messageId": f"j-{run}-1",
                "timestamp": "2024-04-01T10:00:00Z",
                "properties": {"catalog": "spring"},
            }
        ).decode(),
        orjson.dumps(
            {
                "type": "identify",
                "userId": f"u-{run}",
                "traits": {"email": f"j-{run}@example.com"},
                "messageId": f"j-{run}-2",
            }
        ).decode(),
        "",
        '{"type": "track", "event": ',  # line 4: truncated JSON
        "[1, 2]",  # line 5: not an object
        orjson.dumps({"type": "track", "userId": "u", "messageId": f"j-{run}-6"}).decode(),  # line 6: no event
        orjson.dumps(
            {"type": "Track", "event": "Case", "userId": 42, "anonymousId": f"a-{run}", "messageId": f"j-{run}-7"}
        ).decode(),  # normalised: "track", userId "42"
        orjson.dumps({"event": "NoType", "userId": "u", "messageId": f"j-{run}-8"}).decode(),  # line 8: no type
        orjson.dumps({"type": "identify", "traits": {"loyalty_id": f"L-{run}"}, "messageId": f"j-{run}-9"}).decode(),
        orjson.dumps(
            {"type": "track", "event": "No Id", "anonymousId": f"a-{run}", "properties": {"n": run}}
        ).decode(),  # no messageId: one is derived from the content
        orjson.dumps({"type": "track", "event": "x", "userId": "u", "timestamp": "2024-99-01"}).decode(),  # line 11
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = cdp_import(cdp, file, cdp.write_keys["offline"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imported 5 events" in proc.stdout and "5 rejected" in proc.stdout, proc.stdout
    rejects = rejects_of(Path(f"{file}.rejects.jsonl"))
    assert sorted(rejects) == [4, 5, 6, 8, 11]
    assert "JSON" in rejects[4]["reason"] and "object" in rejects[5]["reason"]
    assert rejects[6]["reason"].startswith("event:") and rejects[8]["reason"].startswith("type:")
    assert rejects[11]["reason"].startswith("timestamp:")

    ids = [f"j-{run}-{i}" for i in (1, 2, 7, 9)]
    rows = wait_rows(cdp, ids, "message_id, type, event, channel, user_id")
    assert rows[ids[0]][1:] == ["track", "Catalog Viewed", "offline", f"u-{run}"]
    assert rows[ids[1]][1:] == ["identify", "", "offline", f"u-{run}"]
    assert rows[ids[2]][1:] == ["track", "Case", "offline", "42"]
    assert rows[ids[3]][1:] == ["identify", "", "offline", ""]
    cdp.wait_for(
        f"SELECT count() FROM cdp.events WHERE anonymous_id = 'a-{run}' AND event = 'No Id' "
        "AND startsWith(message_id, 'import-')",
        1,
        timeout=60,
    )


def test_import_with_unknown_write_key_fails_cleanly(cdp: CdpProcess, tmp_path: Path) -> None:
    file = tmp_path / "one.jsonl"
    file.write_text('{"type": "track", "event": "x", "userId": "u"}\n')
    proc = cdp_import(cdp, file, "wk_nope")
    assert proc.returncode != 0
    assert "unknown write key" in proc.stderr
    assert "Traceback" not in proc.stderr
