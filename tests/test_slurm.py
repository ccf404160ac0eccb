"""sacct parsing: the vendored XDMoD samples, computed by hand, and each real-world quirk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.mapping import AccountMap
from adapters.slurm import (
    XDMOD_COLUMNS,
    SacctResult,
    gpu_allocation,
    parse_elapsed,
    parse_sacct,
)
from ledger.errors import InvalidInput
from ledger.usage import UsageRecord

SAMPLES = Path(__file__).parent / "samples" / "slurm"
ACCOUNTING = SAMPLES / "sacct_P_xdmod_accounting-logs.log"
PHILLIPS = SAMPLES / "sacct_P_xdmod_phillips_excerpt.log"
GPU_VARIANTS = SAMPLES / "sacct_alloctres_gpu_variants_xdmod.json"

HEADER = "JobID|JobIDRaw|Cluster|Account|Start|End|Elapsed|State|NCPUS|AllocTRES|JobName"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def by_id(records: list[UsageRecord]) -> dict[str, UsageRecord]:
    ids = [r.record_id for r in records]
    assert len(ids) == len(set(ids)), "record ids must be unique"
    return {r.record_id: r for r in records}


def row(
    jobid: str = "1001",
    raw: str | None = None,
    *,
    cluster: str = "tianfu",
    account: str = "acme",
    start: str = "2023-03-01T08:00:00",
    end: str = "2023-03-01T09:00:00",
    elapsed: str = "01:00:00",
    state: str = "COMPLETED",
    ncpus: str = "4",
    tres: str = "billing=4,cpu=4,mem=16G,node=1",
    name: str = "train",
) -> str:
    fields = [jobid, raw or jobid, cluster, account, start, end, elapsed, state, ncpus, tres, name]
    return "|".join(fields)


def parse(*lines: str, tz: tzinfo = UTC, accounts: AccountMap | None = None) -> SacctResult:
    return parse_sacct([HEADER, *lines], centre="nscc-cd", tz=tz, accounts=accounts)


# --- the vendored samples -------------------------------------------------------------


def test_xdmod_accounting_logs_sample() -> None:
    with ACCOUNTING.open(encoding="utf-8") as lines:
        result = parse_sacct(lines, centre="nscc-cd")
    assert result.rows == 4
    records = by_id(result.records)
    assert set(records) == {"ub-hpc/4103947", "ub-hpc/4107166", "ub-hpc/4107219"}

    # line 1: TIMEOUT, Elapsed 3-00:00:00 = 3*86400 = 259200 s; NCPUS 256
    # -> 256 * 259200 = 66_355_200 core-seconds
    r = records["ub-hpc/4103947"]
    assert (r.account, r.resource, r.quantity) == ("anon", "cpu", 66_355_200)
    assert (r.start, r.end) == (utc("2015-06-28T02:55:50"), utc("2015-07-01T02:55:50"))

    # line 2: "CANCELLED by 102216" is claimed for the time it ran.
    # Elapsed 2-22:03:04 = 2*86400 + 22*3600 + 3*60 + 4 = 252_184 s; NCPUS 36
    # -> 36 * 252_184 = 9_078_624
    r = records["ub-hpc/4107166"]
    assert (r.account, r.resource, r.quantity) == ("dspumpkins", "cpu", 9_078_624)

    # line 3: Elapsed 14:00:49 = 14*3600 + 49 = 50_449 s; NCPUS 48 -> 48 * 50_449 = 2_421_552
    r = records["ub-hpc/4107219"]
    assert (r.account, r.quantity) == ("anonacct", 2_421_552)
    assert r.centre == "nscc-cd"

    # line 4: Eligible Unknown, gres/gpu=2, but Elapsed 00:00:00: nothing to claim.
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.job_id, skipped.code) == (4, "5692623", "zero-elapsed")


PHILLIPS_CPU = {
    # record id: NCPUS * Elapsed seconds
    "phillips/163485": 12 * (10 * 86400 + 13 * 3600 + 27 * 60 + 6),  # 12*912426 = 10_949_112
    "phillips/165381": 64 * (5 * 86400 + 26),  # 5-00:00:26 -> 64*432026 = 27_649_664
    "phillips/167758": 8 * 24,  # 192
    "phillips/167841": 8 * 17,  # 136
    "phillips/167879": 8 * 21,  # 168
    "phillips/167887": 8 * 37,  # 296
    "phillips/168064": 8 * 16,  # 128
    "phillips/168090": 8 * 19,  # 152
    "phillips/196735": 8 * 27,  # 216
    "phillips/196785": 8 * 17,  # FAILED, ran 17 s: 136
    "phillips/196831": 8 * 20,  # FAILED, ran 20 s: 160
    "phillips/196835": 12 * 17,  # 204
    "phillips/196844": 8 * 4,  # 32
}


def test_xdmod_phillips_excerpt_sample() -> None:
    with PHILLIPS.open(encoding="utf-8") as lines:
        result = parse_sacct(lines, centre="nscc-cd")
    assert result.rows == 14
    records = by_id(result.records)
    cpu = {rid: r.quantity for rid, r in records.items() if r.resource == "cpu"}
    assert cpu == PHILLIPS_CPU
    assert cpu["phillips/163485"] == 10_949_112
    assert cpu["phillips/165381"] == 27_649_664

    # The only two gres/gpu lines (excerpt lines 1 and 13): AllocTRES gres/gpu=2, untyped.
    gpu = {rid: (r.resource, r.quantity) for rid, r in records.items() if r.resource != "cpu"}
    assert gpu == {
        "phillips/163485:gpu": ("gpu", 2 * 912_426),  # 1_824_852 card-seconds
        "phillips/196835:gpu": ("gpu", 2 * 17),  # 34
    }
    r = records["phillips/163485:gpu"]
    assert (r.start, r.end) == (utc("2016-12-22T07:15:13"), utc("2017-01-01T20:42:19"))
    assert r.account == "chaff"

    # Line 11: job 196817 FAILED with Elapsed 00:00:00.
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.job_id, skipped.code) == (11, "196817", "zero-elapsed")


def test_parsable_trailing_delimiter_gives_the_same_records() -> None:
    plain = PHILLIPS.read_text(encoding="utf-8").splitlines()
    trailing = [line + "|" for line in plain]  # sacct --parsable
    a = parse_sacct(plain, centre="nscc-cd")
    b = parse_sacct(trailing, centre="nscc-cd")
    assert b.records == a.records
    assert [s.line_no for s in b.skipped] == [11]


@pytest.mark.parametrize("delimiter", [";", "\t", "#|#"])
def test_any_delimiter(delimiter: str) -> None:
    lines = [line.replace("|", delimiter) for line in ACCOUNTING.read_text().splitlines()]
    result = parse_sacct(lines, centre="nscc-cd", delimiter=delimiter)
    expected = parse_sacct(ACCOUNTING.read_text().splitlines(), centre="nscc-cd")
    assert result.records == expected.records
    assert len(result.records) == 3


def test_header_by_name_any_case_and_parsable() -> None:
    # A header with sacct's own capitalisation, in a different column order, with the
    # --parsable trailing delimiter on every line.
    header = "Cluster|jobidraw|ACCOUNT|State|Start|End|Elapsed|NCPUS|AllocTRES|JobID|"
    line = (
        "tianfu|2001|acme|COMPLETED|2023-03-01T08:00:00|2023-03-01T08:30:00|30:00|16|cpu=16|2001|"
    )
    result = parse_sacct([header, line], centre="nscc-cd")
    [record] = result.records
    assert record.record_id == "tianfu/2001"
    assert record.quantity == 16 * 1800  # 30:00 = 1800 s -> 28_800
    assert result.rows == 1


def test_streams_from_a_generator_with_crlf_and_bom() -> None:
    def lines() -> Iterator[str]:
        yield "\ufeff" + HEADER + "\r\n"
        yield row("3001") + "\r\n"
        yield "\r\n"
        yield row("3002", elapsed="00:10:00", end="2023-03-01T08:10:00") + "\r\n"

    result = parse_sacct(lines(), centre="nscc-cd")
    assert [r.quantity for r in result.records] == [4 * 3600, 4 * 600]
    assert result.rows == 2


# --- quirks -----------------------------------------------------------------------------


def test_steps_are_skipped_and_the_job_counted_once() -> None:
    result = parse(
        row("4001", tres="cpu=4,gres/gpu=1", ncpus="4"),
        row("4001.batch", ncpus="4"),
        row("4001.extern", ncpus="4"),
        row("4001.0", ncpus="4"),
    )
    records = by_id(result.records)
    assert set(records) == {"tianfu/4001", "tianfu/4001:gpu"}
    assert records["tianfu/4001"].quantity == 4 * 3600
    assert records["tianfu/4001:gpu"].quantity == 1 * 3600
    assert [(s.line_no, s.job_id, s.code) for s in result.skipped] == [
        (3, "4001.batch", "step"),
        (4, "4001.extern", "step"),
        (5, "4001.0", "step"),
    ]


def test_cancelled_by_uid_is_claimed_for_the_time_it_ran() -> None:
    result = parse(row("4101", state="CANCELLED by 102216", elapsed="00:20:00"))
    [record] = result.records
    assert record.quantity == 4 * 1200


@pytest.mark.parametrize("start", ["Unknown", "None", ""])
def test_never_started(start: str) -> None:
    result = parse(row("4201", state="CANCELLED by 0", start=start, elapsed="00:00:00"))
    assert result.records == []
    [skipped] = result.skipped
    assert skipped.code == "never-started"
    assert "never started" in skipped.reason


@pytest.mark.parametrize(
    ("state", "end"),
    [("RUNNING", "Unknown"), ("RUNNING", "None"), ("PENDING", "Unknown"), ("SUSPENDED", "Unknown")],
)
def test_running_jobs_are_not_claimed(state: str, end: str) -> None:
    result = parse(row("4301", state=state, end=end))
    assert result.records == []
    [skipped] = result.skipped
    assert skipped.code == "running"
    assert "still running" in skipped.reason


def test_requeued_earlier_run_skipped_final_run_claimed() -> None:
    # sacct --duplicates lists the earlier run (State REQUEUED) and the final run.
    result = parse(
        row("4401", state="REQUEUED", end="2023-03-01T08:10:00", elapsed="00:10:00"),
        row("4401", start="2023-03-01T09:00:00", end="2023-03-01T10:00:00"),
    )
    [record] = result.records
    assert record.start == utc("2023-03-01T09:00:00")
    assert record.quantity == 4 * 3600
    assert [(s.line_no, s.code) for s in result.skipped] == [(2, "requeued")]


def test_a_job_listed_twice_is_claimed_once() -> None:
    result = parse(row("4501"), row("4501"))
    assert len(result.records) == 1
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.code) == (3, "duplicate")
    assert "line 2" in skipped.reason


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10-13:27:06", 10 * 86400 + 13 * 3600 + 27 * 60 + 6),  # 912_426
        ("1:02:03", 3600 + 2 * 60 + 3),  # 3723
        ("05:06", 5 * 60 + 6),  # 306
        ("00:00:00", 0),
        ("0-00:00:01", 1),
        ("37-14:00:00", 37 * 86400 + 14 * 3600),
    ],
)
def test_parse_elapsed(text: str, seconds: int) -> None:
    assert parse_elapsed(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1:2:3:4", "10-13:27", "00:61:00", "1-25:00:00", "x"])
def test_parse_elapsed_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_elapsed(text)


def test_bad_elapsed_is_reported() -> None:
    result = parse(row("4601", elapsed="1:2:3:4"))
    assert result.records == []
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.code) == (2, "invalid")
    assert "Elapsed" in skipped.reason


def test_elapsed_may_not_exceed_end_minus_start() -> None:
    result = parse(row("4602", elapsed="02:00:00"))  # Start..End is 1 h
    [skipped] = result.skipped
    assert "more than End - Start" in skipped.reason


def test_elapsed_below_wall_time_is_used_for_suspended_jobs() -> None:
    # Suspended for 20 minutes: Elapsed 40:00 in a 1 h Start..End window.
    [record] = parse(row("4603", elapsed="40:00")).records
    assert record.quantity == 4 * 2400


def test_gpu_variants_xdmod_all_pairs() -> None:
    pairs = json.loads(GPU_VARIANTS.read_text(encoding="utf-8"))
    assert len(pairs) == 9
    for tres, expected in pairs:
        found = gpu_allocation(tres)
        count = found[1] if found else 0
        assert count == expected, tres
        if found:
            # p100, volta and tesla are not in the catalogue: GPU of unspecified model.
            assert found[0] == "gpu", tres


@pytest.mark.parametrize(
    ("tres", "expected"),
    [
        ("cpu=32,gres/gpu:a100=4,gres/gpu=4,mem=500G", ("gpu:a100", 4)),  # untyped counted once
        ("gres/gpu=4,gres/gpu:a100=4", ("gpu:a100", 4)),
        ("cpu=8,gres/gpu:A100=2", ("gpu:a100", 2)),  # model lower-cased
        ("gres/gpu:a100=2", ("gpu:a100", 2)),
        ("gres/gpu:h800=8,gres/gpu=8", ("gpu:h800", 8)),
        ("gres/gpu=4,gres/gpu:a100=2", ("gpu", 4)),  # typed covers only part of the cards
        ("gres/gpu:a100=2,gres/gpu:v100=2", ("gpu", 4)),  # two models: summed, unspecified
        ("gres/gpu:a100=2,gres/gpu:v100=2,gres/gpu=4", ("gpu", 4)),
        ("gres/gpu:p100=1", ("gpu", 1)),  # unknown model
        ("cpu=4,gres/gpumem=40G,gres/gpuutil=90", None),  # not GPUs
        ("gres/gpu=0", None),
        ("", None),
    ],
)
def test_gpu_allocation_rules(tres: str, expected: tuple[str, int] | None) -> None:
    assert gpu_allocation(tres) == expected


def test_typed_gpu_job_record() -> None:
    result = parse(row("4701", ncpus="32", tres="cpu=32,gres/gpu:a100=4,gres/gpu=4,mem=500G"))
    records = by_id(result.records)
    assert records["tianfu/4701"].quantity == 32 * 3600  # 115_200 core-seconds
    gpu = records["tianfu/4701:gpu"]
    assert (gpu.resource, gpu.quantity) == ("gpu:a100", 4 * 3600)  # 14_400, not 8 * 3600


def test_bad_tres_value_is_reported() -> None:
    result = parse(row("4702", tres="cpu=4,gres/gpu=two"))
    [skipped] = result.skipped
    assert skipped.code == "invalid"
    assert "gres/gpu" in skipped.reason


def test_cpu_from_alloctres_when_ncpus_is_missing() -> None:
    [record] = parse(row("4801", ncpus="", tres="billing=6,cpu=6,node=1")).records
    assert record.quantity == 6 * 3600


def test_gpu_only_job() -> None:
    result = parse(row("4802", ncpus="0", tres="gres/gpu:910b=8"))
    [record] = result.records
    assert (record.record_id, record.resource, record.quantity) == (
        "tianfu/4802:gpu",
        "gpu:910b",
        8 * 3600,
    )


def test_nothing_allocated() -> None:
    result = parse(row("4803", ncpus="0", tres="mem=1G,node=1"))
    [skipped] = result.skipped
    assert skipped.code == "no-resources"


def test_array_and_heterogeneous_jobs_use_jobidraw() -> None:
    result = parse(
        row("123_4", "127"),  # array task 4 of array job 123 is job 127
        row("123_4.batch", "127.batch"),
        row("200+0", "200"),  # heterogeneous job, two components
        row("200+1", "201", ncpus="2", tres="cpu=2"),
    )
    records = by_id(result.records)
    assert set(records) == {"tianfu/127", "tianfu/200", "tianfu/201"}
    assert records["tianfu/201"].quantity == 2 * 3600
    assert [s.code for s in result.skipped] == ["step"]


def test_zero_elapsed_is_skipped() -> None:
    result = parse(row("4901", end="2023-03-01T08:00:00", elapsed="00:00:00"))
    assert result.records == []
    assert result.skipped[0].reason == "zero elapsed time: nothing to claim"


def test_times_are_read_in_the_given_zone() -> None:
    line = row("5001")
    default = parse(line).records[0]
    assert default.start == utc("2023-03-01T08:00:00")
    shanghai = parse(line, tz=ZoneInfo("Asia/Shanghai")).records[0]
    # 08:00 in Shanghai (UTC+8) is 00:00 UTC.
    assert shanghai.start == utc("2023-03-01T00:00:00")
    assert shanghai.end == utc("2023-03-01T01:00:00")
    assert shanghai.start.tzinfo == UTC


def test_unmapped_accounts_are_skipped_with_reason() -> None:
    accounts = AccountMap.from_dict({"accounts": {"acme": "V-2023-0001"}})
    result = parse(row("5101"), row("5102", account="other"), accounts=accounts)
    assert [r.record_id for r in result.records] == ["tianfu/5101"]
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.code) == (3, "unmapped")
    assert skipped.reason == "account other has no voucher mapping"


def test_job_name_containing_the_delimiter() -> None:
    [record] = parse(row("5201", name="a|b|c")).records
    assert record.record_id == "tianfu/5201"


def test_wrong_number_of_fields_is_reported() -> None:
    result = parse("5301|5301|tianfu|acme", row("5302"))
    assert [r.record_id for r in result.records] == ["tianfu/5302"]
    [skipped] = result.skipped
    assert (skipped.line_no, skipped.job_id, skipped.code) == (2, "5301", "invalid")
    assert "expected 11 fields, got 4" in skipped.reason


def test_bad_times_are_reported() -> None:
    result = parse(
        row("5401", start="2023/03/01 08:00"),
        row("5402", start="2023-03-01T10:00:00", end="2023-03-01T09:00:00"),
    )
    assert result.records == []
    assert ["sacct time" in s.reason for s in result.skipped] == [True, False]
    assert "before Start" in result.skipped[1].reason


def test_repeated_header_is_not_a_row() -> None:
    result = parse(row("5501"), HEADER, row("5502"))
    assert len(result.records) == 2
    assert result.rows == 2
    assert result.skipped == []


def test_header_missing_columns_is_refused() -> None:
    with pytest.raises(InvalidInput, match="cluster"):
        parse_sacct(["JobID|Account|Start|End|State|NCPUS", "1|a|x|y|z|1"], centre="nscc-cd")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_sacct([], centre="Not A Centre")
    with pytest.raises(InvalidInput):
        parse_sacct([], centre="nscc-cd", delimiter="")


def test_headerless_uses_xdmod_order() -> None:
    assert XDMOD_COLUMNS[0:3] == ("jobid", "jobidraw", "cluster")
    assert len(XDMOD_COLUMNS) == 26
    result = parse_sacct([], centre="nscc-cd")
    assert (result.records, result.skipped, result.rows) == ([], [], 0)
