"""Slurm exports as sites make them (issue: real sacct exports vary): no Cluster column
(``--cluster``), no Account column (mapping by user), mapping by account, user,
account+user, partition, QOS or wckey, the GPU model given by a partition or QOS, with and
without a header, any delimiter; then the same exports through ``suanli centre preview``
and the agent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from hypothesis import given
from hypothesis import strategies as st
from test_agent import ledger_claims
from typer.testing import CliRunner

from adapters.cli import app
from adapters.mapping import AccountMap, JobKeys
from adapters.rates import RateBook
from adapters.slurm import XDMOD_COLUMNS, guess_delimiter, parse_sacct
from ledger.errors import InvalidInput

runner = CliRunner()
FIXTURES = (grpc_env, grpc_env_factory)

# What a single-cluster site exports: no Cluster, no Account; User, Partition, QOS, WCKey.
SITE_COLUMNS = ("JobID", "User", "Partition", "QOS", "WCKey", "Start", "End", "Elapsed",
                "State", "AllocTRES")  # fmt: skip
SITE_ROWS = [
    # a CPU job of ann in the cpu partition
    ("501", "ann", "cpu", "normal", "", "2023-03-01T08:00:00", "2023-03-01T09:00:00",
     "01:00:00", "COMPLETED", "billing=8,cpu=8,node=1"),
    # bob's job on 4 A100 cards that AllocTRES does not name: the partition does
    ("502", "bob", "gpu-a100", "normal", "", "2023-03-01T08:00:00", "2023-03-01T10:00:00",
     "02:00:00", "COMPLETED", "cpu=16,gres/gpu=4,node=1"),
    # carol's job in a QOS that names the model, charged to a wckey
    ("503", "carol", "gpu", "h800", "proj-x", "2023-03-02T08:00:00", "2023-03-02T08:30:00",
     "00:30:00", "COMPLETED", "cpu=8,gres/gpu=2,node=1"),
    # dan: nothing maps him
    ("504", "dan", "cpu", "normal", "", "2023-03-02T08:00:00", "2023-03-02T08:10:00",
     "00:10:00", "COMPLETED", "cpu=1,node=1"),
]  # fmt: skip
SITE_MAPPING = {
    "users": {"ann": "V-ann", "bob": "V-bob"},
    "wckeys": {"proj-x": "V-proj"},
    "gpu_by_partition": {"gpu-a100": "gpu:a100"},
    "gpu_by_qos": {"h800": "gpu:h800"},
}


def site_export(delimiter: str = "|", header: bool = True) -> list[str]:
    lines = [delimiter.join(SITE_COLUMNS)] if header else []
    return [*lines, *(delimiter.join(r) for r in SITE_ROWS)]


@pytest.mark.parametrize("delimiter", ["|", "\t", ";", "||", "#"])  # AllocTRES holds commas
def test_a_single_cluster_site_export(delimiter: str) -> None:
    result = parse_sacct(
        site_export(delimiter),
        centre="nscc-cd",
        delimiter=delimiter,
        cluster="tianfu",
        accounts=AccountMap.from_dict(SITE_MAPPING),
    )
    got = {r.record_id: (r.resource, r.quantity) for r in result.records}
    assert got == {
        "tianfu/501": ("cpu", 8 * 3600),
        "tianfu/502": ("cpu", 16 * 7200),
        "tianfu/502:gpu": ("gpu:a100", 4 * 7200),  # the partition's model
        "tianfu/503": ("cpu", 8 * 1800),
        "tianfu/503:gpu": ("gpu:h800", 2 * 1800),  # the QOS's model
    }
    [unmapped] = result.skipped
    assert (unmapped.line_no, unmapped.code) == (5, "unmapped")
    assert unmapped.reason == "user dan, partition cpu, qos normal has no voucher mapping"
    mapping = AccountMap.from_dict(SITE_MAPPING)
    vouchers = {r.record_id: mapping.voucher_of(result.keys_of(r)) for r in result.records}
    assert vouchers["tianfu/501"] == "V-ann" and vouchers["tianfu/502:gpu"] == "V-bob"
    assert vouchers["tianfu/503:gpu"] == "V-proj"  # by wckey


def test_without_a_cluster_column_cluster_is_required() -> None:
    with pytest.raises(InvalidInput, match=r"lacks cluster \(or give --cluster NAME\)"):
        parse_sacct(site_export(), centre="nscc-cd")
    with pytest.raises(InvalidInput, match="cluster 'a b'"):
        parse_sacct(site_export(), centre="nscc-cd", cluster="a b")


def test_cluster_option_fills_rows_without_one_only() -> None:
    """With a Cluster column, rows that name theirs keep it; empty ones take --cluster."""
    header = "JobID|Cluster|Account|Start|End|State|NCPUS"
    rows = ["7|tianhe|acme|2023-03-01T08:00:00|2023-03-01T09:00:00|COMPLETED|2",
            "8||acme|2023-03-01T08:00:00|2023-03-01T09:00:00|COMPLETED|2"]  # fmt: skip
    result = parse_sacct([header, *rows], centre="nscc-cd", cluster="tianfu")
    assert [r.record_id for r in result.records] == ["tianhe/7", "tianfu/8"]
    bare = parse_sacct([header, *rows], centre="nscc-cd")
    assert [s.reason for s in bare.skipped] == [
        "no Cluster (it is part of the record id; see --cluster)"
    ]


def test_headerless_export_in_xdmod_order_with_other_delimiters() -> None:
    values = dict.fromkeys(XDMOD_COLUMNS, "")
    values.update(jobid="9", jobidraw="9", cluster="tianfu", partition="gpu-a100",
                  qos="normal", account="acme", user="ann", start="2023-03-01T08:00:00",
                  end="2023-03-01T09:00:00", elapsed="01:00:00", state="COMPLETED",
                  ncpus="4", alloctres="cpu=4,gres/gpu=1")  # fmt: skip
    mapping = AccountMap.from_dict({"accounts": {"acme": "V-1"},
                                    "gpu_by_partition": {"gpu-a100": "gpu:a100"}})  # fmt: skip
    for delimiter in ("|", ";", "\t"):
        line = delimiter.join(values[c] for c in XDMOD_COLUMNS)
        result = parse_sacct([line], centre="nscc-cd", delimiter=delimiter, accounts=mapping)
        assert [(r.record_id, r.resource) for r in result.records] == [
            ("tianfu/9", "cpu"),
            ("tianfu/9:gpu", "gpu:a100"),
        ]


def test_mapping_precedence() -> None:
    """wckey, then account+user, then user, then account, then QOS, then partition."""
    mapping = AccountMap.from_dict(
        {"wckeys": {"w": "V-wckey"}, "account_users": {"acme": {"ann": "V-acme-ann"}},
         "users": {"ann": "V-ann", "bob": "V-bob"}, "accounts": {"acme": "V-acme"},
         "qos": {"high": "V-qos"}, "partitions": {"gpu": "V-partition"}}
    )  # fmt: skip
    full = JobKeys("acme", "ann", "gpu", "high", "w")
    assert mapping.voucher_of(full) == "V-wckey"
    assert mapping.voucher_of(JobKeys("acme", "ann", "gpu", "high")) == "V-acme-ann"
    assert mapping.voucher_of(JobKeys("other", "ann", "gpu", "high")) == "V-ann"
    assert mapping.voucher_of(JobKeys("acme", "carol", "gpu", "high")) == "V-acme"
    assert mapping.voucher_of(JobKeys("other", "carol", "gpu", "high")) == "V-qos"
    assert mapping.voucher_of(JobKeys("other", "carol", "gpu", "low")) == "V-partition"
    assert mapping.voucher_of(JobKeys("other", "carol", "cpu", "low")) is None


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"users": {"ann": 3}}, "users 'ann' must map to a voucher id"),
        ({"account_users": {"acme": "V-1"}}, "'account_users.acme' must be a table"),
        ({"accounts": {}, "gpu_by_partition": {"p": "cpu"}}, "must be one of gpu"),
        ({"qos": []}, "'qos' must be a table"),
    ],
)
def test_mapping_tables_refuse_bad_entries(doc: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        AccountMap.from_dict(doc)


@given(
    st.lists(
        st.text(alphabet="abcdefghij0123456789-:T.", min_size=1, max_size=12),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["|", ",", "\t", ";"]),
)
def test_guess_delimiter_finds_the_one_used(fields: list[str], delimiter: str) -> None:
    rows = [delimiter.join(fields) for _ in range(3)]
    guessed = guess_delimiter(rows)
    assert guessed == (delimiter if len(fields) > 1 else None)


def test_preview_and_the_site_export(tmp_path: Path) -> None:
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        '[users]\nann = "V-ann"\nbob = "V-bob"\n[wckeys]\n"proj-x" = "V-proj"\n'
        '[gpu_by_partition]\n"gpu-a100" = "gpu:a100"\n',
        encoding="utf-8",
    )
    with_header = tmp_path / "site-header.log"
    with_header.write_text("\n".join(site_export(";")) + "\n", encoding="utf-8")
    args = ["preview", "--source", f"sacct:{with_header}", "--delimiter", ";",
            "--cluster", "tianfu", "--mapping", str(mapping)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(x["record_id"], x["voucher"], x["resource"]) for x in lines} >= {
        ("tianfu/502:gpu", "V-bob", "gpu:a100"),
        ("tianfu/503:gpu", "V-proj", "gpu"),  # no gpu_by_qos in this mapping
    }
    assert [x["record_id"] for x in lines if x.get("unmapped")] == ["tianfu/504"]
    missing = runner.invoke(app, args[:5])  # no --cluster
    assert missing.exit_code == 1 and "--cluster NAME" in missing.stderr


def test_the_agent_claims_a_site_export(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """Through the real command: --cluster, vouchers by user and wckey, the partition's and
    the QOS's GPU model priced by the rate card's item for that model."""
    ann, bob, proj = (grpc_env.voucher("industry") for _ in range(3))
    mapping = tmp_path / "map.json"
    mapping.write_text(
        json.dumps({**SITE_MAPPING, "users": {"ann": ann, "bob": bob}, "wckeys": {"proj-x": proj}}),
        encoding="utf-8",
    )
    export = tmp_path / "site.log"
    export.write_text("\n".join(site_export("\t")) + "\n", encoding="utf-8")
    result = runner.invoke(
        app,
        ["run", "--source", f"sacct:{export}", "--delimiter", "\\t", "--cluster", "tianfu",
         "--mapping", str(mapping), "--data-dir", str(grpc_env.data_dir),
         "--target", grpc_env.target, "--quiet", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    claimed = ledger_claims(grpc_env)
    assert {rid: (c.voucher, c.body["resource"]) for rid, c in claimed.items()} == {
        "tianfu/501": (ann, "cpu"),
        "tianfu/502": (bob, "cpu"),
        "tianfu/502:gpu": (bob, "gpu:a100"),
        "tianfu/503": (proj, "cpu"),
        "tianfu/503:gpu": (proj, "gpu:h800"),
    }
    card = RateBook.load().card_at("nscc-cd", datetime(2023, 3, 1, 8, tzinfo=UTC))
    assert card is not None
    price = card.prices["gpu:a100"]
    assert claimed["tianfu/502:gpu"].body["cost_fen"] == price.cost(4 * 7200) > 0


PHILLIPS = Path(__file__).parent / "samples" / "slurm" / "sacct_P_xdmod_phillips_excerpt.log"


def test_the_real_phillips_export_reshaped() -> None:
    """The vendored phillips excerpt (real sacct output) with its Cluster and Account
    columns taken out and a header put on: with --cluster it gives the same record ids and
    quantities as the original; mapped by user, with the GPU partition naming its model."""
    original = parse_sacct(PHILLIPS.read_text().splitlines(), centre="nscc-cd")
    drop = {XDMOD_COLUMNS.index("cluster"), XDMOD_COLUMNS.index("account")}
    kept = [c for i, c in enumerate(XDMOD_COLUMNS) if i not in drop]
    rows = [
        "|".join(f for i, f in enumerate(line.split("|")) if i not in drop)
        for line in PHILLIPS.read_text().splitlines()
    ]
    mapping = AccountMap.from_dict(
        {"users": {"noror": "V-noror", "chaff": "V-chaff", "honbu": "V-honbu"},
         "gpu_by_partition": {"focaccia": "gpu:v100"}}
    )  # fmt: skip
    reshaped = parse_sacct(
        ["|".join(kept), *rows], centre="nscc-cd", cluster="phillips", accounts=mapping
    )
    assert [(r.record_id, r.quantity) for r in reshaped.records] == [
        (r.record_id, r.quantity) for r in original.records
    ]
    resources = {r.record_id: r.resource for r in reshaped.records}
    assert resources["phillips/163485:gpu"] == "gpu:v100"  # was "gpu" without the partition
    vouchers = {mapping.voucher_of(reshaped.keys_of(r)) for r in reshaped.records}
    assert vouchers == {"V-noror", "V-chaff", "V-honbu"}
