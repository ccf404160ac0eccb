"""``suanli demo``: the round end to end, against the service ``make run`` started.

    make run            # in one terminal: the service on :8080 (HTTP) and :50051 (gRPC)
    .venv/bin/suanli demo

What it does, every step through the service's own interfaces (HTTP with tokens for the
people, gRPC with the centres' certificates and keys for the centres):

1. **Tokens.** An admin (the bureau), an auditor, one reviewer per 区县 and one grantee per
   applicant, written to the service's database as ``suanli token create`` does (and
   revoked at the end). They only work if the service uses this data dir's database: the
   demo checks that, and that the centres' signing keys are the ones the log registered.
2. **The demo round.** The service clock is read (a claim signed at 2000-01-01 is refused
   with CLOCK_SKEW, which says how far off it is; a refusal writes nothing). The notice's
   round (``chengdu-2023-31``) is published again as a new policy version with every
   window moved by whole days so that today sits where 2023-08-20 sat: online submission
   open (2 days in), district review open, project activity and usage windows over the
   ~7 months before. Programmes, rates, caps and pools are the notice's. The 2023 windows
   themselves are long past in real time, and a ledger's time never runs backwards, so
   this is the only way the round can be shown on a live ledger (docs/centre.md). If the
   version of the day is already in force, it is reused.
3. **Applications** by four applicants inside the window (POST /v1/apply/...), **district
   review** (one rejected by its 区县), **decisions** (the rejected one refused
   ``DISTRICT_REJECTED``), **vouchers** (POST /v1/admin/applications/{id}/voucher).
4. **Both centres' agents** (``adapters.agent``, as ``suanli center run`` runs them)
   back-fill sample usage through gRPC: a generated sacct export for 国家超算成都中心
   (``nscc-cd``) and CloudEvents usage events for 成都智算中心 (``cd-icc``), priced with
   the ledger's own rate cards. One voucher is small: its cap is reached, and the claims
   after it are refused ``CAP_EXHAUSTED`` naming the cap.
5. **Settlement statements** for the current quarter (POST /v1/statements), **a
   reconciliation** of each centre (``adapters.reconcile``: no difference but the
   explained cap refusals) and ``suanli audit verify`` of the whole log.

Every run uses fresh applicants, vouchers and record ids, so it can be run again; its
files (exports, mappings) stay in ``<data dir>/demo/<run>/``, and the agents keep their
records in the centres' own outboxes (``<data dir>/centres/<id>/outbox.db``, where
``suanli center run`` keeps them), so ``suanli center reconcile`` sees them afterwards.
Without a service at ``--http``, the demo starts ``suanli serve`` on the data dir and
stops it at the end.
Exit status 0 when every step worked, 1 otherwise.

``sample_sacct`` and ``sample_events`` make the metering output (also used by the agent's
tests and benchmarks).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.timeutil import SHANGHAI

# --- sample usage ----------------------------------------------------------------------------

_STATES = (
    ("COMPLETED", 70),
    ("FAILED", 8),
    ("TIMEOUT", 5),
    ("CANCELLED by 0", 6),
    ("OUT_OF_MEMORY", 2),
    ("NODE_FAIL", 1),
)
_PARTITIONS = ("cpu", "gpu", "bigmem", "debug")


def _elapsed(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def _sacct_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def sample_sacct(
    jobs: int,
    *,
    start: datetime,
    end: datetime,
    accounts: Sequence[str],
    cluster: str = "tianhe",
    first_job: int = 100_000,
    seed: int = 2023,
    header: bool = False,
    gpu_share: float = 0.3,
    gpu_models: Sequence[str] = ("a100", ""),
    max_hours: float = 30.0,
    extras: bool = True,
) -> list[str]:
    """``sacct --parsable2`` lines (UTC times) of ``jobs`` finished jobs run between ``start``
    and ``end``, in the column order Open XDMoD exports (``adapters.slurm.XDMOD_COLUMNS``),
    with the quirks of real exports: ``.batch``/``.extern``/numbered step rows, array jobs
    (``123_4``), heterogeneous jobs (``123+1``), ``CANCELLED by <uid>``, multi-day elapsed
    times, typed and untyped GPU TRES. With ``extras``, a few rows that produce no record
    are mixed in (a job still running, one that never started). Deterministic for a seed.
    """
    from adapters.slurm import XDMOD_COLUMNS

    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    span = max(int((end - start).total_seconds()), 3600)
    lines = ["|".join(c.capitalize() for c in XDMOD_COLUMNS)] if header else []
    raw = first_job
    states = [s for s, _ in _STATES]
    weights = [w for _, w in _STATES]
    for n in range(jobs):
        raw += 1
        account = accounts[n % len(accounts)] if n < len(accounts) else rng.choice(accounts)
        duration = rng.randint(60, int(max_hours * 3600))
        begin = start + timedelta(seconds=rng.randint(0, max(span - duration - 60, 1)))
        finish = begin + timedelta(seconds=duration)
        cpus = rng.choice((1, 4, 8, 16, 32, 64, 128))
        gpu = rng.random() < gpu_share
        tres = f"billing={cpus},cpu={cpus},mem={cpus * 4000}M,node=1"
        partition = "gpu" if gpu else rng.choice(_PARTITIONS)
        if gpu:
            cards = rng.choice((1, 2, 4, 8))
            model = rng.choice(gpu_models)
            typed = f"gres/gpu:{model}={cards}," if model else ""
            tres = f"billing={cpus},cpu={cpus},{typed}gres/gpu={cards},mem={cpus * 4000}M,node=1"
        state = rng.choices(states, weights)[0].replace("by 0", f"by {rng.randint(1000, 9999)}")
        job_id = str(raw)
        shape = rng.random()
        if shape < 0.05:
            job_id = f"{raw - rng.randint(1, 50)}_{rng.randint(0, 99)}"  # array task
        elif shape < 0.07:
            job_id = f"{raw}+0"  # heterogeneous job component
        row = [
            job_id, str(raw), cluster, partition, "normal", account, account, "5000",
            f"u{rng.randint(100, 999)}", str(rng.randint(10000, 99999)),
            _sacct_time(begin - timedelta(seconds=30)), _sacct_time(begin - timedelta(seconds=30)),
            _sacct_time(begin), _sacct_time(finish), _elapsed(duration), "0:0", state, "1",
            str(cpus), str(cpus), "4000Mc", f"cpu={cpus},node=1", tres, "2-00:00:00",
            f"cn{rng.randint(1, 512):04d}", f"job-{raw}",
        ]  # fmt: skip
        lines.append("|".join(row))
        if rng.random() < 0.5:
            for step in (".batch", ".extern", ".0"):
                step_row = list(row)
                step_row[0], step_row[1] = f"{job_id}{step}", f"{raw}{step}"
                step_row[5] = step_row[6] = ""
                lines.append("|".join(step_row))
    if extras:
        running = start + timedelta(seconds=span // 2)
        raw += 1
        lines.append(
            f"{raw}|{raw}|{cluster}|cpu|normal|{accounts[0]}|{accounts[0]}|5000|u1|10001|"
            f"{_sacct_time(running)}|{_sacct_time(running)}|{_sacct_time(running)}|Unknown|"
            "01:00:00|0:0|RUNNING|1|8|8|4000Mc|cpu=8,node=1|billing=8,cpu=8,node=1|"
            "2-00:00:00|cn0001|still-running"
        )
        raw += 1
        lines.append(
            f"{raw}|{raw}|{cluster}|cpu|normal|{accounts[0]}|{accounts[0]}|5000|u1|10001|"
            f"{_sacct_time(running)}|{_sacct_time(running)}|Unknown|Unknown|00:00:00|0:0|"
            "PENDING|1|8|8|4000Mc|cpu=8,node=1||2-00:00:00|None assigned|never-started"
        )
    return lines


def sample_events(
    count: int,
    *,
    start: datetime,
    end: datetime,
    tenants: Sequence[str],
    source: str = "//cd-icc/aiplatform",
    seed: int = 2023,
    resource: str = "gpu:910b",
    max_hours: float = 12.0,
) -> list[str]:
    """CloudEvents usage events (JSON Lines), one per finished workload on ``resource``,
    between ``start`` and ``end``, ``subject`` the tenant. Deterministic for a seed."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    span = max(int((end - start).total_seconds()), 3600)
    out = []
    for n in range(count):
        tenant = tenants[n % len(tenants)] if n < len(tenants) else rng.choice(tenants)
        duration = rng.randint(300, int(max_hours * 3600))
        finish = start + timedelta(seconds=rng.randint(duration + 60, max(span, duration + 61)))
        event = {
            "specversion": "1.0",
            "id": f"wl-{seed}-{n:06d}",
            "source": source,
            "type": "com.cdicc.workload.finished",
            "subject": tenant,
            "time": finish.astimezone(SHANGHAI).isoformat(),
            "data": {
                "resource": resource,
                "cards": rng.choice((1, 2, 4, 8, 16)),
                "duration_seconds": duration,
                "job": f"train-{n}",
            },
        }
        out.append(json.dumps(event, ensure_ascii=False))
    return out


# --- the demo round ----------------------------------------------------------------------------

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


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


class ApiError(DemoError):
    def __init__(self, status: int, reason: str, detail: str, where: str) -> None:
        super().__init__(f"{where}: {status} {reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


class Api:
    """The service's HTTP API, with the demo's tokens."""

    def __init__(self, base: str, timeout: float = 120.0) -> None:
        import httpx

        self.base = base
        self.http = httpx.Client(base_url=base, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = self.http.request(method, path, json=body, headers=headers)
        if reply.status_code in (200, 201):
            return reply.json()
        try:
            problem = reply.json()
        except ValueError:
            problem = {}
        raise ApiError(
            reply.status_code,
            str(problem.get("reason") or problem.get("title") or reply.reason_phrase),
            str(problem.get("detail") or reply.text[:300]),
            f"{method} {path}",
        )

    def ready(self) -> bool:
        import httpx

        try:
            return bool(self.http.get("/readyz", timeout=3.0).json().get("ready"))
        except (httpx.HTTPError, ValueError):
            return False


@dataclass
class Step:
    name: str
    ok: bool
    detail: str  # the whole story (printed as it happens)
    short: str  # for the table at the end


@dataclass
class DemoOptions:
    http: str = "http://127.0.0.1:8080"
    grpc: str = "127.0.0.1:50051"
    data_dir: Path = Path("suanli-data")
    db: str | None = None
    jobs: int = 100
    events: int = 120
    start: bool = True
    keep_tokens: bool = False


@dataclass
class Demo:
    options: DemoOptions
    say: Callable[[str], None] = print
    steps: list[Step] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # token ids, revoked at the end

    # -- plumbing --

    def step(self, name: str, detail: str, ok: bool = True, short: str | None = None) -> None:
        self.steps.append(Step(name, ok, detail, short or detail))
        self.say(f"{'✓' if ok else '✗'} {name}: {detail}")

    def token(self, store: Any, role: str, label: str, **scope: str) -> str:
        token, principal = store.create(role, label=f"suanli demo: {label}", **scope)
        self.tokens.append(principal.token_id)
        return str(token)

    def centre_client(self, centre: str) -> Any:
        from adapters.client import RedemptionClient

        return RedemptionClient.from_data_dir(self.options.grpc, self.options.data_dir, centre)

    # -- the run --

    def run(self) -> bool:
        import httpx
        from sqlalchemy.exc import SQLAlchemyError

        from adapters.client import RedemptionError
        from ledger.store.db import make_engine
        from ledger.store.tokens import TokenStore

        opts = self.options
        server = None
        api = Api(opts.http)
        try:
            if not api.ready():
                if not opts.start:
                    raise DemoError(f"no service answers at {opts.http} (make run starts one)")
                server = self.start_service(api)
            if opts.db is None and not (opts.data_dir / "ledger.db").exists():
                raise DemoError(
                    f"no database in {opts.data_dir}: give the --data-dir (or --db) of the"
                    f" service at {opts.http}"
                )
            url = opts.db or f"sqlite:///{(opts.data_dir / 'ledger.db').resolve()}"
            engine = make_engine(url)
            store = TokenStore(engine)
            try:
                self.run_round(api, store)
            finally:
                if not opts.keep_tokens:
                    for token_id in self.tokens:
                        store.revoke(token_id)
                engine.dispose()
        except (DemoError, RedemptionError, httpx.HTTPError, OSError, SQLAlchemyError) as exc:
            self.step("failed", str(exc), ok=False)
        finally:
            api.close()
            if server is not None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
        return all(s.ok for s in self.steps)

    def start_service(self, api: Api) -> subprocess.Popen[bytes]:
        opts = self.options
        host = opts.http.split("://", 1)[-1].rstrip("/")
        log = opts.data_dir / "demo" / "serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-c", "from api.cli import main; main()", "serve",
                "--data-dir", str(opts.data_dir), "--http", host, "--grpc", opts.grpc]  # fmt: skip
        if opts.db:
            argv += ["--db", opts.db]
        with log.open("ab") as out:
            server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 90
        while not api.ready():
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise DemoError(f"could not start suanli serve (see {log})")
            time.sleep(0.3)
        self.step(
            "service",
            f"started suanli serve on {opts.http} and {opts.grpc} (log {log})",
            short=f"started (log {log})",
        )
        return server

    def run_round(self, api: Api, store: Any) -> None:
        from adapters.agent import service_time

        opts = self.options
        admin = self.token(store, "admin", "bureau")
        auditor = self.token(store, "auditor", "auditor")
        keys = self.check_service(api, auditor)
        with self.centre_client("nscc-cd") as client:
            now = service_time(client, "nscc-cd")
        today = now.astimezone(SHANGHAI).date()
        run = now.astimezone(SHANGHAI).strftime("%y%m%d%H%M%S")
        clock = f"{now.astimezone(SHANGHAI):%Y-%m-%d %H:%M} Asia/Shanghai"
        self.step(
            "service",
            f"{opts.http} and {opts.grpc}; service clock {clock}, log size {keys['size']};"
            f" this run's files in {opts.data_dir / 'demo' / run}",
            short=f"{opts.http}, {opts.grpc}; clock {clock}; log size {keys['size']}",
        )
        policy = self.publish_round(api, admin, today)
        workdir = opts.data_dir / "demo" / run
        workdir.mkdir(parents=True, exist_ok=True)
        activity = policy.window("project_activity")
        assert activity.start is not None and activity.end is not None
        first_day = activity.start.astimezone(SHANGHAI).date()
        last_day = (activity.end - timedelta(seconds=1)).astimezone(SHANGHAI).date()
        people = cast(first_day + timedelta(days=20), last_day - timedelta(days=15))
        submitted = self.apply(api, store, policy, people, admin, run)
        self.review(api, store, submitted)
        vouchers = self.decide(api, admin, submitted, run)
        usage_start = activity.start + timedelta(days=21)
        usage_end = activity.end - timedelta(days=5)
        outboxes = self.agents(api, auditor, people, vouchers, run, workdir, usage_start, usage_end)
        self.cap(outboxes["nscc-cd"], people, vouchers)
        period = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
        self.statements(api, admin, period)
        self.reconcile(outboxes, run, period)
        self.audit(api)

    def check_service(self, api: Api, auditor: str) -> Any:
        """The service must use this data dir's database (it knows the demo's tokens) and
        have the centres' signing keys registered; returns its key registry."""
        from ledger.keys import Signer

        opts = self.options
        try:
            keys = api.call("GET", "/v1/audit/keys", auditor)
        except ApiError as exc:
            if exc.status == 401:
                raise DemoError(
                    f"the service at {opts.http} does not know the tokens written to"
                    f" {opts.db or opts.data_dir}: give the --data-dir (and --db) it uses"
                ) from exc
            raise
        for centre in CENTRES:
            path = opts.data_dir / "centres" / centre / "signing.key"
            if not path.exists():
                raise DemoError(f"{path} is missing: is {opts.data_dir} the service's data dir?")
            mine = Signer.parse(path.read_text().strip()).verifier.vkey
            if not any(k["vkey"] == mine and k["active"] for k in keys["keys"]):
                raise DemoError(f"{centre}'s signing key in {path} is not registered in the log")
        return keys

    def publish_round(self, api: Api, admin: str, today: date) -> Any:
        """The demo version of the round, in force (published unless it already is)."""
        from ledger.policy import Policy

        doc = demo_policy(today)
        policy = Policy.from_json(doc)
        current = api.call("GET", "/v1/admin/policy", admin)
        submission = policy.window("online_submission")
        shown = (
            f"online submission {submission.describe()}, district review until"
            f" {policy.window('district_review').end_text}"
        )
        days = (today - NOTICE_TODAY).days
        brief = (
            f"{policy.round} {policy.version[:8]}, windows +{days} d; 申报"
            f" {submission.start_text}..{submission.end_text}"
        )
        if current["version"] == policy.version:
            self.step(
                "round",
                f"demo version {policy.version[:12]}… already in force; {shown}",
                short=f"{brief} (in force)",
            )
        else:
            done = api.call("POST", "/v1/admin/policy", admin, doc)
            self.step(
                "round",
                f"published {policy.round} version {policy.version[:12]}… (entry"
                f" {done['entry']['index']}): the notice's programmes, windows moved"
                f" {days} days; {shown}",
                short=f"{brief} (published)",
            )
        return policy

    def apply(
        self, api: Api, store: Any, policy: Any, people: list[Applicant], admin: str, run: str
    ) -> list[tuple[Applicant, str, str]]:
        """Each applicant registers itself and applies: (applicant, USCC, application)."""
        import hashlib

        from ledger.uscc import complete

        base = int(run[-7:])
        submitted: list[tuple[Applicant, str, str]] = []
        for n, person in enumerate(people):
            uscc = ""
            for k in range(base * 10 + n * 997, base * 10 + n * 997 + 50):
                uscc = complete(f"91510100MA{k % 10_000_000:07d}")
                try:
                    api.call("GET", f"/v1/admin/entities/{uscc}", admin)
                except ApiError as exc:
                    if exc.status == 404:
                        break
                    raise
            grantee = self.token(store, "grantee", person.name, entity=uscc)
            api.call(
                "POST", "/v1/apply/entity", grantee,
                {"uscc": uscc, "name": person.name, "type": person.type,
                 "district": person.district},
            )  # fmt: skip
            programme = policy.programme(person.programme)
            materials = {
                m.id: hashlib.sha256(f"{uscc}/{programme.id}/{m.id}".encode()).hexdigest()
                for m in programme.materials
                if m.required
            }
            attest = {c.id: True for c in programme.conditions if c.attested}
            app_id = f"A-{run}-{n + 1}"
            api.call(
                "POST", "/v1/apply/applications", grantee,
                {"application": app_id, "programme": person.programme, "inputs": person.inputs,
                 "materials": materials, "attestations": attest},
            )  # fmt: skip
            submitted.append((person, uscc, app_id))
        self.step(
            "applications",
            f"{len(submitted)} submitted inside the window: "
            + "; ".join(f"{p.name} {a} ({p.about})" for p, _, a in submitted),
            short=f"{len(submitted)} submitted inside the window ("
            + ", ".join(p.programme for p, _, _ in submitted)
            + ")",
        )
        return submitted

    def review(self, api: Api, store: Any, submitted: list[tuple[Applicant, str, str]]) -> None:
        opinions = []
        rejected = []
        for person, _, app_id in submitted:
            reviewer = self.token(store, "reviewer", person.district, district=person.district)
            approve = person.face_fen is not None
            note = "材料真实，同意推荐" if approve else "银行付款凭证与项目不符，不予推荐"
            body = {"opinion": "approve" if approve else "reject", "note": note}
            api.call("POST", f"/v1/review/applications/{app_id}/opinion", reviewer, body)
            opinions.append(f"{person.district} {'approve' if approve else 'reject'} {app_id}")
            if not approve:
                rejected.append(person.district)
        self.step(
            "district review",
            "; ".join(opinions),
            short=f"{len(opinions) - len(rejected)} approved, {len(rejected)} rejected"
            f" ({', '.join(rejected)})",
        )

    def decide(
        self, api: Api, admin: str, submitted: list[tuple[Applicant, str, str]], run: str
    ) -> dict[int, str]:
        """The bureau's decisions and the vouchers: applicant index -> voucher id."""
        from ledger.money import format_fen

        vouchers: dict[int, str] = {}
        decided = []
        short = []
        for n, (person, _, app_id) in enumerate(submitted):
            path = f"/v1/admin/applications/{app_id}/decision"
            if person.face_fen is None:
                try:
                    api.call("POST", path, admin, {"decision": "approve"})
                except ApiError as exc:
                    api.call("POST", path, admin, {"decision": "reject", "note": exc.detail[:200]})
                    decided.append(f"{app_id} refused {exc.reason}, then rejected")
                    short.append(f"{app_id}: {exc.reason}")
                    continue
                raise DemoError(f"{app_id} was approved over its district's rejection")
            api.call("POST", path, admin, {"decision": "approve", "amount_fen": person.face_fen})
            issued = api.call(
                "POST", f"/v1/admin/applications/{app_id}/voucher", admin,
                {"voucher": f"V-{run}-{n + 1}"},
            )  # fmt: skip
            vouchers[n] = issued["voucher"]
            decided.append(
                f"{app_id} approved {format_fen(person.face_fen)} -> {issued['voucher']}"
            )
            short.append(f"{issued['voucher']} {format_fen(person.face_fen)}")
        self.step("decisions and vouchers", "; ".join(decided), short="; ".join(short))
        return vouchers

    def agents(
        self,
        api: Api,
        auditor: str,
        people: list[Applicant],
        vouchers: dict[int, str],
        run: str,
        workdir: Path,
        start: datetime,
        end: datetime,
    ) -> dict[str, Path]:
        """Write each centre's metering output and mapping, run both agents at once."""
        import logging

        from adapters.agent import Agent, CentreFiles, Progress, RateBook, Source
        from adapters.mapping import AccountMap
        from adapters.outbox import Outbox
        from ledger.money import format_fen

        opts = self.options
        rates = RateBook.load(opts.http, token=auditor)
        mappings: dict[str, dict[str, str]] = {c: {} for c in CENTRES}
        for n, person in enumerate(people):
            for centre, account in person.accounts.items():
                if n in vouchers:
                    mappings[centre][account] = vouchers[n]
        nscc = [a for a in mappings["nscc-cd"] if a != "shudao"]
        lines = sample_sacct(
            opts.jobs, start=start, end=end, accounts=[*nscc, "guest"],
            cluster=f"tianhe-{run}", seed=int(run[-6:]), header=True,
        )  # fmt: skip
        lines += sample_sacct(
            max(opts.jobs // 4, 1), start=start, end=end, accounts=["shudao"],
            cluster=f"tianhe-{run}", first_job=900_000, seed=int(run[-6:]) + 1,
            gpu_share=1.0, gpu_models=("a100",), extras=False, max_hours=40.0,
        )  # fmt: skip
        sources = {
            "nscc-cd": workdir / "nscc-cd-sacct.log",
            "cd-icc": workdir / "cd-icc-events",
        }
        sources["nscc-cd"].write_text("\n".join(lines) + "\n", encoding="utf-8")
        sources["cd-icc"].mkdir(exist_ok=True)
        events = sample_events(
            opts.events, start=start, end=end, tenants=list(mappings["cd-icc"]),
            source=f"//cd-icc/aiplatform-{run}", seed=int(run[-6:]),
        )  # fmt: skip
        half = len(events) // 2
        for name, chunk in (("part-1.jsonl", events[:half]), ("part-2.jsonl", events[half:])):
            (sources["cd-icc"] / name).write_text("\n".join(chunk) + "\n", encoding="utf-8")
        specs = {
            "nscc-cd": f"sacct:{sources['nscc-cd']}",
            "cd-icc": f"events:{sources['cd-icc']}",
        }
        # The centres' own outboxes (what `suanli center run` uses by default), so that
        # `suanli center reconcile` afterwards sees the demo's records as the centre's.
        outboxes = {c: opts.data_dir / "centres" / c / "outbox.db" for c in CENTRES}
        results: dict[str, Any] = {}
        logging.getLogger("suanli.agent").setLevel(logging.WARNING)

        def work(centre: str) -> None:
            mapping = workdir / f"{centre}-accounts.json"
            mapping.write_text(
                json.dumps({"accounts": mappings[centre]}, ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
            agent = Agent(
                centre=centre,
                outbox=Outbox(outboxes[centre]),
                target=opts.grpc,
                files=CentreFiles(opts.data_dir / "centres" / centre),
                mapping=AccountMap.load(mapping),
                rates=rates,
                sources=[Source.parse(specs[centre])],
                progress=Progress(centre, bar=False, every=3600),
            )
            try:
                ingest = agent.ingest()
                submitted = agent.submit(give_up_after=120)
                results[centre] = (ingest, submitted, agent.outbox.counts(centre))
            except Exception as exc:  # reported as the step's failure
                results[centre] = exc
            finally:
                agent.close()
                agent.outbox.close()

        threads = [threading.Thread(target=work, args=(c,), name=f"agent-{c}") for c in CENTRES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for centre in CENTRES:
            found = results.get(centre)
            if isinstance(found, BaseException) or found is None:
                self.step(f"agent {centre}", f"failed: {found}", ok=False)
                continue
            ingest, submitted, counts = found
            skipped = ", ".join(f"{n} {code}" for code, n in ingest.skipped.most_common())
            refused = f", {submitted.refused} refused" if submitted.refused else ""
            self.step(
                f"agent {centre}",
                f"{specs[centre]}: {ingest.rows} rows -> {ingest.records} records (skipped:"
                f" {skipped or 'none'}); {submitted.claimed} claimed{refused} over gRPC in"
                f" {submitted.seconds:.1f} s; subsidy {format_fen(submitted.subsidy_fen)}",
                ok=counts["pending"] == 0,
                short=f"{ingest.records} records: {submitted.claimed} claimed{refused};"
                f" subsidy {format_fen(submitted.subsidy_fen)}",
            )
        return outboxes

    def cap(self, outbox_path: Path, people: list[Applicant], vouchers: dict[int, str]) -> None:
        from adapters.outbox import Outbox
        from ledger.money import format_fen

        small = min(
            (n for n in vouchers if people[n].face_fen), key=lambda n: people[n].face_fen or 0
        )
        voucher = vouchers[small]
        with Outbox(outbox_path) as box:
            rows = [r for r in box.rows() if r.record.voucher == voucher]
        bound = [r for r in rows if r.claimed is not None and r.claimed.bound_by == "voucher"]
        refused = [r for r in rows if r.refusal is not None and r.refusal.reason == "CAP_EXHAUSTED"]
        if not refused:
            self.step("cap", f"{voucher}'s cap was not reached", ok=False)
            return
        first = refused[0].refusal
        assert first is not None
        where = f" at record {bound[0].record.record_id}" if bound else ""
        self.step(
            "cap reached",
            f"{voucher} ({people[small].name}, {format_fen(people[small].face_fen or 0)}):"
            f" subsidy bound by its voucher cap{where}; {len(refused)} later claims refused"
            f" {first.reason} (cap={first.metadata.get('cap', '?')}): {first.message}",
            short=f"{voucher}: {len(refused)} claims refused {first.reason}"
            f" (cap={first.metadata.get('cap', '?')})",
        )

    def statements(self, api: Api, admin: str, period: str) -> None:
        from ledger.money import format_fen

        issued = []
        ok = True
        for centre in CENTRES:
            try:
                found = api.call(
                    "POST", "/v1/statements", admin, {"centre": centre, "period": period}
                )
            except ApiError as exc:
                if exc.status in (404, 405):
                    self.step("statements", "not available in this build of the service")
                    return
                ok = ok and exc.reason == "NOTHING_TO_SETTLE"
                issued.append(f"{centre}: refused {exc.reason}: {exc.detail}")
                continue
            totals = found.get("totals", {})
            issued.append(
                f"{found.get('statement')}: {totals.get('lines', '?')} lines,"
                f" {format_fen(int(totals.get('amount_fen', 0)))}"
            )
        self.step(
            "settlement statements",
            f"{period}: " + "; ".join(issued),
            ok=ok,
            short="; ".join(x.split(": refused")[0] for x in issued),
        )

    def reconcile(self, outboxes: dict[str, Path], run: str, period: str) -> None:
        from adapters.outbox import Outbox
        from adapters.reconcile import Period, ledger_records, outbox_records, reconcile

        prefixes = {"nscc-cd": f"tianhe-{run}/", "cd-icc": f"//cd-icc/aiplatform-{run}/"}
        for centre in CENTRES:
            with Outbox(outboxes[centre]) as box:
                records = outbox_records(box, centre)
            with self.centre_client(centre) as client:
                claims, statements = ledger_records(client)
            report = reconcile(
                centre=centre,
                period=Period.parse(period),
                centre_records=records.values(),
                ledger_claims=claims,
                statements=statements,
                allow_refused=["CAP_EXHAUSTED"],
                prefixes=[prefixes[centre]],
            )
            counts = ", ".join(f"{n} {k}" for k, n in report.counts().most_common())
            explained = (
                f", {len(report.explained)} cap refusals explained" if report.explained else ""
            )
            on = f", {len(report.statements)} statements" if report.statements else ""
            self.step(
                f"reconcile {centre}",
                f"{period}: {report.matched} records match the ledger{explained}{on};"
                f" differences: {counts or 'none'}",
                ok=report.ok,
                short=f"{report.matched} match; differences: {counts or 'none'}{explained}",
            )

    def audit(self, api: Api) -> None:
        key = api.call("GET", "/v1/log/key")["vkey"]
        argv = [sys.executable, "-c", "from api.cli import main; main()", "audit", "verify",
                self.options.http, "--key", key, "--no-progress"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        lines = [x for x in (done.stdout + done.stderr).splitlines() if x.strip()]
        summary = lines[-1] if lines else ""
        self.step(
            "audit verify",
            ("passed: " if done.returncode == 0 else f"FAILED (exit {done.returncode}): ")
            + summary,
            ok=done.returncode == 0,
            short=summary.split(", root")[0] if done.returncode == 0 else summary,
        )


def print_table(steps: Sequence[Step]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="suanli demo: the round, end to end")
    table.add_column("step", style="bold")
    table.add_column("", width=2)
    table.add_column("what happened")
    for step in steps:
        table.add_row(step.name, "✓" if step.ok else "✗", step.short)
    Console().print(table)


def demo(
    http: Annotated[str, typer.Option(help="the service's HTTP address")] = "http://127.0.0.1:8080",
    grpc: Annotated[str, typer.Option(help="the service's gRPC address")] = "127.0.0.1:50051",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="the service's data dir (keys, tokens)")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="the service's database URL, if not SQLite")
    ] = None,
    jobs: Annotated[int, typer.Option(min=10, help="sacct jobs for 国家超算成都中心")] = 100,
    events: Annotated[int, typer.Option(min=10, help="usage events for 成都智算中心")] = 120,
    start: Annotated[
        bool, typer.Option("--start/--no-start", help="start suanli serve if none answers")
    ] = True,
    keep_tokens: Annotated[bool, typer.Option(help="do not revoke the demo's tokens")] = False,
) -> None:
    """Run the round end to end against the service (make run): applications, review,
    vouchers, both centres' agents over gRPC, a cap reached, statements, audit verify."""
    base = http if "://" in http else f"http://{http}"
    options = DemoOptions(
        http=base.rstrip("/"),
        grpc=grpc,
        data_dir=data_dir or Path(os.environ.get("SUANLI_DATA_DIR", "suanli-data")),
        db=db or os.environ.get("SUANLI_DB"),
        jobs=jobs,
        events=events,
        start=start,
        keep_tokens=keep_tokens,
    )
    runner = Demo(options, say=lambda line: typer.echo(line, err=True))
    ok = runner.run()
    print_table(runner.steps)
    if not ok:
        raise typer.Exit(1)
