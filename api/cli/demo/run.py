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
4. **Both centres' agents** (``adapters.agent``, as ``suanli centre run`` runs them)
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
``suanli centre run`` keeps them), so ``suanli centre reconcile`` sees them afterwards.
Without a service at ``--http``, the demo starts ``suanli serve`` on the data dir and
stops it at the end; it starts two witnesses with it (the finance bureau's and the audit
office's, ``--witnesses``), and the audit then demands both cosignatures.
Exit status 0 when every step worked, 1 otherwise.

``sample_sacct`` and ``sample_events`` make the metering output (also used by the agent's
tests and benchmarks).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from api.cli.demo.client import Api, ApiError, DemoError
from api.cli.demo.round import CENTRES, NOTICE_TODAY, Applicant, cast, demo_policy
from api.cli.demo.samples import sample_events, sample_sacct
from api.cli.demo.witnesses import DemoWitnesses, start_witnesses, wait_until_witnessed
from api.settings import Settings
from ledger.timeutil import SHANGHAI


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
    witnesses: int = 2  # started with the service, when the demo starts it


@dataclass
class Demo:
    options: DemoOptions
    say: Callable[[str], None] = print
    steps: list[Step] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # token ids, revoked at the end
    witnesses: DemoWitnesses | None = None

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
            if self.witnesses is not None:
                self.witnesses.stop()
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
        if opts.witnesses:
            self.witnesses = start_witnesses(opts.data_dir, Settings().origin, opts.witnesses)
            argv += ["--witness-policy", str(self.witnesses.policy)]
            self.step(
                "witnesses",
                f"started {', '.join(self.witnesses.names)} (policy {self.witnesses.policy})",
            )
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
        usage = (usage_start, usage_end)
        outboxes = self.agents(auditor, people, vouchers, run, workdir, usage)
        self.cap(outboxes["nscc-cd"], people, vouchers)
        period = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
        self.statements(api, admin, period)
        self.reconcile(outboxes, run, period)
        self.audit(api, auditor)

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
        auditor: str,
        people: list[Applicant],
        vouchers: dict[int, str],
        run: str,
        workdir: Path,
        usage: tuple[datetime, datetime],
    ) -> dict[str, Path]:
        """Write each centre's metering output and mapping, run both agents at once."""
        import logging

        from adapters.rates import RateBook

        rates = RateBook.load(self.options.http, token=auditor)
        mappings: dict[str, dict[str, str]] = {c: {} for c in CENTRES}
        for n, person in enumerate(people):
            for centre, account in person.accounts.items():
                if n in vouchers:
                    mappings[centre][account] = vouchers[n]
        specs = self.write_usage(mappings, run, workdir, *usage)
        # The centres' own outboxes (what `suanli centre run` uses by default), so that
        # `suanli centre reconcile` afterwards sees the demo's records as the centre's.
        outboxes = {c: self.options.data_dir / "centres" / c / "outbox.db" for c in CENTRES}
        results: dict[str, Any] = {}
        logging.getLogger("suanli.agent").setLevel(logging.WARNING)

        def work(centre: str) -> None:
            mapping = workdir / f"{centre}-accounts.json"
            mapping.write_text(
                json.dumps({"accounts": mappings[centre]}, ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
            results[centre] = self.run_agent(centre, outboxes[centre], mapping, rates, specs)

        threads = [threading.Thread(target=work, args=(c,), name=f"agent-{c}") for c in CENTRES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for centre in CENTRES:
            self.agent_step(centre, specs[centre], results.get(centre))
        return outboxes

    def write_usage(
        self,
        mappings: dict[str, dict[str, str]],
        run: str,
        workdir: Path,
        start: datetime,
        end: datetime,
    ) -> dict[str, str]:
        """Each centre's metering output in ``workdir``; the agents' source specs."""
        opts = self.options
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
        sacct, events_dir = workdir / "nscc-cd-sacct.log", workdir / "cd-icc-events"
        sacct.write_text("\n".join(lines) + "\n", encoding="utf-8")
        events_dir.mkdir(exist_ok=True)
        events = sample_events(
            opts.events, start=start, end=end, tenants=list(mappings["cd-icc"]),
            source=f"//cd-icc/aiplatform-{run}", seed=int(run[-6:]),
        )  # fmt: skip
        half = len(events) // 2
        for name, chunk in (("part-1.jsonl", events[:half]), ("part-2.jsonl", events[half:])):
            (events_dir / name).write_text("\n".join(chunk) + "\n", encoding="utf-8")
        return {"nscc-cd": f"sacct:{sacct}", "cd-icc": f"events:{events_dir}"}

    def run_agent(
        self, centre: str, outbox: Path, mapping: Path, rates: Any, specs: dict[str, str]
    ) -> Any:
        """One centre's agent, as ``suanli centre run`` runs it: (ingest, submitted,
        outbox counts), or the exception it failed with."""
        from adapters.agent import Agent
        from adapters.credentials import CentreFiles
        from adapters.mapping import AccountMap
        from adapters.outbox import Outbox
        from adapters.progress import Progress
        from adapters.sources import UsageSource

        opts = self.options
        agent = Agent(
            centre=centre,
            outbox=Outbox(outbox),
            target=opts.grpc,
            files=CentreFiles.in_data_dir(opts.data_dir, centre),
            mapping=AccountMap.load(mapping),
            rates=rates,
            sources=[UsageSource.parse(specs[centre])],
            progress=Progress(centre, bar=False, every=3600),
        )
        try:
            ingest = agent.ingest()
            submitted = agent.submit(give_up_after=120)
            return ingest, submitted, agent.outbox.counts(centre)
        except Exception as exc:  # reported as the step's failure
            return exc
        finally:
            agent.close()
            agent.outbox.close()

    def agent_step(self, centre: str, spec: str, found: Any) -> None:
        from ledger.money import format_fen

        if isinstance(found, BaseException) or found is None:
            self.step(f"agent {centre}", f"failed: {found}", ok=False)
            return
        ingest, submitted, counts = found
        skipped = ", ".join(f"{n} {code}" for code, n in ingest.skipped.most_common())
        refused = f", {submitted.refused} refused" if submitted.refused else ""
        self.step(
            f"agent {centre}",
            f"{spec}: {ingest.rows} rows -> {ingest.records} records (skipped:"
            f" {skipped or 'none'}); {submitted.claimed} claimed{refused} over gRPC in"
            f" {submitted.seconds:.1f} s; subsidy {format_fen(submitted.subsidy_fen)}",
            ok=counts["pending"] == 0,
            short=f"{ingest.records} records: {submitted.claimed} claimed{refused};"
            f" subsidy {format_fen(submitted.subsidy_fen)}",
        )

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

    def audit(self, api: Api, auditor: str) -> None:
        """``suanli audit verify`` twice: as anyone can (the public log alone), and as an
        auditor (with the disclosures, every rule replayed)."""
        key = api.call("GET", "/v1/log/key")["vkey"]
        argv = [sys.executable, "-c", "from api.cli import main; main()", "audit", "verify",
                "--source", self.options.http, "--key", key, "--no-progress"]  # fmt: skip
        if self.witnesses is not None:
            latest = api.call("GET", "/readyz")["checks"]["checkpoint"].split()[-1]
            size = wait_until_witnessed(api, int(latest), len(self.witnesses.names))
            self.step("witnessed", f"/checkpoint at size {size}, cosigned by every witness")
            argv += ["--witness-policy", str(self.witnesses.policy)]
        for step, extra in (
            ("audit verify (public)", []),
            ("audit verify (auditor)", ["--token", auditor]),
        ):
            done = subprocess.run(argv + extra, capture_output=True, text=True, check=False)  # noqa: S603
            lines = [x for x in (done.stdout + done.stderr).splitlines() if x.strip()]
            summary = lines[0] if done.returncode == 0 and lines else (lines[-1] if lines else "")
            self.step(
                step,
                ("passed: " if done.returncode == 0 else f"FAILED (exit {done.returncode}): ")
                + summary,
                ok=done.returncode == 0,
                short=summary.split(", root")[0] if done.returncode == 0 else summary,
            )
