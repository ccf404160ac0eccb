"""Each role's main task on the web page, end to end in a real headless Chromium, with data.

One service (SQLite, a manual clock in the 2023 round) holds a grantee with more than 1,000
history items spread over six usage months, an application reviewed by its 区县 and
awaiting the bureau's decision, and a settled Q3 statement. The browser runs with every
host name other than 127.0.0.1 unresolvable, so anything the pages tried to load from
elsewhere would fail (and ``/docs`` is checked to load nothing from elsewhere).

* the grantee pages through the whole history; the chart (by usage month, from the ledger's
  totals) adds up to the cards' used amount; an invalid token and an unknown entity each
  get their own state;
* the bureau picks the year, decides the application in the page and opens the statement;
* the auditor pins a verifier key, checks a proof, and is warned loudly when the served key
  differs from the pinned one;
* ``/docs`` (Swagger UI) and ``/redoc`` render offline.

Screenshots go to ``tests/artifacts/`` (git-ignored; ``$SUANLI_SCREENSHOTS`` overrides).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, attest_all, local, make_uscc, materials_for, wan
from grpc_fixtures import START, ManualClock, issue_voucher
from hypothesis import given, settings
from hypothesis import strategies as st
from test_http_grantee import claim, holder_of
from test_web_browser import (
    WAIT,
    _need_chromium,
    chromium_driver,
    page_errors,
    screenshot,
    text_of,
    verify,
    wait_for,
)

from api import bootstrap
from api.bootstrap import Service
from api.cli import app as cli_app
from api.cli.manners import EXIT_OK, run
from api.http.app import create_app
from api.http.exports import yuan_text
from api.settings import Settings
from ledger import merkle, vouchers
from ledger.checkpoint import open_checkpoint
from ledger.keys import Signer
from ledger.policy import current_policy
from ledger.timeutil import shanghai_date
from ledger.usecases.commands import applications
from ledger.usecases.commands.entities import register_entity
from ledger.usecases.commands.settlement import issue_statement

pytestmark = pytest.mark.browser

CLAIMS = 1_050  # more than 1,000 history items
MONTHS = ("2023-02", "2023-03", "2023-04", "2023-05", "2023-06", "2023-07")


# --- the data --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("web-roles")
    clock = ManualClock(START)
    settings = Settings(data_dir=data / "data", db=f"sqlite:///{data / 'ledger.db'}")
    service = bootstrap.open_service(settings, clock=clock)
    # an application, reviewed by its 区县, that the bureau decides in the page
    applicant = make_uscc(9001)
    service.write(register_entity, uscc=applicant, name="成都网页测试科技有限公司",
                  type="enterprise", district="成都高新区", by_issuer=True)  # fmt: skip
    policy = current_policy(service.ledger.snapshot())
    service.write(applications.submit_application, application="A-web-1", programme="industry",
                  applicant=applicant, inputs=DEFAULT_INPUTS["industry"],
                  materials=materials_for(policy, "industry"),
                  attestations=attest_all(policy, "industry"))  # fmt: skip
    service.write(applications.review_application, application="A-web-1",
                  district="成都高新区", reviewer="r-1", opinion="approve",
                  note="材料齐全")  # fmt: skip
    # a grantee with 1,050 claims over six usage months, recorded on one day
    voucher = issue_voucher(service, "ai-model")
    grantee = holder_of(service, voucher)
    for n in range(CLAIMS):
        month = MONTHS[n % len(MONTHS)]
        claim(service, voucher, 1_000 + n, f"job-{n:05d}", start=local(f"{month}-10 09:00"))
    # a small voucher whose face value one job exhausts: the cap cuts it, and says so
    small = issue_voucher(service, "national-strategy", amount_fen=wan(1), uscc=grantee)
    claim(service, small, wan(5), "job-capped")
    clock.set(local("2023-10-10 10:00"))
    issue_statement(service.write, centre="nscc-cd", period="2023-Q3")
    tokens = {role: service.tokens.create(role)[0] for role in ("admin", "auditor")}
    tokens["grantee"] = service.tokens.create("grantee", entity=grantee)[0]
    tokens["nobody"] = service.tokens.create("grantee", entity=make_uscc(9999))[0]
    yield {
        "service": service,
        "voucher": voucher,
        "small": small,
        "grantee": grantee,
        "tokens": tokens,
    }
    service.close()


@contextmanager
def serving(service: Service) -> Iterator[str]:
    """The real app on a free loopback port, in a thread; its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def base_url(world: dict[str, Any]) -> Iterator[str]:
    with serving(world["service"]) as url:
        yield url


@pytest.fixture
def in_window(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    """A service inside the online submission window, with one registered entity (no
    claims): for applying and reviewing."""
    service = bootstrap.open_service(
        Settings(data_dir=tmp_path / "data", db=f"sqlite:///{tmp_path / 'ledger.db'}"),
        clock=ManualClock(START),
    )
    service.write(register_entity, uscc=make_uscc(9101), name="成都申报测试有限公司",
                  type="enterprise", district="成都高新区", by_issuer=True)  # fmt: skip
    try:
        with serving(service) as url:
            yield service, url
    finally:
        service.close()


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium that cannot resolve any host but 127.0.0.1: the network is off for it."""
    _need_chromium()
    profile = tmp_path_factory.mktemp("chromium-offline")
    with chromium_driver(
        profile, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    ) as driver:
        yield driver


def day(moment: datetime) -> str:
    """A time as its Asia/Shanghai date, as the page shows it."""
    return shanghai_date(moment).isoformat()


def sign_in(driver: Any, base_url: str, view: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/#{view}")
    driver.execute_script("sessionStorage.clear(); localStorage.clear()")
    driver.refresh()
    box = wait_for(driver, lambda d: d.find_element(By.ID, "token"), "the sign-in box")
    box.send_keys(token)
    driver.find_element(By.ID, "signin-button").click()


def attr(driver: Any, css: str, name: str) -> str | None:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].get_attribute(name) if found else None


def row_kinds(driver: Any) -> set[str]:
    """The kinds of the auditor's listed entries (read in one script: rows are redrawn)."""
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll('#audit-entries tbody tr')]"
            ".map((r) => r.cells[1].textContent)"
        )
    )


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


# --- the grantee -----------------------------------------------------------------------------


def test_grantee_pages_through_all_history_and_the_chart_matches_the_cards(
    offline: Any, base_url: str, world: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    driver, service = offline, world["service"]
    sign_in(driver, base_url, "grantee", world["tokens"]["grantee"])
    wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#grantee-history tbody tr[data-index]"),
        "history rows",
    )
    state, now = service.ledger.refresh(), service.ledger.clock()
    used = sum(
        vouchers.voucher_view(state, v, now)["used_fen"] for v in (world["voucher"], world["small"])
    )
    # the cards' used amount, the chart's total and the sum of its month bars all agree
    assert attr(driver, "#grantee-used-total", "data-fen") == str(used)
    assert attr(driver, "#grantee-chart-total", "data-fen") == str(used)
    bars = driver.find_elements(By.CSS_SELECTOR, "#grantee-chart rect.subsidy")
    assert [b.get_attribute("data-month") for b in bars] == list(MONTHS)  # by usage month
    assert sum(int(b.get_attribute("data-fen")) for b in bars) == used
    # the card shows the usage window first, the credential's validity as what it is
    held = vouchers.voucher_of(service.ledger.refresh(), world["voucher"])
    card = text_of(driver, f"#grantee-vouchers .card[data-voucher='{world['voucher']}']")
    assert f"使用期 Usage window {day(held.usage_start)} – {day(held.usage_end)}" in card, card
    assert f"Credential validity {day(held.valid_from)} – {day(held.valid_until)}" in card
    assert "有效 active" in card and "额度已用尽" not in card
    small = text_of(driver, f"#grantee-vouchers .card[data-voucher='{world['small']}']")
    assert "额度已用尽" in small and "券面额 voucher" in small  # why further usage is refused
    # rows: job id, usage dates, kinds in Chinese with English beside them
    first = text_of(driver, "#grantee-history tbody tr")
    assert "job-00000" in first and "2023-02-10" in first and "补贴 claim" in first
    screenshot(driver, "grantee")
    seen: list[str] = []
    pages = 0
    while True:
        rows = driver.find_elements(By.CSS_SELECTOR, "#grantee-history tbody tr[data-index]")
        seen += [r.get_attribute("data-index") for r in rows]
        pages += 1
        button = driver.find_element(By.ID, "grantee-next")
        if not button.is_enabled():
            break
        button.click()
        wait_for(
            driver,
            lambda d, p=pages: attr(d, "#grantee-page", "data-page") == str(p + 1),
            f"page {pages + 1}",
        )
    assert len(seen) == len(set(seen)) == CLAIMS + 1
    assert pages == (CLAIMS + 1 + 99) // 100
    capped = text_of(driver, "#grantee-history tbody tr:last-child")  # the newest, on the last page
    assert "job-capped" in capped and "未补贴" in capped and "券面额 voucher" in capped
    # CSV and XLSX: the buttons fetch the files with the token
    for fmt in ("csv", "xlsx"):
        click(driver, f"#grantee-exports button[data-href='/v1/me/history.{fmt}']")
        wait_for(
            driver,
            lambda d, f=fmt: (
                attr(d, f"#grantee-exports button[data-href='/v1/me/history.{f}']", "data-saved")
                or ""
            ).endswith(f),
            f"the {fmt} download",
        )
    assert page_errors(driver) == []


def test_grantee_states_for_a_refused_token_and_an_unknown_entity(
    offline: Any, base_url: str, world: dict[str, Any]
) -> None:
    driver, tokens = offline, world["service"].tokens
    revoked, principal = tokens.create("grantee", entity=world["grantee"])
    tokens.revoke(principal.token_id)
    for refused in ("sl_not-a-token", revoked):
        sign_in(driver, base_url, "grantee", refused)
        wait_for(
            driver,
            lambda d: attr(d, "#grantee-status", "data-state") == "token-refused",
            "the refused state",
        )
        assert "令牌无效或已撤销" in text_of(driver, "#grantee-status")
        assert not driver.execute_script("return sessionStorage.getItem('suanli.token')")
        assert not driver.find_element("id", "signed-in").is_displayed()  # never "signed in"
    sign_in(driver, base_url, "grantee", world["tokens"]["nobody"])
    wait_for(
        driver,
        lambda d: attr(d, "#grantee-status", "data-state") == "unknown-entity",
        "the unknown entity",
    )
    assert make_uscc(9999) in text_of(driver, "#grantee-status")
    assert not driver.find_element("id", "grantee-body").is_displayed()
    screenshot(driver, "grantee-unknown-entity")


# --- applying and reviewing ----------------------------------------------------------------


def test_grantee_applies_with_materials_hashed_in_the_browser_and_the_district_reviews(
    offline: Any, in_window: tuple[Service, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from ledger import applications as applications_domain

    driver, (service, base) = offline, in_window
    uscc = make_uscc(9101)
    grantee = service.tokens.create("grantee", entity=uscc)[0]
    sign_in(driver, base, "apply", grantee)
    wait_for(driver, lambda d: d.find_element(By.ID, "apply-form").is_displayed(), "the form")
    Select(driver.find_element(By.ID, "apply-programme")).select_by_value("industry")
    wanted = DEFAULT_INPUTS["industry"]
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-input]"), "the inputs")
    for name, value in wanted.items():
        box = driver.find_element(By.CSS_SELECTOR, f"[data-input='{name}']")
        typed = yuan_text(value) if box.get_attribute("data-type") == "fen" else str(value)
        driver.execute_script("arguments[0].value = arguments[1]", box, typed)
    policy = current_policy(service.ledger.snapshot())
    hashes = {}
    for material in policy.programme("industry").materials:
        document = tmp_path / f"{material.id}.pdf"
        document.write_bytes(f"申报材料 {material.id}".encode())
        hashes[material.id] = hashlib.sha256(document.read_bytes()).hexdigest()
        driver.find_element(By.CSS_SELECTOR, f"[data-material='{material.id}']").send_keys(
            str(document)
        )
    for material, digest in hashes.items():
        wait_for(
            driver,
            lambda d, m=material, h=digest: text_of(d, f"[data-material-hash='{m}']") == h,
            f"the SHA-256 of {material}, computed in the browser",
        )
    for box in driver.find_elements(By.CSS_SELECTOR, "[data-attest]"):
        box.click()
    click(driver, "#apply-preview-button")
    shown = json.loads(text_of(driver, "#apply-json"))
    assert shown == {
        "programme": "industry",
        "inputs": wanted,
        "materials": hashes,
        "attestations": attest_all(policy, "industry"),
    }
    screenshot(driver, "apply-preview")
    click(driver, "#apply-submit")
    wait_for(driver, lambda d: attr(d, "#apply-result", "data-state") == "submitted", "submitted")
    app_id = text_of(driver, "#apply-result b")
    recorded = applications_domain.application_of(service.ledger.refresh(), app_id)
    assert recorded.applicant == uscc and dict(recorded.materials) == hashes
    wait_for(driver, lambda d: app_id in text_of(d, "#apply-mine"), "my applications")

    reviewer = service.tokens.create("reviewer", district="成都高新区")[0]
    sign_in(driver, base, "apply", reviewer)
    cell = f"#review-queue td[data-application='{app_id}']"
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, cell), "the review queue")
    assert not driver.find_element(By.ID, "apply-form").is_displayed()  # reviewers do not apply
    click(driver, cell + " button.approve")
    wait_for(driver, lambda d: "✔" in text_of(d, "#review-done"), "the opinion")
    reviewed = applications_domain.application_of(service.ledger.refresh(), app_id)
    assert reviewed.status == "reviewed"
    screenshot(driver, "review")
    assert page_errors(driver) == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**53 - 1), min_size=1, max_size=40))
def test_the_form_reads_yuan_as_exact_fen(offline: Any, base_url: str, amounts: list[int]) -> None:
    """The apply form's 元 -> fen conversion (string arithmetic) is exact for every amount
    the exports write, and refuses what is not an amount."""
    driver = offline
    if not driver.current_url.startswith(base_url):
        driver.get(base_url + "/#auditor")
    wait_for(driver, lambda d: d.execute_script("return !!window.suanli"), "the page's script")
    texts = [yuan_text(a) for a in amounts] + [str(a // 100) for a in amounts]
    read = driver.execute_script("return arguments[0].map((t) => window.suanli.fenOf(t))", texts)
    assert read == amounts + [a // 100 * 100 for a in amounts]
    for bad in ("1.234", "-1.00", "1,000.00", "", "1e5"):
        assert driver.execute_script(
            "try { window.suanli.fenOf(arguments[0]); return false } catch (e) { return true }",
            bad,
        ), bad


# --- the bureau ------------------------------------------------------------------------------


def test_bureau_decides_an_application_and_opens_a_statement(
    offline: Any, base_url: str, world: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    driver, service = offline, world["service"]
    sign_in(driver, base_url, "bureau", world["tokens"]["admin"])
    wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#bureau-queue td[data-application='A-web-1']"),
        "the queue",
    )
    assert "2023" in [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#bureau-year option")]
    pools = text_of(driver, "#bureau-pools")
    assert "使用资金池 draws on" in pools  # each programme says which pool it draws on
    entities = text_of(driver, "#bureau-entities")
    assert world["grantee"] in entities
    click(driver, "#bureau-queue td[data-application='A-web-1'] button.approve")
    wait_for(
        driver,
        lambda d: (
            "A-web-1" in text_of(d, "#bureau-decided") and "✔" in text_of(d, "#bureau-decided")
        ),
        "the decision",
    )
    from ledger import applications as applications_domain

    decided = applications_domain.application_of(service.ledger.refresh(), "A-web-1")
    assert decided.status == "approved"
    statement = driver.find_element(By.CSS_SELECTOR, "#bureau-statements button.open-statement")
    name = statement.get_attribute("data-statement")
    statement.click()
    wait_for(
        driver, lambda d: attr(d, "#bureau-statement", "data-statement") == name, "the statement"
    )
    shown = int(attr(driver, "#bureau-statement .statement-amount", "data-fen") or -1)
    from ledger.usecases.views import statements

    assert shown == statements.statement(service.ledger.refresh(), name)["totals"]["amount_fen"]
    assert driver.find_elements(
        By.CSS_SELECTOR, f"#bureau-statements button[data-href='/v1/statements/{name}.xlsx']"
    )
    screenshot(driver, "bureau")
    # an entity of the table opens as its grantee would see it
    click(driver, f"#bureau-entities a[href='#grantee?uscc={world['grantee']}']")
    wait_for(driver, lambda d: attr(d, "#grantee-chart-total", "data-fen"), "the entity's view")
    assert world["grantee"] in text_of(driver, "#grantee-entity")
    assert attr(driver, "#grantee-chart-total", "data-fen") == attr(
        driver, "#grantee-used-total", "data-fen"
    )
    assert page_errors(driver) == []


# --- the auditor -----------------------------------------------------------------------------


def test_auditor_pins_a_key_checks_a_proof_and_is_warned_of_another_key(
    offline: Any,
    base_url: str,
    world: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from selenium.webdriver.common.by import By

    driver, service = offline, world["service"]
    sign_in(driver, base_url, "auditor", world["tokens"]["auditor"])
    served = service.ledger.keys.log.verifier.vkey
    wait_for(driver, lambda d: text_of(d, "#cp-key") == served, "the served key")
    click(driver, "#pin-served")
    wait_for(driver, lambda d: attr(d, "#pin-state", "data-pinned") == "yes", "the pin")
    assert driver.execute_script("return localStorage.getItem('suanli.pinnedLogKey')") == served
    assert not driver.find_element(By.ID, "key-alarm").is_displayed()
    verdict, shown = verify(driver, 5)
    assert verdict == "ok", shown
    # entries page by kind
    wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#audit-kind option[value='claim']"),
        "the kinds",
    )
    driver.find_element(By.CSS_SELECTOR, "#audit-kind option[value='claim']").click()
    wait_for(driver, lambda d: row_kinds(d) == {"claim"}, "claims only")
    click(driver, "#audit-next")
    wait_for(driver, lambda d: attr(d, "#audit-page", "data-page") == "2", "page 2 of claims")
    screenshot(driver, "auditor-pinned")
    # the whole-log download: its signed checkpoint first, then every entry of that tree
    text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.suanli.logFileText().then(done, (e) => done('error: ' + e));"
    )
    lines = [json.loads(line) for line in text.splitlines()]
    signed = open_checkpoint(lines[0]["checkpoint"], service.ledger.keys.log.verifier)
    entries = [base64.b64decode(line["data"]) for line in lines[1:]]
    assert [line["index"] for line in lines[1:]] == list(range(signed.size))
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries]) == signed.root
    # ... and suanli audit verify accepts the file as the page saves it, with the pinned key
    saved = tmp_path / f"suanli-log-{signed.size}.jsonl"
    saved.write_text(text, encoding="utf-8")
    (tmp_path / "key").write_text(served + "\n")
    code = run(cli_app, ["audit", "verify", "--source", str(saved), "--no-progress",
                         "--key-file", str(tmp_path / "key"), "--json"])  # fmt: skip
    verdict = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, verdict
    assert verdict["ok"] is True and verdict["entries"] == signed.size, verdict
    # another key pinned (as if the server had swapped its key): loud warning, ✘ signatures
    other = Signer.generate(service.ledger.origin).verifier.vkey
    driver.find_element(By.ID, "pin-input").send_keys(other)
    click(driver, "#pin-button")
    wait_for(driver, lambda d: attr(d, "#key-alarm", "data-state") == "mismatch", "the alarm")
    assert driver.find_element(By.ID, "key-alarm").is_displayed()
    assert "✘" in text_of(driver, "#cp-sig")
    verdict, _ = verify(driver, 5)
    assert verdict == "fail"
    driver.execute_script("document.getElementById('key-alarm').scrollIntoView()")
    screenshot(driver, "auditor-key-mismatch")
    click(driver, "#unpin")
    wait_for(driver, lambda d: attr(d, "#pin-state", "data-pinned") == "no", "unpinned")


# --- offline API docs ------------------------------------------------------------------------


def test_api_docs_render_offline(offline: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver = offline
    for path, ready, shot in (
        ("/docs", ".swagger-ui .opblock", "docs-swagger"),
        ("/redoc", "[role=menuitem], .menu-content li", "docs-redoc"),
    ):
        driver.get(base_url + path)
        wait_for(
            driver,
            lambda d, r=ready: len(d.find_elements(By.CSS_SELECTOR, r)) > 10,
            f"{path} rendered",
        )
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)"
        )
        assert any(u.startswith(base_url + "/docs/assets/") for u in loaded), loaded
        # anything else (ReDoc's logo on its maker's CDN) is refused by the page's CSP
        refused = " ".join(e["message"] for e in driver.get_log("browser"))
        outside = [u for u in loaded if not u.startswith(base_url)]
        assert all(u in refused and "Content Security Policy" in refused for u in outside), (
            outside,
            refused,
        )
        screenshot(driver, shot)
