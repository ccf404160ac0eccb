"""The round as data: ledger/policies/chengdu-2023-31.json and ``policy.publish``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import World, local, wan

from ledger.canonical import canonical_bytes
from ledger.errors import InvalidInput, LedgerError
from ledger.policy import Policy, book, current_policy, policy_at, publish_body
from ledger.usecases.commands.round import publish_round
from ledger.vouchers import issue_body, voucher_view

POLICY_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "chengdu-2023-31.json"


def raw() -> dict[str, Any]:
    return json.loads(POLICY_FILE.read_text(encoding="utf-8"))


def programme(obj: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(p for p in obj["programmes"] if p["id"] == pid)


def test_packaged_policy_loads_and_its_version_is_the_sha256_of_its_canonical_json() -> None:
    policy = Policy.load()
    assert policy.round == "chengdu-2023-31" and policy.notice == "成经信财〔2023〕31号"
    assert policy.version == hashlib.sha256(canonical_bytes(raw())).hexdigest()
    assert Policy.load(POLICY_FILE).version == policy.version


def test_every_programme_cites_its_section() -> None:
    """二、申报事项 (一)…(七)."""
    policy = Policy.load()
    numbers = ["一", "二", "三", "四", "五", "六", "七"]
    assert [p.number for p in policy.programmes.values()] == numbers
    for number, p in zip(numbers, policy.programmes.values(), strict=True):
        assert p.section == f"二、({number})"
        assert all(c.cite.startswith(p.section) for c in p.conditions)
    kinds = {p.id: p.kind for p in policy.programmes.values()}
    assert kinds == {
        "adaptation": "grant",
        "cloud-upgrade": "grant",
        "national-strategy": "voucher",
        "industry": "voucher",
        "talent": "voucher",
        "ai-model": "voucher",
        "scheduling-platform": "grant",
    }


def test_figures_of_the_notice() -> None:
    """Rates, caps, pools and tiers of 二、(一)…(七), in fen and basis points."""
    p = Policy.load().programmes
    calc = p["adaptation"].calculator
    assert calc is not None
    assert [(t.first, t.last, t.amount_fen) for t in calc.tiers] == [
        (1, 1, wan(100)),
        (2, 3, wan(75)),
        (4, 6, wan(50)),
        (7, 10, wan(25)),
    ]
    assert p["adaptation"].pool is not None and p["adaptation"].pool.amount_fen == wan(500)
    rack = p["cloud-upgrade"].calculator
    assert rack is not None and (rack.per_rack_max_fen, rack.share_of_average_bp) == (100_000, 5000)
    assert p["cloud-upgrade"].entity_cap is not None
    assert p["cloud-upgrade"].entity_cap.amount_fen == wan(200)
    assert p["national-strategy"].rate_bp == 3000
    assert p["national-strategy"].centres == ("nscc-cd",)  # 超算 only
    industry = p["industry"].entity_cap
    assert industry is not None and dict(industry.amounts_fen) == {
        "national": wan(300),
        "provincial": wan(150),
    }
    assert p["industry"].rate_bp == 3000 and p["industry"].centres == ("nscc-cd", "cd-icc")
    assert p["talent"].rate_bp is None and p["talent"].rate_note
    assert p["talent"].entity_cap is not None and p["talent"].entity_cap.amount_fen == wan(200)
    period = p["ai-model"].period_cap
    assert period is not None and (period.kind, period.count, period.amount_fen) == (
        "voucher_year",
        3,
        wan(500),
    )
    assert p["ai-model"].rate_bp == 5000
    invest = p["scheduling-platform"].calculator
    assert invest is not None and invest.rate_bp == 3000
    assert p["scheduling-platform"].entity_cap is not None
    assert p["scheduling-platform"].entity_cap.amount_fen == wan(1000)


def test_windows_are_asia_shanghai() -> None:
    """一、申报时间 and 三、(二): the windows as UTC instants, "24:00" as the end of the day."""
    w = Policy.load().windows
    assert w["applications"].start == local("2023-08-11 00:00")
    assert w["applications"].end == local("2023-08-28 00:00")
    assert w["online_submission"].start == local("2023-08-18 00:00")
    assert w["online_submission"].end == local("2023-08-28 00:00")
    assert w["district_review"].start is None
    assert w["district_review"].end == local("2023-08-31 00:00")
    assert w["project_activity"].start == local("2023-01-10 00:00")
    assert w["project_activity"].end == local("2023-08-01 00:00")
    assert "2023-08-18 00:00 to 2023-08-27 24:00" in w["online_submission"].describe()


def test_materials_follow_the_notice() -> None:
    """Each programme's 3. 申报材料 list; the last item (其他补充材料) is optional."""
    p = Policy.load().programmes
    counts = {pid: len(prog.materials) for pid, prog in p.items()}
    assert counts == {
        "adaptation": 6,
        "cloud-upgrade": 6,
        "national-strategy": 7,
        "industry": 6,
        "talent": 8,
        "ai-model": 9,
        "scheduling-platform": 6,
    }
    for prog in p.values():
        assert [m.required for m in prog.materials][-1] is False
        assert all(m.required for m in prog.materials[:-1])
        assert "统一社会信用代码" in prog.materials[1].text


def test_round_options_beyond_the_notice_are_marked() -> None:
    policy = Policy.load()
    pool = policy.voucher_pools["chengdu-compute-voucher"]
    assert pool.amount_fen == wan(1000) and pool.programmes == ("industry",)
    assert pool.stated_in_notice is False and pool.note
    assert policy.entity_yearly_cap_fen is None
    assert policy.settlement_cadence == "quarterly"
    assert policy.voucher_minimum_fen == 100_000
    assert set(policy.centres) == {"nscc-cd", "cd-icc"}
    assert all(card.development_default for card in policy.rate_cards)
    assert policy.rate_cards[0].prices["cpu"].cost(3600) == 10  # 0.10 元 per core-hour


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda o: programme(o, "industry")["caps"]["entity"]["amounts_fen"].update(
                national="300万"
            ),
            "$.programmes[3].caps.entity.amounts_fen.national",
        ),
        (lambda o: programme(o, "industry").update(rate_bp=30000), "$.programmes[3].rate_bp"),
        (lambda o: programme(o, "ai-model").update(colour="red"), "$.programmes[5]"),
        (
            lambda o: o["windows"]["online_submission"].update(to="2023-08-17T24:00"),
            "$.windows.online_submission",
        ),
        (
            lambda o: o["windows"]["district_review"].update(to="2023-08-30T25:00"),
            "$.windows.district_review",
        ),
        (
            lambda o: programme(o, "national-strategy")["centres"].append("sz-hpc"),
            "$.programmes[2].centres[1]",
        ),
        (
            lambda o: programme(o, "adaptation")["calculator"]["tiers"][2].update(ranks=[5, 6]),
            "$.programmes[0].calculator.tiers[2].ranks",
        ),
        (
            lambda o: programme(o, "cloud-upgrade")["conditions"][2]["check"].update(input="pue"),
            "$.programmes[1].conditions[2].check.input",
        ),
        (
            lambda o: o["rate_cards"][0]["prices"].update(tpu={"price_fen": 1, "per_units": 1}),
            "$.rate_cards[0].prices.tpu",
        ),
        (lambda o: o.update(timezone="UTC"), "$.timezone"),
    ],
)
def test_errors_name_the_json_path(mutate: Any, path: str) -> None:
    obj = raw()
    mutate(obj)
    with pytest.raises(InvalidInput) as caught:
        Policy.from_json(obj)
    assert caught.value.message.startswith(path + ":") or caught.value.message.startswith(
        path + "."
    ), caught.value.message


def test_floats_are_refused_in_a_policy_file(tmp_path: Path) -> None:
    text = POLICY_FILE.read_text(encoding="utf-8").replace(
        '"rate_bp": 3000', '"rate_bp": 3000.0', 1
    )
    (tmp_path / "p.json").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match="float"):
        Policy.load(tmp_path / "p.json")


def test_any_change_is_a_new_version() -> None:
    obj = raw()
    obj["notes"].append("a clarification")
    assert Policy.from_json(obj).version != Policy.load().version


def test_publish_records_versions_and_refuses_a_repeat() -> None:
    world = World()
    first = world.policy
    assert current_policy(world.state).version == first.version
    world.refuse("policy.publish", publish_body(first), world.issuer, reason="POLICY_EXISTS")
    obj = raw()
    obj["notes"].append("v2")
    world.publish(Policy.from_json(obj))
    assert current_policy(world.state).version != first.version
    assert policy_at(world.state, first.version).version == first.version
    body = publish_body(Policy.from_json(obj))
    body["version"] = "0" * 64
    world.refuse("policy.publish", body, world.issuer, reason="POLICY_VERSION_MISMATCH")
    world.refuse("policy.publish", publish_body(raw()), world.service, reason="WRONG_SIGNER")


def test_a_version_published_before_comes_back_only_by_naming_what_it_supersedes() -> None:
    world = World()
    first = world.policy
    obj = raw()
    obj["notes"].append("a bad version")
    bad = Policy.from_json(obj)
    world.publish(bad)
    # supersedes must name the version in force, and a version cannot supersede itself
    for named, reason in ((first.version, "POLICY_SUPERSEDES_MISMATCH"),
                          ("f" * 64, "POLICY_SUPERSEDES_MISMATCH"),
                          (bad.version, "POLICY_EXISTS")):  # fmt: skip
        body = publish_body(first if named != bad.version else bad, supersedes=named)
        world.refuse("policy.publish", body, world.issuer, reason=reason)
    body = publish_body(first)
    body["supersedes"] = "not a digest"
    world.refuse("policy.publish", body, world.issuer, reason="INVALID_ARGUMENT")
    # the earlier content again, recording the version it supersedes
    done = publish_round(world.uow, first, supersedes=bad.version)
    assert done.entry.entry.body["supersedes"] == bad.version
    assert done.entry.result["supersedes"] == bad.version
    assert current_policy(world.state).version == first.version
    assert book(world.state).published_at[first.version] == done.entry.index
    # a new version may name the one it supersedes too
    obj["notes"].append("v3")
    v3 = publish_round(world.uow, Policy.from_json(obj), supersedes=first.version)
    assert current_policy(world.state).version == v3.entry.result["policy_version"]


def test_open_rate_of_talent_is_refused_until_a_version_sets_it() -> None:
    """二、(五): "根据算力使用成本给予…" names no rate; issuing waits for a policy version."""
    world = World()
    app = world.approved("talent")
    with pytest.raises(LedgerError) as caught:
        issue_body(
            world.state,
            application=app,
            voucher="V-T",
            issuer=world.issuer,
            log_index=world.state.size,
        )
    assert caught.value.reason == "POLICY_FIGURE_OPEN"
    # A hand-made body that guesses a rate is refused by the fold with the same reason.
    body = world.voucher_body_unchecked(app, "V-T", "talent", wan(90))
    err = world.refuse("voucher.issue", body, world.issuer, reason="POLICY_FIGURE_OPEN")
    assert err.details == {"programme": "talent", "figure": "rate_bp"}
    assert "二、(五)" not in err.message or "open" in err.message


def test_voucher_for_talent_issues_once_a_version_sets_the_rate() -> None:
    world = World()
    app = world.approved("talent")
    obj = raw()
    programme(obj, "talent").update(rate_bp=3000)
    world.publish(Policy.from_json(obj))
    voucher = world.issue(app)
    view = voucher_view(world.state, voucher)
    assert view["rate_bp"] == 3000
    assert view["policy_version"] == Policy.from_json(obj).version
    assert world.claim(voucher, wan(100))["subsidy_fen"] == wan(30)
