"""What-if: ``suanli policy simulate`` (ledger.simulate, api.cli.policy).

The bureau's question "what would this round cost", answered with the notice's own cases.
"""

from __future__ import annotations

import json
from pathlib import Path

from domain_helpers import wan
from typer.testing import CliRunner

from api.cli.policy import app
from ledger.policy import Policy
from ledger.simulate import simulate

POLICY_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "chengdu-2023-31.json"

LINES = [
    "# 二、(四): a national project with 1,200 万元 and a provincial one with 400 万元",
    json.dumps({"type": "voucher", "id": "N1", "programme": "industry", "holder": "alpha",
                "inputs": {"level": "national", "project_type": "bottleneck",
                           "compute_cost_fen": wan(1200)}}),
    json.dumps({"type": "claim", "voucher": "N1", "cost_fen": wan(1200)}),
    json.dumps({"type": "claim", "voucher": "P1", "programme": "industry", "holder": "beta",
                "inputs": {"level": "provincial", "project_type": "bottleneck",
                           "compute_cost_fen": wan(400)},
                "cost_fen": wan(400), "centre": "cd-icc"}),
    json.dumps({"type": "claim", "voucher": "N1", "cost_fen": 100}),
    "",
    "# 二、(一) rank 1 and 二、(二) 1,200 racks at 1,500 元",
    json.dumps({"type": "grant", "programme": "adaptation", "holder": "gamma",
                "inputs": {"rank": 1}}),
    json.dumps({"type": "grant", "programme": "cloud-upgrade",
                "inputs": {"racks_total": 1200, "racks_in_use": 1200,
                           "avg_renovation_cost_per_rack_fen": 150_000,
                           "compute_share_bp": 7500, "pue_milli": 1200}}),
    "# 二、(六): 1,500 万元 in year 1 and again in year 2",
    json.dumps({"type": "voucher", "id": "AI", "programme": "ai-model",
                "inputs": {"parameters": 130_000_000_000, "scenarios": 6}}),
    json.dumps({"type": "claim", "voucher": "AI", "cost_fen": wan(1500),
                "usage_start": "2023-03-01T09:00:00+08:00"}),
    json.dumps({"type": "claim", "voucher": "AI", "cost_fen": wan(1500),
                "usage_start": "2024-03-01T09:00:00+08:00", "at": "2024-03-10T10:00:00+08:00"}),
    "# 二、(五): the rate is open",
    json.dumps({"type": "voucher", "id": "T", "programme": "talent",
                "inputs": {"talent_category": "award", "chengdu_contribution_months": 8}}),
    json.dumps({"type": "claim", "voucher": "nope", "cost_fen": 1}),
    "not json",
    json.dumps({"type": "claim", "voucher": "N1", "cost_fen": 1}) [:-1] + ', "colour": "red"}',
]  # fmt: skip


def test_simulate_computes_the_notice_cases() -> None:
    outcomes, summary = simulate(LINES)
    got = {o.line: (o.ok, o.subsidy_fen, o.bound_by, o.reason) for o in outcomes}
    assert got[2] == (True, wan(300), None, None)  # the voucher: face value 300 万
    assert got[3] == (True, wan(300), "voucher", None)  # 二、(四) national: 300 万
    assert got[4] == (True, wan(120), "rate", None)  # 二、(四) provincial: 120 万
    assert got[5] == (False, None, None, "CAP_EXHAUSTED")
    assert got[8] == (True, wan(100), "requested", None)  # 二、(一) rank 1
    assert got[9] == (True, wan(90), "requested", None)  # 二、(二) 1,200 racks × 750 元
    assert got[12] == (True, wan(500), "period", None)  # 二、(六) year 1
    assert got[13] == (True, wan(500), "period", None)  # 二、(六) year 2 starts fresh
    assert got[15][3] == "POLICY_FIGURE_OPEN"  # 二、(五)
    assert got[16][3] == "UNKNOWN_VOUCHER"
    assert got[17][3] == "INVALID_LINE"
    assert got[18][3] == "INVALID_LINE"  # unknown member
    assert summary.claims_fen == wan(300 + 120 + 500 + 500)
    assert summary.grants_fen == wan(190)
    assert summary.refused == 5
    assert summary.by_programme == {
        "industry": wan(420),
        "ai-model": wan(1000),
        "adaptation": wan(100),
        "cloud-upgrade": wan(90),
    }
    assert [o.line for o in outcomes] == [2, 3, 4, 5, 8, 9, 11, 12, 13, 15, 16, 17, 18]


def test_simulate_pools_across_lines() -> None:
    """The yearly 算力券 pool (1000 万元, not in the notice) binds the fourth national project."""
    lines = []
    for n in range(4):
        lines.append(
            {
                "type": "claim",
                "voucher": f"V{n}",
                "programme": "industry",
                "inputs": {"level": "national", "project_type": "bottleneck"},
                "cost_fen": wan(1200),
            }
        )
    outcomes, summary = simulate(lines)
    assert [o.subsidy_fen for o in outcomes] == [wan(300), wan(300), wan(300), wan(100)]
    assert outcomes[-1].bound_by == "voucher_pool"
    assert summary.claims_fen == wan(1000)


def test_simulate_against_another_policy_version() -> None:
    """A what-if for a draft: (五) at 30 %, a pool of 500 万 for (四)."""
    obj = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    next(p for p in obj["programmes"] if p["id"] == "talent")["rate_bp"] = 3000
    obj["voucher_pools"][0]["amount_fen"] = wan(500)
    draft = Policy.from_json(obj)
    lines = [
        {
            "type": "claim",
            "voucher": "T",
            "programme": "talent",
            "inputs": {"talent_category": "award", "chengdu_contribution_months": 8},
            "cost_fen": wan(1000),
        },
        {
            "type": "claim",
            "voucher": "N",
            "programme": "industry",
            "inputs": {"level": "national", "project_type": "bottleneck"},
            "cost_fen": wan(1000),
        },
        {
            "type": "claim",
            "voucher": "M",
            "programme": "industry",
            "inputs": {"level": "national", "project_type": "bottleneck"},
            "cost_fen": wan(1000),
        },
    ]
    outcomes, _ = simulate(lines, draft)
    assert [(o.subsidy_fen, o.bound_by) for o in outcomes] == [
        (wan(200), "voucher"),
        (wan(300), "rate"),
        (wan(200), "voucher_pool"),
    ]


def test_resource_and_quantity_are_priced_by_the_rate_card() -> None:
    lines = [
        {
            "type": "voucher",
            "id": "A",
            "programme": "ai-model",
            "inputs": {"parameters": 130_000_000_000, "scenarios": 6},
        },
        # 8 H800 for 100 h at the development rate card's 15 元 per card-hour = 12,000 元
        {
            "type": "claim",
            "voucher": "A",
            "resource": "gpu:h800",
            "quantity": 8 * 100 * 3600,
            "usage_start": "2023-05-01T09:00:00+08:00",
            "usage_end": "2023-05-05T13:00:00+08:00",
        },
        {
            "type": "claim",
            "voucher": "A",
            "resource": "gpu:h800",
            "quantity": 3600,
            "cost_fen": 1,
            "usage_start": "2023-05-01T09:00:00+08:00",
        },
    ]
    outcomes, _ = simulate(lines)
    assert outcomes[1].result["cost_fen"] == 1_200_000 and outcomes[1].subsidy_fen == 600_000
    assert outcomes[2].reason == "COST_MISMATCH"


def test_cli_simulate(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "line    3  claim    subsidy 300000000 fen (3,000,000.00 元), bound by voucher"
        in result.output
    )
    assert "refused CAP_EXHAUSTED" in result.output
    assert result.output.strip().splitlines()[-1].startswith("total: subsidies 1420000000 fen")
    as_json = runner.invoke(app, ["simulate", "--json", "-"], input="\n".join(LINES))
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert rows[0] == {**rows[0], "line": 2, "ok": True, "subsidy_fen": wan(300)}
    assert rows[-1]["total"]["claims_fen"] == wan(1420)
    draft = tmp_path / "draft.json"
    draft.write_text(
        POLICY_FILE.read_text(encoding="utf-8").replace('"rate_bp": 3000', '"rate_bp": 3000.5', 1)
    )
    bad = runner.invoke(app, ["simulate", "--policy", str(draft), str(path)])
    assert bad.exit_code == 2 and "float" in bad.output


def test_cli_show() -> None:
    result = CliRunner().invoke(app, ["show"])
    assert result.exit_code == 0
    assert Policy.load().version in result.output
    assert "industry" in result.output and "not stated in the notice" in result.output


def test_the_example_in_docs_policy_md_prints_what_it_says() -> None:
    """docs/policy.md shows a run of the notice's cases; it must stay true."""
    text = (Path(__file__).parent.parent / "docs" / "policy.md").read_text(encoding="utf-8")
    lines = text.split("```jsonl\n", 1)[1].split("\n```", 1)[0]
    expected = text.split("prints\n\n```\n", 1)[1].split("\n```", 1)[0]
    result = CliRunner().invoke(app, ["simulate", "-"], input=lines)
    assert result.exit_code == 0
    assert result.output.strip() == expected.strip()


SIDE_BY_SIDE = [
    '{"type": "voucher", "id": "N1", "programme": "industry", "holder": "alpha", "inputs": '
    '{"level": "national", "project_type": "bottleneck", "compute_cost_fen": 1200000000}}',
    '{"type": "claim", "voucher": "N1", "cost_fen": 1200000000}',
    '{"type": "voucher", "id": "L1", "round": "chengdu-2025-example", "programme": '
    '"compute-voucher", "holder": "alpha", "inputs": {"compute_cost_fen": 1000000000}}',
    '{"type": "claim", "voucher": "L1", "cost_fen": 1000000000, "centre": "cd-icc", '
    '"usage_start": "2025-04-01T09:00:00+08:00"}',
    '{"type": "claim", "voucher": "L1", "cost_fen": 100000000, '
    '"usage_start": "2025-05-01T09:00:00+08:00"}',
    '{"type": "claim", "voucher": "N1", "cost_fen": 100, "round": "nope"}',
]
LATER_FILE = POLICY_FILE.parent / "chengdu-2025-example.json"


def test_simulate_runs_rounds_side_by_side_and_reports_per_round_and_pool() -> None:
    """The 2023 round and the later one in one run: a line names its round (a claim on a
    declared voucher is of the voucher's); the later round's 60 % is held to the scheme's
    500 万 a year; the total is split by round and by pool."""
    outcomes, summary = simulate(SIDE_BY_SIDE, [Policy.load(), Policy.load(LATER_FILE)])
    assert [(o.ok, o.subsidy_fen, o.bound_by) for o in outcomes[:4]] == [
        (True, wan(300), None),
        (True, wan(300), "voucher"),
        (True, wan(600), None),  # 60 % of 1,000 万
        (True, wan(500), "scheme_entity"),  # 600 万 wanted; 500 万 a year over the scheme
    ]
    assert (outcomes[4].reason, outcomes[5].reason) == ("CAP_EXHAUSTED", "UNKNOWN_ROUND")
    assert summary.by_round == {"chengdu-2023-31": wan(300), "chengdu-2025-example": wan(500)}
    assert summary.by_programme == {
        "chengdu-2023-31/industry": wan(300),
        "chengdu-2025-example/compute-voucher": wan(500),
    }
    assert summary.pools["scheme_pool/chengdu-suanliquan-scheme/2025"] == {
        "paid_fen": wan(500),
        "limit_fen": 10_000_000_000,
    }
    assert summary.pools["voucher_pool/chengdu-compute-voucher/2023"]["paid_fen"] == wan(300)
    text = summary.text().splitlines()
    assert text[1] == "by round: chengdu-2023-31 300000000 fen, chengdu-2025-example 500000000 fen"
    assert "scheme_pool/chengdu-suanliquan-scheme/2025 500000000 fen of 10000000000" in text[2]


POSTHOC_FILE = POLICY_FILE.parent / "posthoc-example-2025.json"
BOTH_MODELS = [
    *SIDE_BY_SIDE[:4],
    '{"type": "reimbursement", "round": "posthoc-example-2025", "programme": "compute-use", '
    '"holder": "beta", "amount_paid_fen": 100000000, "invoice": "INV-7"}',
    '{"type": "reimbursement", "round": "posthoc-example-2025", "programme": "compute-use", '
    '"holder": "gamma", "amount_paid_fen": 100000000, "invoice": "inv-7"}',
    '{"type": "reimbursement", "round": "posthoc-example-2025", "programme": "compute-use", '
    '"holder": "beta", "amount_paid_fen": 5000000000}',
]


def test_simulate_runs_both_models_side_by_side() -> None:
    """Point-of-sale rounds and a post-hoc one in one season: reimbursements are submitted,
    reviewed, decided for their entitlement (the rate of what was paid, within the entity's
    yearly cap) and paid; one invoice presented twice is refused the second time; the
    summary splits the cost by round, programme and pool."""
    rounds = [Policy.load(), Policy.load(LATER_FILE), Policy.load(POSTHOC_FILE)]
    outcomes, summary = simulate(BOTH_MODELS, rounds)
    posthoc = [(o.ok, o.subsidy_fen, o.bound_by, o.reason) for o in outcomes[4:]]
    assert posthoc == [
        (True, wan(20), "requested", None),  # 20 % of 100 万
        (False, None, None, "DUPLICATE_INVOICE"),  # the same number, any case
        (True, wan(480), "entity_programme", None),  # 500 万 a year, 20 万 already paid
    ]
    assert summary.reimbursed_fen == wan(500)
    assert summary.by_round["posthoc-example-2025"] == wan(500)
    assert summary.by_round["chengdu-2025-example"] == wan(500)
    assert summary.pools["programme_pool/posthoc-example-2025/compute-use/2025"]["paid_fen"] == (
        wan(500)
    )
    assert "reimbursed 500000000 fen" in summary.text().splitlines()[0]


def test_cli_simulate_takes_several_policies(tmp_path: Path) -> None:
    runner = CliRunner()
    both = ["simulate", "--policy", str(POLICY_FILE), "--policy", str(LATER_FILE), "--json", "-"]
    result = runner.invoke(app, both, input="\n".join(SIDE_BY_SIDE))
    assert result.exit_code == 0, result.output
    total = json.loads(result.output.splitlines()[-1])["total"]
    assert total["by_round"]["chengdu-2025-example"] == wan(500)
    twice = ["simulate", "--policy", str(POLICY_FILE), "--policy", str(POLICY_FILE), "-"]
    refused = runner.invoke(app, twice, input="\n".join(SIDE_BY_SIDE))
    assert refused.exit_code == 2 and "two policies of one round" in refused.output


def test_cli_show_names_the_scheme_and_its_caps() -> None:
    later = CliRunner().invoke(app, ["show", "--policy", str(LATER_FILE)])
    assert later.exit_code == 0, later.output
    assert "centres: any_registered" in later.output
    assert (
        "scheme:   chengdu-suanliquan-scheme (compute-voucher count on it): "
        "entity 5,000,000.00 元/year; pool 100,000,000.00 元/year"
    ) in later.output
    first = CliRunner().invoke(app, ["show"])
    assert "(industry count on it): states no cap" in first.output
