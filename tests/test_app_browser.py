"""The app end to end: `python app.py` on the real model, index and audit log, driven by headless Chromium.

A real browser (Debian's /usr/bin/chromium, installed by `make test`'s set-up, driven
by Playwright) signs in, asks for a shopper's next interest, sees a category, an
explanation and products, looks at the shopper tab, flags the answer in the audit tab
and finds the flag there; the population tab draws the migration Sankey and association
links. Plain HTTP checks prove that every route refuses a client that has not signed in.
Screenshots go to test-artifacts/ (or $LLMINT_ARTIFACTS).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "reviewer1", "correct horse battery"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _artifacts() -> Path:
    d = Path(os.environ.get("LLMINT_ARTIFACTS") or ROOT / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory):
    """`python app.py` in a subprocess on a free loopback port, with its own home and audit file."""
    home = tmp_path_factory.mktemp("apphome")
    port = _free_port()
    log = home / "app.log"
    env = {**os.environ, "LLMINT_HOME": str(home), "LLMINT_USERS": f"{USER}:{PASSWORD}",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("LLMINT_USERS_FILE", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--coalesce", "4"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"app.py did not start in 900 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(2)
        yield {"url": url, "home": home, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _status(url: str, method: str = "GET", data: bytes | None = None, opener=None,
            ctype: str = "application/json") -> int:
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_every_route_refuses_anonymous_clients(app_server) -> None:
    import http.cookiejar

    url = app_server["url"]
    form = "application/x-www-form-urlencoded"
    routes = ("/config", "/gradio_api/info", "/gradio_api/queue/status")
    for path in routes + ("/gradio_api/file=app.py",):
        assert _status(url + path) in (401, 403), path
    assert _status(url + "/gradio_api/queue/join", "POST", b'{"fn_index": 0, "data": [], "session_hash": "x"}') \
        in (401, 403)
    assert _status(url + "/gradio_api/call/chat", "POST", b'{"data": []}') in (401, 403, 404)
    # a wrong password does not sign in; the right one does, and then the same routes answer
    jar = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    assert _status(url + "/login", "POST", f"username={USER}&password=wrong".encode(), jar, form) in (400, 401)
    assert _status(url + "/config", opener=jar) in (401, 403)
    body = urllib.parse.urlencode({"username": USER, "password": PASSWORD}).encode()
    assert _status(url + "/login", "POST", body, jar, form) == 200
    for path in routes:
        assert _status(url + path, opener=jar) == 200, path


def test_sign_in_ask_flag_in_a_real_browser(app_server) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    shots = _artifacts()
    t0 = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=120_000)
        page.goto(app_server["url"])
        # sign in: a wrong password first, then the right one
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name=re.compile("login", re.I)).click()
        expect(page.get_by_text(re.compile("incorrect", re.I))).to_be_visible()
        page.get_by_label("username").fill(USER)  # the form clears it after a failed try
        page.get_by_label("password").fill(PASSWORD)
        page.get_by_role("button", name=re.compile("login", re.I)).click()
        expect(page.locator("#chatbot")).to_be_visible()

        # search-as-you-type over shopper ids
        box = page.locator("#shopper input")
        box.click()
        box.press_sequentially("94", delay=100)
        expect(page.get_by_role("option", name="943", exact=True)).to_be_visible()
        page.get_by_role("option", name="942", exact=True).click()

        # ask; the answer streams in: category, chart, explanation, products, cited events
        page.locator("#question textarea").fill("what is she likely to want next?")
        page.locator("#ask").click()
        answer = page.locator("#answer")
        expect(answer).to_contain_text("Next interest:", timeout=600_000)
        expect(page.locator("#products .llmint-card").first).to_be_visible()
        expect(page.locator("#timeline table")).to_be_visible()
        highlighted = sorted(int(t.strip("[]")) for t in page.locator("#timeline tr.cited td:first-child")
                             .all_inner_texts())
        text = answer.inner_text()
        category = re.search(r"Next interest: (.+?) \d+%", text).group(1).strip()
        assert category, text
        assert page.locator("#answer .llmint-expl").inner_text().strip(), "no explanation shown"
        audit_id = re.search(r"audit id\s+(\S+)", text).group(1)
        page.screenshot(path=str(shots / "app-chat.png"), full_page=True)

        # a follow-up keeps the shopper: "why?" answers about the same prediction
        page.locator("#question textarea").fill("why?")
        page.locator("#ask").click()
        expect(page.locator("#chatbot")).to_contain_text(f"Why {category}?")

        # bad input gives a readable message, never a traceback
        page.get_by_text("Or paste a history").click()
        page.locator("#pasted textarea").fill('{"item_id": "no-such-item", "action": "view", "timestamp": 1}')
        page.locator("#question textarea").fill("what next?")
        page.locator("#ask").click()
        expect(page.locator("#chatbot")).to_contain_text("no-such-item")
        assert "Traceback" not in page.content()
        page.locator("#pasted textarea").fill("")

        # shopper tab
        page.get_by_role("tab", name="Shopper").click()
        page.locator("#show-shopper").click()
        expect(page.locator("#shopper-summary")).to_contain_text("942", timeout=120_000)
        expect(page.locator("#shopper-summary")).to_contain_text("Recent interest")
        page.screenshot(path=str(shots / "app-shopper.png"), full_page=True)

        # audit tab: find the row, flag it with a note, find the flag
        page.get_by_role("tab", name="Audit").click()
        page.locator("#refresh").click()
        expect(page.locator("#audit-table")).to_contain_text(audit_id)
        page.locator("#audit-id textarea, #audit-id input").first.fill(audit_id)
        page.locator("#note textarea, #note input").first.fill("explanation cites nothing specific")
        page.locator("#flag").click()
        expect(page.locator("#review-msg")).to_contain_text(f"flagged by {USER}")
        expect(page.locator("#record")).to_contain_text("explanation cites nothing specific")
        page.locator("#status-filter input").click()
        page.get_by_role("option", name="flagged", exact=True).click()
        page.locator("#refresh").click()
        expect(page.locator("#audit-count")).to_contain_text("1 rows match")
        expect(page.locator("#audit-table")).to_contain_text(audit_id)
        expect(page.locator("#audit-table")).to_contain_text("flagged")
        page.locator("#show-record").click()
        expect(page.locator("#record")).to_contain_text(category)
        page.screenshot(path=str(shots / "app-audit.png"), full_page=True)
        browser.close()
    elapsed = time.perf_counter() - t0
    (shots / "app-browser-test.txt").write_text(f"browser test {elapsed:.1f} s (server start excluded)\n")

    # the audit file on disk has the flag, signed by the signed-in user
    from llmint.audit import AuditLog

    with AuditLog(app_server["home"] / "audit.sqlite") as log:
        row = log.get(audit_id)
        assert row.status == "flagged"
        assert [r.reviewer for r in row.reviews] == [USER]
        assert row.top_category == category
        # the timeline highlights exactly the events the served explanation cites
        assert highlighted == sorted(row.output["explanation"]["cited"])


def _sign_in(page, url: str) -> None:
    """Open the app and sign in as the test reviewer."""
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_label("username").fill(USER)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("login", re.I)).click()
    expect(page.locator("#chatbot")).to_be_visible()


def test_population_tab_in_a_real_browser(app_server) -> None:
    """The population tab draws the dataset's migration Sankey and lists its strongest association links."""
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=300_000)
        _sign_in(page, app_server["url"])
        page.get_by_role("tab", name="Population").click()
        page.locator("#show-population").click()
        expect(page.locator("#population-flows img")).to_be_visible()
        expect(page.locator("#population-summary")).to_contain_text("association links")
        expect(page.locator("#population-links")).to_contain_text("transition")
        assert "Traceback" not in page.content()
        page.screenshot(path=str(_artifacts() / "app-population.png"), full_page=True)
        browser.close()


def test_signed_in_api_route_and_http_load(app_server, tmp_path) -> None:
    """The /predict API route serves a typed prediction with one audit row; a short bounded HTTP load
    test (4 clients, 10 s, loopback) has no errors and exactly one audit row per request."""
    import json

    from gradio_client import Client

    from llmint import loadtest

    client = Client(app_server["url"], auth=(USER, PASSWORD), verbose=False, analytics_enabled=False)
    ids = client.predict(api_name="/shoppers")
    assert "1" in ids and len(ids) == 943
    p = client.predict("1", False, api_name="/predict")
    assert p["user_id"] == "1" and p["top_category"] == p["top"][0]["category"]
    assert abs(sum(p["distribution"].values()) - 1.0) < 1e-6 and p["explanation"] is None
    with pytest.raises(Exception, match="unknown user"):
        client.predict("no-such-shopper", False, api_name="/predict")
    path = loadtest.main(["--url", app_server["url"], "--user", USER, "--password", PASSWORD, "--audit",
                          str(app_server["home"] / "audit.sqlite"), "--clients", "4", "--seconds", "10",
                          "--out", str(tmp_path)])
    report = json.loads(path.read_text())
    assert report["ok"] >= 4 and report["errors"] == {}
    assert report["audit"]["ok"] and report["audit"]["rows_written"] == report["ok"]
    assert PASSWORD not in path.read_text()
    # --coalesce 4: concurrent API requests shared scoring passes; a pass of n wrote n rows saying so
    with closing(sqlite3.connect(app_server["home"] / "audit.sqlite")) as db:
        sizes = Counter(json.loads(d)["score_batch"] for (d,) in db.execute("SELECT decoding_json FROM predictions"))
    assert all(isinstance(n, int) and 0 <= n <= 4 for n in sizes), sizes
    assert all(c % n == 0 for n, c in sizes.items() if n > 1), sizes
    assert max(sizes) >= 2, sizes
