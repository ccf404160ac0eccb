"""`suanli centre preview` (the typer sub-app, driven with CliRunner) and the mapping file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.cli import app
from adapters.mapping import AccountMap, InstanceType
from ledger.errors import InvalidInput

SAMPLES = Path(__file__).parent / "samples"
PHILLIPS = SAMPLES / "slurm" / "sacct_P_xdmod_phillips_excerpt.log"
ACCOUNTING = SAMPLES / "slurm" / "sacct_P_xdmod_accounting-logs.log"
QUICKSTART = SAMPLES / "openmeter" / "openmeter_cloudevent_quickstart.json"

runner = CliRunner()


def lines_of(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"accounts": {"chaff": "V-2023-0002"}}), encoding="utf-8")
    return path


def test_preview_sacct_with_mapping(mapping: Path) -> None:
    result = runner.invoke(
        app, ["preview", "--source", f"sacct:{PHILLIPS}", "--mapping", str(mapping)]
    )
    assert result.exit_code == 0, result.output
    out = lines_of(result.stdout)
    assert len(out) == 15  # 13 jobs that ran, 2 of them with gres/gpu=2
    first = out[0]
    assert first == {
        "centre": "nscc-cd",
        "record_id": "phillips/163485",
        "account": "chaff",
        "voucher": "V-2023-0002",
        "resource": "cpu",
        "quantity": 10_949_112,  # 12 CPUs x 10-13:27:06 (912_426 s)
        "unit": "core-second",
        "start": "2016-12-22T07:15:13.000000Z",
        "end": "2017-01-01T20:42:19.000000Z",
    }
    assert out[1]["record_id"] == "phillips/163485:gpu"
    assert (out[1]["resource"], out[1]["unit"], out[1]["quantity"]) == (
        "gpu",
        "card-second",
        1_824_852,
    )
    # taifl has no voucher: shown, flagged.
    taifl = [line for line in out if line["account"] == "taifl"]
    assert len(taifl) == 10
    assert all(line["voucher"] is None and line["unmapped"] is True for line in taifl)
    assert all("unmapped" not in line for line in out if line["account"] == "chaff")

    summary = result.stderr
    assert "14 rows read, 15 records, 1 skipped" in summary
    assert "skipped 1 zero-elapsed" in summary
    assert "lines 11" in summary
    assert "taifl (10 records)" in summary


def test_preview_without_mapping_has_no_voucher_field() -> None:
    result = runner.invoke(app, ["preview", "--source", f"sacct:{ACCOUNTING}"])
    assert result.exit_code == 0
    out = lines_of(result.stdout)
    assert [line["record_id"] for line in out] == [
        "ub-hpc/4103947",
        "ub-hpc/4107166",
        "ub-hpc/4107219",
    ]
    assert all("voucher" not in line for line in out)
    assert "4 rows read, 3 records, 1 skipped" in result.stderr


def test_preview_reason_counts_and_first_lines(tmp_path: Path) -> None:
    header = "JobID|JobIDRaw|Cluster|Account|Start|End|Elapsed|State|NCPUS|AllocTRES"
    job = "7|7|c|a|2023-03-01T08:00:00|2023-03-01T09:00:00|01:00:00|COMPLETED|1|cpu=1"
    step = "7.{n}|7.{n}|c|a|2023-03-01T08:00:00|2023-03-01T09:00:00|01:00:00|COMPLETED|1|"
    steps = [step.format(n=n) for n in range(7)]
    running = "8|8|c|a|2023-03-01T08:00:00|Unknown|01:00:00|RUNNING|1|cpu=1"
    path = tmp_path / "sacct.txt"
    path.write_text("\n".join([header, job, *steps, running]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["preview", "--source", f"sacct:{path}"])
    assert result.exit_code == 0
    assert len(lines_of(result.stdout)) == 1
    summary = result.stderr
    assert "9 rows read, 1 records, 8 skipped" in summary
    assert "skipped 7 step" in summary
    assert "lines 3, 4, 5, 6, 7, ..." in summary  # steps on lines 3-9, first five shown
    assert "skipped 1 running" in summary
    assert "first skipped lines: 3, 4, 5, 6, 7" in summary


def test_preview_delimiter_and_zone(tmp_path: Path) -> None:
    path = tmp_path / "sacct.tsv"
    path.write_text(ACCOUNTING.read_text(encoding="utf-8").replace("|", "\t"), encoding="utf-8")
    result = runner.invoke(
        app, ["preview", "--source", f"sacct:{path}", "--delimiter", "\\t", "--tz", "Asia/Shanghai"]
    )
    assert result.exit_code == 0, result.output
    first = lines_of(result.stdout)[0]
    # 2015-06-28T02:55:50 in Shanghai (UTC+8) is 2015-06-27T18:55:50Z.
    assert first["start"] == "2015-06-27T18:55:50.000000Z"
    result = runner.invoke(
        app, ["preview", "--source", f"sacct:{path}", "--delimiter", "\t", "--tz", "+08:00"]
    )
    assert lines_of(result.stdout)[0]["start"] == "2015-06-27T18:55:50.000000Z"


def test_preview_stdin() -> None:
    result = runner.invoke(
        app, ["preview", "--source", "sacct:-"], input=ACCOUNTING.read_text(encoding="utf-8")
    )
    assert result.exit_code == 0
    assert len(lines_of(result.stdout)) == 3


def _event(kind: str, event_id: str, **data: Any) -> dict[str, Any]:
    """A CloudEvents usage event of acme at cd-icc, 2023-08-20 02:00 UTC."""
    return {
        "specversion": "1.0",
        "type": kind,
        "id": event_id,
        "source": "cd-icc",
        "subject": "acme",
        "time": "2023-08-20T02:00:00Z",
        "data": data,
    }


def test_preview_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    event = _event("gpu.usage", "e1", resource="gpu:910b", cards=8, duration_seconds=3600)
    events.write_text(json.dumps(event) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["preview", "--source", f"events:{events}"])
    assert result.exit_code == 0, result.output
    [line] = lines_of(result.stdout)
    assert line == {
        "centre": "cd-icc",  # the default centre for events
        "record_id": "cd-icc/e1",
        "account": "acme",
        "resource": "gpu:910b",
        "quantity": 28_800,  # 8 cards x 3600 s
        "unit": "card-second",
        "start": "2023-08-20T01:00:00.000000Z",
        "end": "2023-08-20T02:00:00.000000Z",
    }

    result = runner.invoke(app, ["preview", "--source", f"events:{QUICKSTART}"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "skipped 1 not-usage" in result.stderr


def test_preview_events_instance_types_from_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[accounts]\nacme = "V-7"\n[instance_types."910b.8x"]\nresource = "gpu:910b"\nunits = 8\n',
        encoding="utf-8",
    )
    events = tmp_path / "events.json"
    event = _event("workload", "w1", instance_type="910b.8x", duration_seconds=600)
    events.write_text(json.dumps([event], indent=2), encoding="utf-8")
    result = runner.invoke(
        app, ["preview", "--source", f"events:{events}", "--mapping", str(mapping)]
    )
    assert result.exit_code == 0, result.output
    [line] = lines_of(result.stdout)
    assert (line["voucher"], line["resource"], line["quantity"]) == ("V-7", "gpu:910b", 4800)


def test_preview_csv(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "\ufeffrecord_id,account,resource,quantity,start,end\r\n"
        "j1,acme,cpu,3600,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\r\n"
        "j2,acme,cpu,lots,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z\r\n",
        encoding="utf-8",
    )
    args = ["preview", "--source", f"csv:{path}", "--centre", "cd-icc"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # a bad row: the agent would quarantine it
    [line] = lines_of(result.stdout)
    assert (line["record_id"], line["quantity"]) == ("j1", 3600)
    assert "2 rows read, 1 records, 1 skipped" in result.stderr
    assert "bad line 3 (job j2): quantity 'lots' is not a whole number" in result.stderr
    assert "--skip-bad" in result.stderr
    assert runner.invoke(app, [*args, "--skip-bad"]).exit_code == 0


SACCT_HEADER = "JobID|JobIDRaw|Cluster|Account|Start|End|Elapsed|State|NCPUS|AllocTRES"
GOOD_ROW = "101|101|tianfu|chem|2023-03-01T00:00:00|2023-03-01T01:00:00|01:00:00|COMPLETED|4|cpu=4"


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (
            GOOD_ROW.replace("|4|cpu=4", "|99999999999999999999|"),
            "NCPUS=999999999999... (20 digits) is out of range",
        ),
        (GOOD_ROW.replace("|4|cpu=4", "|200000000|"), "NCPUS 200000000 is out of range"),
        (GOOD_ROW.replace("2023-03-01T01:00:00", "9999-12-31T23:59:59"), "outside the years"),
        (GOOD_ROW.replace("2023-03-01T01:00:00", "9999-12-31"), "not a sacct time"),
        (GOOD_ROW.replace("2023-03-01T00:00:00", "1999-12-31T23:00:00"), "outside the years"),
        (GOOD_ROW.replace("|4|cpu=4", "|4|gres/gpu=99999999999"), "out of range"),
        (GOOD_ROW.replace("01:00:00|COMPLETED", "1:00|COMPLETED"), None),  # a good row
        (GOOD_ROW.replace("01:00:00|COMPLETED", "x:00|COMPLETED"), "Elapsed 'x:00'"),
        (GOOD_ROW.replace("|4|cpu=4", "|0|cpu"), "TRES item 'cpu'"),
    ],
)
def test_preview_bad_rows_are_named_and_good_rows_kept(
    tmp_path: Path, row: str, fragment: str | None
) -> None:
    """Each bad value of a sacct row: the row is named with its line and reason, the good
    rows beside it are still read, and the exit is 1 (0 with --skip-bad)."""
    other = GOOD_ROW.replace("101|101", "102|102")
    path = tmp_path / "jobs.log"
    path.write_text(f"{SACCT_HEADER}\n{other}\n{row.replace('101', '103')}\n{GOOD_ROW}\n")
    args = ["preview", "--source", f"sacct:{path}"]
    result = runner.invoke(app, args)
    ids = [line["record_id"] for line in lines_of(result.stdout)]
    if fragment is None:
        assert result.exit_code == 0, result.output
        assert ids == ["tianfu/102", "tianfu/103", "tianfu/101"]
        return
    assert result.exit_code == 1, result.output
    assert ids == ["tianfu/102", "tianfu/101"]
    bad = next(line for line in result.stderr.splitlines() if "bad line" in line)
    assert bad.startswith("  bad line 3 (job 103): ") and fragment in bad, bad
    assert "Traceback" not in result.output
    assert runner.invoke(app, [*args, "--skip-bad"]).exit_code == 0


@pytest.mark.parametrize(("delimiter", "named"), [(",", "','"), ("\t", "tab"), (";", "';'")])
def test_preview_says_which_delimiter_a_file_seems_to_use(
    tmp_path: Path, delimiter: str, named: str
) -> None:
    path = tmp_path / "jobs.log"
    rows = [SACCT_HEADER, GOOD_ROW, GOOD_ROW.replace("101|101", "102|102")]
    path.write_text("\n".join(r.replace("|", delimiter) for r in rows) + "\n")
    result = runner.invoke(app, ["preview", "--source", f"sacct:{path}"])
    assert result.exit_code == 1, result.output
    assert "no row of" in result.stderr and f"seems to use {named}" in result.stderr
    given = "\\t" if delimiter == "\t" else delimiter
    again = runner.invoke(app, ["preview", "--source", f"sacct:{path}", "--delimiter", given])
    assert again.exit_code == 0, again.output
    assert len(lines_of(again.stdout)) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["preview"],
        ["preview", "--source", "sacct:a", "--source", "events:b"],
        ["preview", "--source", "csv:x.csv"],  # no default centre for CSV
        ["preview", "--source", "sacct:x", "--tz", "Mars/Olympus"],
        ["preview", "--source", "nope:x"],
        ["preview", "--sacct", "a", "--events", "b"],  # the old spellings, still read
    ],
)
def test_preview_bad_options_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2


def test_preview_unreadable_input_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["preview", "--source", f"sacct:{tmp_path / 'missing.log'}"])
    assert result.exit_code == 1
    assert "cannot read" in result.stderr

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,c\n", encoding="utf-8")
    result = runner.invoke(app, ["preview", "--source", f"csv:{bad_csv}", "--centre", "nscc-cd"])
    assert result.exit_code == 1
    assert "lacks record_id" in result.stderr

    bad_map = tmp_path / "map.json"
    bad_map.write_text('{"accounts": {"a": 1}}', encoding="utf-8")
    result = runner.invoke(
        app, ["preview", "--source", f"sacct:{ACCOUNTING}", "--mapping", str(bad_map)]
    )
    assert result.exit_code == 1
    assert "voucher id" in result.stderr
    assert result.stdout == ""


def test_preview_sacct_survives_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "gbk.log"
    text = ACCOUNTING.read_text(encoding="utf-8").replace("anonjobname", "训练")
    path.write_bytes(text.encode("gbk"))  # a job name in GBK, not UTF-8
    result = runner.invoke(app, ["preview", "--source", f"sacct:{path}"])
    assert result.exit_code == 0
    assert len(lines_of(result.stdout)) == 3


# --- the mapping file ------------------------------------------------------------------------


def test_mapping_json_and_toml(tmp_path: Path) -> None:
    as_json = tmp_path / "m.json"
    as_json.write_text(
        json.dumps(
            {
                "accounts": {"dspumpkins": "V-2023-0001"},
                "instance_types": {"910b.8x": {"resource": "gpu:910b", "units": 8}},
            }
        ),
        encoding="utf-8",
    )
    as_toml = tmp_path / "m.toml"
    as_toml.write_text(
        '[accounts]\ndspumpkins = "V-2023-0001"\n'
        '[instance_types."910b.8x"]\nresource = "gpu:910b"\nunits = 8\n',
        encoding="utf-8",
    )
    for path in (as_json, as_toml):
        accounts = AccountMap.load(path)
        assert accounts.voucher_for("dspumpkins") == "V-2023-0001"
        assert accounts.voucher_for("DSPUMPKINS") is None  # exact match
        assert accounts.voucher_for("anon") is None
        assert accounts.instance_types == {"910b.8x": InstanceType("gpu:910b", 8)}


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "must be an object"),
        ({}, "'accounts' must be a table"),
        ({"accounts": {"a": ""}}, "voucher id"),
        ({"accounts": {}, "vouchers": {}}, "unknown key"),
        ({"accounts": {}, "instance_types": {"x": {"resource": "tpu", "units": 1}}}, "tpu"),
        ({"accounts": {}, "instance_types": {"x": {"resource": "cpu", "units": 0}}}, "units"),
        ({"accounts": {}, "instance_types": {"x": {"resource": "storage", "units": 1}}}, "GiB"),
    ],
)
def test_mapping_refuses_bad_documents(doc: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        AccountMap.from_dict(doc)


def test_mapping_refuses_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        AccountMap.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.toml"
    broken.write_text("[accounts\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid"):
        AccountMap.load(broken)
