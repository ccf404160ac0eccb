"""The demo round: the notice's round with its windows moved to today, and the applicants."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

NOTICE_TODAY = date(2023, 8, 20)  # where "today" sits in the moved round (2 days into 申报)
CENTRES = ("nscc-cd", "cd-icc")


def _shift_local(text: str, days: int) -> str:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` (``T24:00`` too) moved by ``days`` days."""
    day, sep, clock = text.partition("T")
    moved = date.fromisoformat(day) + timedelta(days=days)
    return f"{moved.isoformat()}{sep}{clock}"


def demo_policy(today: date, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The notice's round with every window moved by whole days so that ``today`` sits
    where 2023-08-20 sat. Rate cards stay as published (they are the centres', not the
    round's); everything else (programmes, rates, caps, pools) is the notice's."""
    from ledger.policy import Policy

    doc: dict[str, Any] = json.loads(
        json.dumps(base if base is not None else Policy.load().to_json())
    )
    days = (today - NOTICE_TODAY).days
    for window in doc["windows"].values():
        for end in ("from", "to"):
            if end in window:
                window[end] = _shift_local(window[end], days)
    for programme in doc["programmes"]:
        usage = programme.get("usage_window")
        if usage:
            for end in ("from", "to"):
                if end in usage:
                    usage[end] = _shift_local(usage[end], days)
    if "issued" in doc:
        doc["issued"] = _shift_local(doc["issued"], days)
    doc["title"] = f"{doc['title']}（演示：各时间窗口平移 {days} 天）"
    doc.setdefault("notes", []).append(
        f"Demo version (suanli demo): every window of the notice moved by {days} days so "
        f"that {today.isoformat()} sits where 2023-08-20 sat; figures unchanged."
    )
    return doc


@dataclass(frozen=True)
class Applicant:
    name: str
    type: str
    district: str
    programme: str
    inputs: dict[str, Any]
    face_fen: int | None  # None: its district rejects the application
    accounts: dict[str, str]  # centre -> the account (Slurm account, tenant) it uses there
    about: str


def cast(project_start: date, project_end: date) -> list[Applicant]:
    dates = {"project_start": project_start.isoformat(), "project_end": project_end.isoformat()}
    return [
        Applicant(
            "成都星河智算科技有限公司", "enterprise", "成都高新区", "industry",
            {"compute_cost_fen": 12_000_000_00, "level": "national",
             "project_type": "ai_industrialisation", **dates},
            20_000_000, {"nscc-cd": "xinghe", "cd-icc": "xinghe-ai"},
            "(四) 国家级人工智能重大产业化项目",
        ),
        Applicant(
            "天府大模型研究院", "research_institute", "天府新区成都直管区", "ai-model",
            {"compute_cost_fen": 15_000_000_00, "parameters": 130_000_000_000, "scenarios": 6,
             **dates},
            50_000_000, {"nscc-cd": "tianfu", "cd-icc": "tianfu-llm"},
            "(六) 1300 亿参数大模型",
        ),
        Applicant(
            "蜀道超算应用有限公司", "enterprise", "武侯区", "national-strategy",
            {"compute_cost_fen": 5_000_000_00, "host_type": "national_key_lab", **dates},
            200_000, {"nscc-cd": "shudao"},
            "(三) 国家重点实验室承接项目; a 2 000 元 voucher, spent fast",
        ),
        Applicant(
            "锦城数据有限公司", "enterprise", "成华区", "industry",
            {"compute_cost_fen": 3_000_000_00, "level": "provincial",
             "project_type": "bottleneck", **dates},
            None, {},
            "(四) 省级项目; its 区县 finds the materials do not match",
        ),
    ]  # fmt: skip
