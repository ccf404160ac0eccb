"""The web page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

The real app is served by uvicorn on a free loopback port; Selenium drives Chromium through
``/usr/bin/chromedriver`` (nothing is downloaded). The auditor view fetches the latest signed
checkpoint, checks its Ed25519 signature, then checks an entry's RFC 9162 inclusion proof in
the browser with WebCrypto and shows ✔. Then the network is made to lie, by wrapping the
page's ``fetch``: a proof hash flipped, an entry's bytes rewritten, a proof for another tree
size than the checkpoint's, and the page must show ✘ each time.

Outside CI a machine without Chromium skips these tests; under ``CI=true`` it fails them.
Install: ``apt-get install -y chromium chromium-driver`` (and ``fonts-noto-cjk`` for Chinese
in screenshots). Screenshots go to ``$SUANLI_SCREENSHOTS`` (default: the system temp dir).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.bootstrap import Service, open_service
from api.http.app import create_app
from api.settings import Settings
from ledger import merkle
from ledger.keys import Signer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SUANLI_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SUANLI_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("SUANLI_SCREENSHOTS", Path(__file__).parent / "artifacts"))
WAIT = 20.0


def _need_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# --- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A log of a few hundred entries in several commits (so several signed checkpoints)."""
    data = tmp_path_factory.mktemp("browser")
    service = open_service(Settings(data_dir=data / "data", db=f"sqlite:///{data / 'ledger.db'}"))
    ledger = service.ledger
    for batch in range(5):
        with ledger.transaction() as tx:
            for i in range(60):
                vkey = Signer.generate(f"web{batch}-{i}").verifier.vkey
                tx.append(
                    tx.sign("key.register", {"vkey": vkey, "roles": ["service"]}, ledger.keys.log)
                )
            tx.append(
                tx.sign("log.note", {"text": f"第 {batch} 批 batch {batch}"}, ledger.keys.log)
            )
    yield service
    service.close()


@pytest.fixture(scope="module")
def base_url(service: Service) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(service), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _need_chromium()
    with chromium_driver(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@contextmanager
def chromium_driver(profile: Path, *extra_flags: str) -> Iterator[Any]:
    """Headless Chromium driven by chromedriver, with its own profile dir (and flags)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # runs as root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1700",
        "--lang=zh-CN",
        *extra_flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message=what)
    except TimeoutException:
        shot = screenshot(driver, "timeout")
        body = driver.execute_script("return document.querySelector('main').innerText")
        logs = [e["message"] for e in driver.get_log("browser")]
        pytest.fail(
            f"timed out waiting for {what}; screenshot {shot}\npage: {body}\nconsole: {logs}"
        )


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def verify(driver: Any, index: int, size: int | None = None) -> tuple[str, str]:
    """Fill the form, press 验证 Verify, wait for the verdict; (verdict, page text of result)."""
    from selenium.webdriver.common.by import By

    driver.execute_script("delete document.getElementById('verify-result').dataset.verdict")
    for field, value in (("verify-index", index), ("verify-size", size)):
        box = driver.find_element(By.ID, field)
        box.clear()
        if value is not None:
            box.send_keys(str(value))
    driver.find_element(By.ID, "verify-button").click()
    verdict = wait_for(
        driver,
        lambda d: d.find_element(By.ID, "verify-result").get_attribute("data-verdict"),
        f"a verdict for entry {index}",
    )
    return str(verdict), text_of(driver, "#verify-result")


def screenshot(driver: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"suanli-{name}.png"
    driver.save_screenshot(str(path))
    return path


def page_errors(driver: Any) -> list[str]:
    """Console errors other than the HTTP statuses the page handles (401, 404 ...)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


# The network made to lie: wrap the page's fetch, steered by window.__tamper.
TAMPER = """
if (!window.__realFetch) {
  window.__realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    let url = typeof input === "string" ? input : input.url;
    const mode = window.__tamper;
    const json = (body) => new Response(JSON.stringify(body),
      {status: 200, headers: {"content-type": "application/json"}});
    const flip = (b64, at) => {
      const raw = atob(b64);
      const i = at < 0 ? raw.length + at : at;
      return btoa(raw.slice(0, i) + String.fromCharCode(raw.charCodeAt(i) ^ 1) + raw.slice(i + 1));
    };
    if (mode === "size" && url.startsWith("/v1/log/proof/inclusion")) {
      const u = new URL(url, location.href);
      u.searchParams.set("size", String(Number(u.searchParams.get("size")) - 1));
      url = u.pathname + u.search;
    }
    const response = await window.__realFetch(url, init);
    if (mode === "proof" && url.startsWith("/v1/log/proof/inclusion")) {
      const body = await response.json();
      body.proof[body.proof.length - 1] = flip(body.proof[body.proof.length - 1], 5);
      return json(body);
    }
    if (mode === "entry" && url.startsWith("/v1/log/entries/")) {
      const body = await response.json();
      body.data = flip(body.data, -20);
      return json(body);
    }
    return response;
  };
}
"""


def test_auditor_checks_inclusion_proofs_in_the_browser(
    browser: Any, base_url: str, service: Service
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(base_url + "/#auditor")
    size = service.ledger.store.size()
    wait_for(driver, lambda d: text_of(d, "#cp-size") == str(size), "the latest checkpoint")
    assert text_of(driver, "#cp-origin") == service.ledger.origin
    read = service.ledger.store.node_reader()
    root = merkle.root_at(size, read)
    assert text_of(driver, "#cp-root") == base64.b64encode(root).decode()
    # Chromium has Ed25519 in WebCrypto: the checkpoint's signature is checked, not skipped.
    assert "✔" in text_of(driver, "#cp-sig"), text_of(driver, "#cp-sig")

    index = 137
    verdict, shown = verify(driver, index)
    assert verdict == "ok", shown
    assert text_of(driver, "#verify-mark") == "✔"
    leaf = merkle.leaf_hash(service.ledger.store.entries(index, index + 1)[0])
    assert base64.b64encode(leaf).decode() in shown  # the leaf hash the browser recomputed
    assert base64.b64encode(root).decode() in shown
    screenshot(driver, "auditor-ok")

    # Against an older signed checkpoint (the tree after the first batch).
    older = service.ledger.store.checkpoints(after=0, limit=2)[1][0]
    verdict, shown = verify(driver, 3, older)
    assert verdict == "ok", shown
    assert f"size {older}" in shown
    verdict, shown = verify(driver, older, older)  # not in that tree
    assert verdict == "fail"

    # Now the network lies; the browser must notice every time.
    driver.execute_script(TAMPER)
    for mode, why in (
        ("proof", "a proof hash flipped"),
        ("entry", "the entry's bytes rewritten"),
        ("size", "a proof for a different tree size than the checkpoint's"),
    ):
        driver.execute_script("window.__tamper = arguments[0]", mode)
        verdict, shown = verify(driver, index)
        assert verdict == "fail", f"{why}: {shown}"
        assert text_of(driver, "#verify-mark") == "✘"
        if mode == "proof":
            screenshot(driver, "auditor-tampered")
    driver.execute_script("window.__tamper = null")
    verdict, shown = verify(driver, index)
    assert verdict == "ok", shown  # the wrapper itself changes nothing when not lying
    assert driver.find_element(By.ID, "verify-result").is_displayed()
    assert page_errors(driver) == []


def test_auditor_signs_in_and_checks_listed_entries(
    browser: Any, base_url: str, service: Service
) -> None:
    from selenium.webdriver.common.by import By

    token, _ = service.tokens.create("auditor", label="browser")
    driver = browser
    driver.get(base_url + "/#auditor")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    box = wait_for(driver, lambda d: d.find_element(By.ID, "token"), "the sign-in box")
    box.send_keys(token)
    driver.find_element(By.ID, "signin-button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "audit-signed").is_displayed(), "audit lists")
    assert driver.execute_script("return sessionStorage.getItem('suanli.token')") == token
    keys = driver.find_elements(By.CSS_SELECTOR, "#audit-keys tbody tr")
    assert len(keys) == len(service.ledger.refresh().registry.keys)
    rows = driver.find_elements(By.CSS_SELECTOR, "#audit-entries tbody tr")
    assert len(rows) == 20  # a page of entries, oldest first
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [str(i) for i in range(20)]
    # only the log.note entries: the last one is the newest entry of the log
    driver.find_element(By.CSS_SELECTOR, "#audit-kind option[value='log.note']").click()
    size = service.ledger.store.size()
    wait_for(
        driver,
        lambda d: (
            d.execute_script(
                "return [...document.querySelectorAll('#audit-entries tbody tr')]"
                ".map((r) => r.cells[1].textContent)"
            )
            == ["log.note"] * 5
        ),
        "the log.note entries",
    )
    last = driver.find_elements(By.CSS_SELECTOR, "#audit-entries tbody tr")[-1]
    assert last.find_elements(By.TAG_NAME, "td")[0].text == str(size - 1)
    last.find_element(By.TAG_NAME, "button").click()
    wait_for(
        driver,
        lambda d: (
            d.find_element(By.ID, "verify-result").get_attribute("data-index") == str(size - 1)
            and d.find_element(By.ID, "verify-result").get_attribute("data-verdict") == "ok"
        ),
        "the listed entry verified",
    )
    screenshot(driver, "auditor-signed-in")
    # Sign out: the token is gone from sessionStorage and the lists are hidden.
    driver.find_element(By.ID, "signout").click()
    assert driver.execute_script("return sessionStorage.getItem('suanli.token')") is None
    wait_for(driver, lambda d: not d.find_element(By.ID, "audit-signed").is_displayed(), "hidden")
    assert page_errors(driver) == []


def test_signed_note_checks_in_the_browser(browser: Any, base_url: str) -> None:
    """The page's Ed25519 signed-note check against Python-signed checkpoints, with a key whose
    base64 contains '+' (a page that split the key string at every '+' failed on these)."""
    from ledger.checkpoint import Checkpoint, sign_checkpoint

    driver = browser
    driver.get(base_url + "/#auditor")
    wait_for(driver, lambda d: d.execute_script("return !!window.suanli"), "the page's script")
    n = 0
    while True:
        signer = Signer.generate("example.org/log")
        if "+" in signer.verifier.vkey.split("+", 2)[2]:
            break
        n += 1
        assert n < 1000
    other = Signer.generate("example.org/log")
    note = sign_checkpoint(Checkpoint("example.org/log", 7, bytes(range(32))), signer)
    check = """
      const [note, vkey, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
      (async () => {
        const cp = window.suanli.parseCheckpoint(note);
        return [String(cp.size), cp.origin, await window.suanli.verifyNote(cp, vkey)];
      })().then(done, (e) => done(["error", String(e)]));
    """
    assert driver.execute_async_script(check, note, signer.verifier.vkey) == [
        "7",
        "example.org/log",
        "ok",
    ]
    assert driver.execute_async_script(check, note, other.verifier.vkey)[2] == "bad"
    forged = note.replace("\n7\n", "\n8\n")
    assert driver.execute_async_script(check, forged, signer.verifier.vkey)[2] == "bad"
