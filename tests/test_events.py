"""CloudEvents usage events and usage CSV: the OpenMeter samples and every rejection path."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.events import event_record_id, parse_events, parse_usage_csv
from adapters.mapping import AccountMap, InstanceType
from ledger.errors import InvalidInput

SAMPLES = Path(__file__).parent / "samples" / "openmeter"
QUICKSTART = SAMPLES / "openmeter_cloudevent_quickstart.json"
SEED = SAMPLES / "openmeter_seed_workload_runtime_events.yaml"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def gpu_event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "specversion": "1.0",
        "type": "gpu.usage",
        "id": "evt-0001",
        "source": "//cd-icc/metering",
        "subject": "acme",
        "time": "2023-08-20T10:00:00+08:00",
        "data": {"resource": "gpu:910b", "cards": 8, "duration_seconds": 3600},
    }
    event.update(changes)
    return event


def workload_event(**data: object) -> dict[str, object]:
    # The shape etc/seed/streams/workload-runtime.yaml generates, with fixed values in
    # place of uuid_v4(), now() and random_int().
    return {
        "id": "5c10fade-1c9e-4d6c-8275-c52c36731d3c",
        "specversion": "1.0",
        "type": "workload",
        "source": "demo-org-seeder",
        "subject": "demo-subject-7",
        "time": "2023-05-04T12:00:00Z",
        "data": {
            "duration_seconds": 120,
            "region": "us-east-1",
            "zone": "us-east-1a",
            "instance_type": "t2.large",
            **data,
        },
    }


def jsonl(*events: object) -> list[str]:
    return [json.dumps(e) + "\n" for e in events]


# --- the OpenMeter samples --------------------------------------------------------------


def test_quickstart_request_event_is_not_usage() -> None:
    # The file is one pretty-printed object over 8 lines: read as a whole document.
    with QUICKSTART.open(encoding="utf-8") as lines:
        result = parse_events(lines, centre="cd-icc")
    assert result.records == []
    assert result.rows == 1
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.job_id, skipped.code) == (1, "quickstart-curl-1", "not-usage")
    assert "'request'" in skipped.reason
    assert "duration_seconds" in skipped.reason


def test_openmeter_workload_shape_with_instance_types() -> None:
    seed = SEED.read_text(encoding="utf-8")
    for key in ('"duration_seconds"', '"instance_type"', '"type": $event_type', '"workload"'):
        assert key in seed  # the sample really has this shape
    types = {"t2.large": InstanceType(resource="cpu", units=2)}
    result = parse_events(jsonl(workload_event()), centre="cd-icc", instance_types=types)
    [record] = result.records
    # 2 cores per t2.large x 1 instance x 120 s = 240 core-seconds
    assert (record.resource, record.quantity) == ("cpu", 240)
    assert record.account == "demo-subject-7"
    assert record.record_id == "demo-org-seeder/5c10fade-1c9e-4d6c-8275-c52c36731d3c"
    assert record.end == utc("2023-05-04T12:00:00")
    assert record.start == utc("2023-05-04T11:58:00")  # time - 120 s


def test_workload_with_unknown_instance_type_is_reported() -> None:
    result = parse_events(jsonl(workload_event()), centre="cd-icc")
    [skipped] = result.skipped
    assert skipped.code == "unmapped-instance"
    assert skipped.reason == "instance type t2.large has no resource mapping"


def test_instance_types_come_from_the_mapping_file_by_default() -> None:
    accounts = AccountMap.from_dict(
        {
            "accounts": {"demo-subject-7": "V-1"},
            "instance_types": {"t2.large": {"resource": "cpu", "units": 2}},
        }
    )
    event = workload_event(count=3)
    [record] = parse_events(jsonl(event), centre="cd-icc", accounts=accounts).records
    assert record.quantity == 2 * 3 * 120  # units x instances x seconds = 720


# --- the AI-centre mapping ----------------------------------------------------------------


def test_gpu_usage_event() -> None:
    result = parse_events(jsonl(gpu_event()), centre="cd-icc")
    [record] = result.records
    assert record.centre == "cd-icc"
    assert record.record_id == "//cd-icc/metering/evt-0001"
    assert (record.account, record.resource) == ("acme", "gpu:910b")
    assert record.quantity == 8 * 3600  # 28_800 card-seconds
    assert record.end == utc("2023-08-20T02:00:00")  # 10:00 +08:00
    assert record.start == utc("2023-08-20T01:00:00")


@pytest.mark.parametrize(
    ("model", "resource"), [("910B", "gpu:910b"), ("a800", "gpu:a800"), ("mi300x", "gpu")]
)
def test_gpu_model(model: str, resource: str) -> None:
    data = {"gpu_model": model, "cards": 2, "duration_seconds": 60}
    [record] = parse_events(jsonl(gpu_event(data=data)), centre="cd-icc").records
    assert (record.resource, record.quantity) == (resource, 120)


def with_duration(json_number: str) -> list[str]:
    """A gpu.usage event whose duration_seconds is the given JSON text, verbatim."""
    data = {"resource": "gpu:910b", "cards": 8, "duration_seconds": "@D@"}
    return [json.dumps(gpu_event(data=data)).replace('"@D@"', json_number) + "\n"]


@pytest.mark.parametrize("duration", ["3600", '"3600"', "3600.0", "3.6e3", "3600.000"])
def test_whole_numbers(duration: str) -> None:
    # JSON numbers are decoded as Decimal, never float; integral values are accepted.
    [record] = parse_events(with_duration(duration), centre="cd-icc").records
    assert record.quantity == 8 * 3600  # 28_800


@pytest.mark.parametrize("duration", ["3600.5", "true", "-5", '"1e3"', "1e16", "NaN", "1e999999"])
def test_not_whole_numbers(duration: str) -> None:
    result = parse_events(with_duration(duration), centre="cd-icc")
    assert result.records == []
    [skipped] = result.skipped
    assert skipped.code == "invalid"


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        ({"resource": "gpu:910b", "duration_seconds": True}, "invalid", "whole number"),
        ({"resource": "gpu:910b", "duration_seconds": -5}, "invalid", "whole number"),
        ({"resource": "gpu:910b", "duration_seconds": 0}, "zero-elapsed", "zero duration"),
        ({"resource": "gpu:910b", "cards": 0, "duration_seconds": 9}, "no-resources", "is 0"),
        ({"resource": "gpu:b200", "duration_seconds": 9}, "invalid", "is not one of"),
        ({"resource": "storage", "duration_seconds": 9}, "invalid", "GiB-hour"),
        ({"duration_seconds": 9}, "invalid", "exactly one of"),
        ({"resource": "cpu", "gpu_model": "a100", "duration_seconds": 9}, "invalid", "exactly"),
        ({"resource": "cpu", "cards": 1, "cores": 2, "duration_seconds": 9}, "invalid", "count"),
        ({"resource": "gpu", "duration_seconds": 10**16}, "invalid", "whole number"),
    ],
)
def test_bad_data_is_reported(data: dict[str, object], code: str, fragment: str) -> None:
    result = parse_events(jsonl(gpu_event(data=data)), centre="cd-icc")
    assert result.records == []
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.job_id, skipped.code) == (1, "evt-0001", code)
    assert fragment in skipped.reason


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "'id'"),
        ({"source": None}, "'source'"),
        ({"subject": 7}, "'subject'"),
        ({"time": None}, "'time'"),
        ({"time": "2023-08-20T10:00:00"}, "RFC 3339"),  # no zone
        ({"data": None}, "no JSON object data"),
    ],
)
def test_bad_envelope_is_reported(changes: dict[str, object], fragment: str) -> None:
    result = parse_events(jsonl(gpu_event(**changes)), centre="cd-icc")
    assert result.records == []
    [skipped] = result.skipped
    assert fragment in skipped.reason


def test_jsonl_bad_line_is_reported_and_the_rest_parsed() -> None:
    lines = [
        *jsonl(gpu_event(id="a")),
        "\n",
        '{"specversion": "1.0", "id": \n',
        "[1, 2]\n",
        *jsonl(gpu_event(id="b")),
    ]
    result = parse_events(lines, centre="cd-icc")
    assert [r.record_id for r in result.records] == ["//cd-icc/metering/a", "//cd-icc/metering/b"]
    assert [(s.line_no, s.code) for s in result.skipped] == [(3, "invalid"), (4, "invalid")]
    assert "not a JSON event" in result.skipped[0].reason
    assert "must be a JSON object" in result.skipped[1].reason
    assert result.rows == 4


def test_json_array_batch_with_line_numbers() -> None:
    text = json.dumps([gpu_event(id="a"), gpu_event(id="b", data=None)], indent=2)
    result = parse_events(text.splitlines(keepends=True), centre="cd-icc")
    assert [r.record_id for r in result.records] == ["//cd-icc/metering/a"]
    [skipped] = result.skipped
    # json.dumps(indent=2): "[" on line 1, the first object from line 2 and is 13 lines long
    # (its data object spans 5), so the second starts on line 2 + 13 = 15.
    assert skipped.line_no == 15
    assert text.splitlines()[14].strip() == "{"
    assert skipped.job_id == "b"


def test_empty_array_and_empty_input() -> None:
    assert parse_events(["[ ]\n"], centre="cd-icc").rows == 0
    assert parse_events([], centre="cd-icc").rows == 0


@pytest.mark.parametrize("text", ['[{"a": 1} {"b": 2}]', '[{"a": 1}] x', "nonsense", '[{"a": ]'])
def test_unreadable_json_document_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="line 1"):
        parse_events([text], centre="cd-icc")


def test_redelivered_event_is_claimed_once() -> None:
    result = parse_events(jsonl(gpu_event(), gpu_event()), centre="cd-icc")
    assert len(result.records) == 1
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.code) == (2, "duplicate")


def test_unmapped_subject() -> None:
    accounts = AccountMap.from_dict({"accounts": {"someone-else": "V-9"}})
    result = parse_events(jsonl(gpu_event()), centre="cd-icc", accounts=accounts)
    [skipped] = result.skipped
    assert skipped.reason == "account acme has no voucher mapping"


def test_event_record_id_sanitising() -> None:
    assert event_record_id("demo-org-seeder", "abc-1") == "demo-org-seeder/abc-1"
    assert event_record_id("https://icc.example/m", "a:1") == "https://icc.example/m/a:1"

    raw = "成都智算/evt 1"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert event_record_id("成都智算", "evt 1") == f"____/evt_1@{digest}"
    # Two ids that clean to the same text still differ.
    assert event_record_id("s", "a b") != event_record_id("s", "a?b")
    # Too long: cut to 111 characters + "@" + 16 hex = 128.
    long_id = event_record_id("s", "x" * 200)
    assert len(long_id) == 128
    assert long_id.startswith("s/xxx")
    # A trailing newline is not let through.
    assert event_record_id("s", "a\n").startswith("s/a_@")


# --- CSV -------------------------------------------------------------------------------------

CSV_HEADER = "record_id,account,resource,quantity,start,end\n"


def test_csv_any_column_order_bom_and_extra_columns() -> None:
    lines = [
        "\ufeffStart,End,Quantity,Resource,Account,Record_ID,note\n",
        "2023-08-20T01:00:00Z,2023-08-20T02:00:00Z,28800,gpu:910b,acme,job-42,8 cards x 3600 s\n",
        '2023-08-20T09:00:00+08:00,2023-08-20T10:00:00+08:00,14400,cpu,acme,job-43,"4, cores"\n',
    ]
    result = parse_usage_csv(lines, centre="cd-icc")
    assert result.skipped == []
    assert result.rows == 2
    a, b = result.records
    assert (a.record_id, a.account, a.resource, a.quantity) == ("job-42", "acme", "gpu:910b", 28800)
    assert (a.start, a.end) == (utc("2023-08-20T01:00:00"), utc("2023-08-20T02:00:00"))
    assert (b.record_id, b.resource, b.quantity) == ("job-43", "cpu", 14400)
    assert b.start == utc("2023-08-20T01:00:00")


def test_csv_bad_rows_are_reported_with_line_numbers() -> None:
    lines = [
        CSV_HEADER,
        "ok-1,acme,cpu,100,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 2
        "bad-2,acme,cpu,1.5,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 3
        "bad-3,acme,tpu,100,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 4
        "bad-4,acme,cpu,100,2023-08-20T01:00:00,2023-08-20T02:00:00Z\n",  # 5
        "bad-5,acme,cpu,100,2023-08-20T03:00:00Z,2023-08-20T02:00:00Z\n",  # 6
        "ok-1,acme,gpu,100,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 7
        "bad-7,acme,cpu,100\n",  # 8
        "\n",  # 9: blank, not a row
        "bad-9,acme,cpu,0,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 10
        "bad id,acme,cpu,100,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 11
        "bad-11,,cpu,100,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 12
        "ok-12,acme,cpu,5,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n",  # 13
    ]
    result = parse_usage_csv(lines, centre="cd-icc")
    assert [r.record_id for r in result.records] == ["ok-1", "ok-12"]
    assert result.rows == 11  # 13 lines - header - blank line 9
    got = [(s.line_no, s.job_id, s.code) for s in result.skipped]
    assert got == [
        (3, "bad-2", "invalid"),
        (4, "bad-3", "invalid"),
        (5, "bad-4", "invalid"),
        (6, "bad-5", "invalid"),
        (7, "ok-1", "duplicate"),
        (8, "bad-7", "invalid"),
        (10, "bad-9", "zero-quantity"),
        (11, "bad id", "invalid"),
        (12, "bad-11", "invalid"),
    ]
    reasons = [s.reason for s in result.skipped]
    assert "not a whole number" in reasons[0]
    assert "unknown resource 'tpu'" in reasons[1]
    assert "RFC 3339" in reasons[2]
    assert "before start" in reasons[3]
    assert "already used on line 2" in reasons[4]
    assert "expected 6 fields, got 4" in reasons[5]
    assert "record id" in reasons[7]
    assert "account is empty" in reasons[8]


def test_csv_multiline_quoted_field_reports_its_first_line() -> None:
    lines = [
        "record_id,account,resource,quantity,start,end,note\n",
        'r1,acme,cpu,x,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z,"two\n',
        'lines"\n',
        "r2,acme,cpu,7,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z,\n",
    ]
    result = parse_usage_csv(lines, centre="cd-icc")
    assert [(s.line_no, s.job_id) for s in result.skipped] == [(2, "r1")]
    assert [r.record_id for r in result.records] == ["r2"]


def test_csv_unmapped_account() -> None:
    accounts = AccountMap.from_dict({"accounts": {"acme": "V-1"}})
    lines = [CSV_HEADER, "r,nobody,cpu,1,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\n"]
    [skipped] = parse_usage_csv(lines, centre="cd-icc", accounts=accounts).skipped
    assert (skipped.code, skipped.reason) == ("unmapped", "account nobody has no voucher mapping")


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([], "empty"),
        (["\n", "\n"], "empty"),
        (["record_id,account,resource,quantity,start\n"], "lacks end"),
        (["id,account,resource,qty,start,end\n"], "lacks record_id, quantity"),
        ([CSV_HEADER.strip() + ",end\n"], "repeats end"),
    ],
)
def test_csv_unreadable_header_is_refused(lines: list[str], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_usage_csv(lines, centre="cd-icc")


@pytest.mark.parametrize(
    ("changes", "data", "fragment"),
    [
        ({"time": "9999-12-31T23:59:59Z"}, {}, "outside the years the ledger accepts"),
        ({"time": "1999-12-31T23:59:59Z"}, {}, "outside the years the ledger accepts"),
        ({}, {"duration_seconds": 10**10}, "start 1706-"),  # 317 years before its end
        ({}, {"duration_seconds": 10**15}, "reaches before year 1"),
        ({}, {"cards": 10**15, "duration_seconds": 10**6}, "quantity"),
    ],
)
def test_events_out_of_the_ledgers_bounds_are_bad_rows(
    changes: dict[str, object], data: dict[str, object], fragment: str
) -> None:
    """An event the ledger could not take is a bad row (code invalid, with its reason);
    the good events beside it are read."""
    bad = gpu_event(id="bad", **changes)
    bad["data"] = {**bad["data"], **data}  # type: ignore[dict-item]
    result = parse_events(jsonl(gpu_event(id="a"), bad, gpu_event(id="b")), centre="cd-icc")
    assert [r.record_id.rsplit("/", 1)[1] for r in result.records] == ["a", "b"]
    [skipped] = result.bad
    assert skipped.line_no == 2 and fragment in skipped.reason, skipped


@pytest.mark.parametrize(
    ("quantity", "end", "fragment"),
    [
        ("99999999999999999999", "2023-08-20T02:00:00Z", "20 digits) is out of range"),
        ("9007199254740993", "2023-08-20T02:00:00Z", "quantity 9007199254740993 is out of range"),
        ("3600", "2100-01-01T00:00:00Z", "outside the years"),
    ],
)
def test_csv_rows_out_of_the_ledgers_bounds_are_bad_rows(
    quantity: str, end: str, fragment: str
) -> None:
    lines = [
        "record_id,account,resource,quantity,start,end",
        "j1,acme,cpu,3600,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z",
        f"j2,acme,cpu,{quantity},2023-08-20T01:00:00Z,{end}",
        "j3,acme,cpu,3600,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z",
    ]
    result = parse_usage_csv(lines, centre="cd-icc")
    assert [r.record_id for r in result.records] == ["j1", "j3"]
    [skipped] = result.bad
    assert (skipped.line_no, skipped.job_id) == (3, "j2") and fragment in skipped.reason, skipped
