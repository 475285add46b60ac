#!/usr/bin/env python3
"""The web console in a real browser (Debian's headless chromium through chromium-driver).

Started by `tests/tests/console.rs` against a private tms-api and tms-worker, with:
  TMS_CONSOLE_URL        the api's origin, e.g. http://127.0.0.1:41234
  TMS_CONSOLE_EMAIL / TMS_CONSOLE_PASSWORD   an admin's credentials
  TMS_CONSOLE_FIXTURES   JSON: {"live": wf id, "slow": wf id, "flaky": wf id, "scheduled": wf id,
                         "ticker": run id,
                         "viewer": a viewer's email (same password)}
  TMS_CONSOLE_SIGNALS    a directory: this script creates `restart-api` in it, and the test
                         restarts the api (dropping every connection) and creates `api-restarted`
  TMS_TEST_AXE_JS        path of axe-core's axe.min.js
  TMS_TEST_CHROMIUM / TMS_TEST_CHROMEDRIVER   (default /usr/bin/chromium, /usr/bin/chromedriver)

Exits 0 when every check passed; prints the measured figures as `FIGURE name value` lines.
"""

import json
import os
import sys
import time
from urllib.parse import urlparse

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["TMS_CONSOLE_URL"].rstrip("/")
EMAIL = os.environ["TMS_CONSOLE_EMAIL"]
PASSWORD = os.environ["TMS_CONSOLE_PASSWORD"]
FIX = json.loads(os.environ["TMS_CONSOLE_FIXTURES"])
AXE = open(os.environ["TMS_TEST_AXE_JS"], encoding="utf-8").read()
SIGNALS = os.environ["TMS_CONSOLE_SIGNALS"]
ORIGIN = urlparse(BASE)
T = 45  # seconds any one condition may take


def log(*a):
    print(*a, flush=True)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("TMS_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=os.environ.get("TMS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


class Checks:
    def __init__(self, driver):
        self.d = driver
        self.requests = []
        self.errors = []

    def wait(self, cond, timeout=T, what="condition"):
        try:
            # Elements are replaced as live updates arrive: a stale one is looked up again.
            return WebDriverWait(self.d, timeout, poll_frequency=0.05,
                                 ignored_exceptions=(NoSuchElementException,
                                                     StaleElementReferenceException)).until(cond)
        except Exception as e:
            log(f"FAILED waiting for {what} on {self.d.current_url}: {type(e).__name__}")
            log(self.d.find_element(By.TAG_NAME, "body").text[:3000])
            raise

    def by(self, testid):
        return (By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def text_is(self, testid, text):
        return self.wait(EC.text_to_be_present_in_element(self.by(testid), text),
                         what=f"{testid} = {text}")

    def status_is(self, status):
        loc = self.by("run-status")

        def ok(d):
            els = d.find_elements(*loc)
            return bool(els) and els[0].text.strip() == status

        self.wait(ok, what=f"run-status {status}")

    def drain_logs(self):
        """Collects the network requests and console errors logged since the last call."""
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            params = msg.get("params", {})
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif msg.get("method") == "Network.webSocketCreated":
                self.requests.append(params["url"])
        for entry in self.d.get_log("browser"):
            if entry["level"] == "SEVERE":
                self.errors.append(entry["message"])

    def axe(self, page):
        self.d.execute_script(AXE)
        result = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
        bad = [v for v in result if v["impact"] in ("critical", "serious")]
        for v in result:
            log(f"axe {page}: {v['impact']} {v['id']}: {v['help']} {v['nodes']}")
        assert not bad, f"axe found critical/serious violations on {page}: {bad}"

    def no_token_in_storage(self):
        stored = self.d.execute_script(
            "const all = {}; for (const s of [localStorage, sessionStorage])"
            " for (let i = 0; i < s.length; i++) all[s.key(i)] = s.getItem(s.key(i));"
            " return JSON.stringify(all);")
        assert "eyJ" not in stored and "tms_" not in stored.lower(), f"token-like data in storage: {stored}"


def open_run_from_workflow(c, wf):
    """Starts a run with the workflow page's button; returns the run page's path."""
    c.d.get(f"{BASE}/ui/workflows/{wf}")
    c.wait(EC.element_to_be_clickable(c.by("trigger-run")), what="trigger-run").click()
    c.wait(EC.url_contains("/ui/runs/"), what="run page")
    c.wait(EC.presence_of_element_located(c.by("run-status")), what="run-status")
    return urlparse(c.d.current_url).path


def main():
    d = browser()
    c = Checks(d)
    try:
        # 1. Signing in: a refusal first, then the real password. A deep link survives both.
        d.get(f"{BASE}/ui/runs/{FIX['ticker']}")
        c.wait(EC.url_contains("/ui/login"), what="redirect to login")
        email = c.wait(EC.element_to_be_clickable((By.NAME, "email")), what="email input")
        c.axe("login")
        email.send_keys(EMAIL)
        d.find_element(By.NAME, "password").send_keys("not-the-password")
        d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        c.text_is("login-error", "UNAUTHENTICATED")
        d.find_element(By.NAME, "password").send_keys(PASSWORD + "\n")

        # 2. Lands on the deep-linked run: time from opening a run page to its first live update.
        c.wait(EC.url_contains(f"/ui/runs/{FIX['ticker']}"), what="back to the run")
        c.status_is("RUNNING")
        c.no_token_in_storage()
        started = time.monotonic()
        d.get(f"{BASE}/ui/runs/{FIX['ticker']}")  # a reload keeps the session
        live = c.by("live-state")
        c.wait(lambda d: int(d.find_element(*live).get_attribute("data-events") or 0) >= 1,
               what="a live event")
        wall_ms = (time.monotonic() - started) * 1000
        el = d.find_element(*live)
        log(f"FIGURE first_live_update_ms {wall_ms:.0f}")
        log(f"FIGURE first_live_update_in_page_ms {el.get_attribute('data-first-event-ms')}")
        log(f"FIGURE subscription_live_in_page_ms {el.get_attribute('data-live-ms')}")
        c.axe("run")

        # 2b. The api goes away mid-run: the page reconnects and resumes with afterSeq, with no
        # event missed or repeated.
        c.drain_logs()
        seen = len(c.errors)
        before = int(el.get_attribute("data-last-seq") or 0)
        open(os.path.join(SIGNALS, "restart-api"), "w").close()
        c.wait(lambda d: os.path.exists(os.path.join(SIGNALS, "api-restarted")), timeout=60,
               what="the api restarted")
        c.wait(lambda d: int(d.find_element(*live).get_attribute("data-reconnects") or 0) >= 1
               and int(d.find_element(*live).get_attribute("data-last-seq") or 0) > before + 2,
               what="events after reconnecting")
        el = d.find_element(*live)
        assert el.get_attribute("data-gaps") == "0", f"events missed: {el.get_attribute('data-gaps')}"
        # While the api was down the page's requests were refused (or, for one in flight when
        # the process was killed, reset), as they should be: only those errors are expected in
        # this window.
        c.drain_logs()
        gone = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET", "ERR_EMPTY_RESPONSE")
        c.errors[seen:] = [e for e in c.errors[seen:] if not any(g in e for g in gone)]
        log(f"resumed after an api restart: seq {before} -> {el.get_attribute('data-last-seq')},"
            f" reconnects {el.get_attribute('data-reconnects')}")
        # Usable at a phone's width: nothing wider than the screen but scrollable parts.
        d.set_window_size(390, 844)
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the run page is {width}px wide at 390px"
        c.axe("run at 390px")
        d.set_window_size(1280, 900)
        c.drain_logs()

        # 3. A run goes from RUNNING to SUCCEEDED without a reload; a step's log is readable.
        path = open_run_from_workflow(c, FIX["live"])
        marker = d.execute_script("const m = document.createElement('i'); m.id = 'no-reload';"
                                  " document.body.append(m); return 1;")
        c.status_is("RUNNING")
        c.status_is("SUCCEEDED")
        assert d.find_elements(By.ID, "no-reload"), "the page was reloaded"
        assert marker == 1
        task = d.find_element(*c.by("task-greet"))
        assert task.get_attribute("data-status") == "SUCCEEDED", task.get_attribute("data-status")
        task.find_element(By.TAG_NAME, "button").click()
        c.text_is("step-log", "hello from greet")
        assert d.find_element(*c.by("run-percent")).text == "100%"
        log(f"live run ok: {path}")

        # 4. Cancel a `sleep 600` run from the page.
        cancelled = open_run_from_workflow(c, FIX["slow"])
        c.wait(lambda d: d.find_element(*c.by("task-nap")).get_attribute("data-status") == "RUNNING",
               what="nap RUNNING")
        c.wait(EC.element_to_be_clickable(c.by("cancel-run")), what="cancel-run").click()
        c.status_is("CANCELLED")
        c.wait(lambda d: d.find_element(*c.by("task-nap")).get_attribute("data-status") == "CANCELLED",
               what="nap CANCELLED")
        assert not d.find_element(*c.by("cancel-run")).is_displayed()

        # 5. Retry a failed run (from the failed step) and see the retried run succeed.
        open_run_from_workflow(c, FIX["flaky"])
        c.status_is("FAILED")
        c.wait(lambda d: d.find_element(*c.by("task-flaky")).get_attribute("data-status") == "FAILED",
               what="flaky FAILED")
        c.wait(EC.element_to_be_clickable(c.by("retry-run")), what="retry-run").click()
        c.status_is("SUCCEEDED")
        c.wait(lambda d: d.find_element(*c.by("task-flaky")).get_attribute("data-status") == "SUCCEEDED",
               what="flaky SUCCEEDED after the retry")
        c.wait(lambda d: d.find_element(*c.by("task-flaky")).find_elements(By.TAG_NAME, "td")[1].text == "2",
               what="attempt 2")

        # 5b. The schedule toggle turns a workflow's schedule on and off.
        d.get(f"{BASE}/ui/workflows/{FIX['scheduled']}")
        toggle = c.by("schedule-toggle")
        c.wait(EC.element_to_be_clickable(toggle), what="schedule-toggle").click()
        c.wait(lambda d: d.find_element(*toggle).get_dom_attribute("aria-pressed") == "true", what="schedule on")
        c.wait(EC.element_to_be_clickable(toggle), what="schedule-toggle again").click()
        c.wait(lambda d: d.find_element(*toggle).get_dom_attribute("aria-pressed") == "false", what="schedule off")

        # 5c. The runs list pages with Relay cursors and filters by status.
        d.get(f"{BASE}/ui/runs?first=2")
        rows = (By.CSS_SELECTOR, "tbody tr[data-run]")
        c.wait(lambda d: len(d.find_elements(*rows)) == 2, what="a first page of 2 runs")
        c.wait(EC.element_to_be_clickable(c.by("runs-more")), what="runs-more").click()
        c.wait(lambda d: len(d.find_elements(*rows)) == 4, what="a second page")
        ids = [r.get_attribute("data-run") for r in d.find_elements(*rows)]
        assert len(set(ids)) == 4, ids
        d.get(f"{BASE}/ui/runs?status=CANCELLED")
        c.wait(lambda d: len(d.find_elements(*rows)) == 1
               and d.find_element(*rows).get_attribute("data-run") in cancelled, what="the cancelled run")

        # 6. The other pages render without errors, and pass axe too.
        for page, needle in (("/ui/runs?status=SUCCEEDED", "Runs"), ("/ui/workflows", "Workflows"),
                             (f"/ui/workflows/{FIX['live']}", "Versions"), ("/ui/monitoring", "Queue")):
            d.get(BASE + page)
            c.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), needle), what=page)
            c.wait(lambda d: "Loading" not in d.find_element(By.TAG_NAME, "main").text, what=f"{page} loaded")
            c.axe(page)
        c.wait(lambda d: "UNAVAILABLE" not in d.find_element(By.TAG_NAME, "main").text
               and "Loading" not in d.find_element(By.TAG_NAME, "main").text, what="monitoring loaded")
        assert not d.find_elements(By.CSS_SELECTOR, "main .error"), d.find_element(By.TAG_NAME, "main").text

        # 7. Sign out: back to the login page, and a reload does not bring the session back.
        c.wait(EC.element_to_be_clickable(c.by("sign-out")), what="sign-out").click()
        c.wait(EC.presence_of_element_located((By.NAME, "password")), what="login after sign-out")
        d.get(f"{BASE}/ui/runs")
        c.wait(EC.url_contains("/ui/login"), what="still signed out after a reload")
        c.wait(EC.presence_of_element_located((By.NAME, "password")), what="login form")

        # 7b. A viewer sees runs but neither Cancel nor Retry.
        d.find_element(By.NAME, "email").send_keys(FIX["viewer"])
        d.find_element(By.NAME, "password").send_keys(PASSWORD + "\n")
        c.wait(EC.url_contains("/ui/runs"), what="viewer signed in")
        for path, status in ((cancelled, "CANCELLED"), (f"/ui/runs/{FIX['ticker']}", "RUNNING")):
            d.get(BASE + path)
            c.status_is(status)
            assert not d.find_element(*c.by("cancel-run")).is_displayed(), path
            assert not d.find_element(*c.by("retry-run")).is_displayed(), path
        c.wait(EC.element_to_be_clickable(c.by("sign-out")), what="sign-out").click()
        c.wait(EC.presence_of_element_located((By.NAME, "password")), what="login after sign-out")
        c.drain_logs()

        # 8. GraphiQL loads from this origin only.
        d.get(f"{BASE}/graphql")
        c.wait(EC.presence_of_element_located((By.CSS_SELECTOR, ".graphiql-container")), what="GraphiQL")
        c.wait(EC.presence_of_element_located((By.CSS_SELECTOR, ".graphiql-query-editor, .graphiql-editor")),
               what="GraphiQL editor")
        c.drain_logs()

        # 9. Every request stayed on the api's origin; no console errors anywhere.
        foreign = []
        for url in c.requests:
            u = urlparse(url)
            if u.scheme == "data":
                continue
            if (u.hostname, u.port) != (ORIGIN.hostname, ORIGIN.port) or u.scheme not in ("http", "ws"):
                foreign.append(url)
        log(f"{len(c.requests)} requests, all checked")
        assert not foreign, f"requests left the api's origin: {foreign}"
        assert not c.errors, f"console errors: {c.errors}"
        log("CONSOLE BROWSER TEST PASSED")
        return 0
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
