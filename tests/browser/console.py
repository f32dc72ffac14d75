#!/usr/bin/env python3
"""The DPO console in a real browser: Debian's headless chromium, driven
through its chromedriver by Python's selenium (issue 17, "Done means").

tests/console_browser.rs sets up the world (a guard holding three mails
sent by a real SMTP client, an aiosmtpd upstream, a dpo and a viewer
account) and runs this script against the guard's console; the Rust test
then checks what the clicks changed (the upstream's message, the
incident's steps). tests/console.rs proves the same flows over raw HTTP;
this one proves them with what a person has: a browser in German, its
cookies, its forms, its escaping and its CSP.

What it does, in this order (each check prints one "ok NAME" line, which
the Rust test requires, so a check that stops running cannot pass):
  login       the dpo logs in through the form, sees the overview
  screenshots the overview, the queue and the incident (German, 1280x900)
  release     "Als Bcc senden" on the held mail; the page shows the
              `released` step with the user's name; one mail waits less
  escaped     the subject <script>alert(1)</script> is text, no dialog
  csrf        a POST with the browser's session but no CSRF token: 403,
              and the incident stays held
  logout      the logout button; the old page asks for a login again
  throttled   five wrong passwords, then the right one: refused
  viewer      a viewer in a fresh browser sees no release button
  sender      the sender's link from its hold notice, without an account:
              its page offers Bcc (never the original); the click sends

Usage: console.py --url URL --password PW --dpo NAME --viewer NAME
         --release ID --hostile ID --sender-link PATH --screenshots DIR --debug DIR
         [--chromium PATH] [--chromedriver PATH]
On a failure it saves the page as seen (PNG and HTML) in --debug, prints
the error and exits 1.
"""

import argparse
import sys
import tempfile
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Every wait is bounded: a page that never comes fails the run.
WAIT = 15

# Chromium as root in a container on a closed network: no sandbox (root),
# no GPU, /tmp instead of a small /dev/shm, and none of the background
# traffic (updates, sync, field trials, QUIC probes) that would flood the
# network with connection attempts that can only fail.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--password-store=basic",
    "--lang=de-DE",
    "--window-size=1280,900",
]


class Console:
    """One browser session against the console (its own profile)."""

    def __init__(self, args, profiles):
        self.args = args
        opts = Options()
        opts.binary_location = args.chromium
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        # A fresh profile per session: no cookie survives from another run.
        opts.add_argument("--user-data-dir=" + tempfile.mkdtemp(dir=profiles))
        # --lang sets the UI; the Accept-Language the console reads comes
        # from this preference.
        opts.add_experimental_option(
            "prefs",
            {
                "intl.accept_languages": "de-DE,de",
                "credentials_enable_service": False,
                "profile.password_manager_enabled": False,
            },
        )
        # An explicit driver path: selenium's own manager would try to
        # download one.
        service = Service(executable_path=args.chromedriver)
        self.d = webdriver.Chrome(service=service, options=opts)
        self.d.set_page_load_timeout(WAIT)
        # The screenshots are of the page at exactly 1280x900, whatever the
        # headless window adds around it.
        self.d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )

    def url(self, path):
        return self.args.url.rstrip("/") + path

    def get(self, path):
        self.d.get(self.url(path))

    def path(self):
        return urllib.parse.urlsplit(self.d.current_url).path

    def submit(self, button):
        """Clicks a form's button and waits for the next page."""
        old = self.d.find_element(By.TAG_NAME, "html")
        button.click()

        def gone(_):
            try:
                old.is_enabled()
                return False
            except StaleElementReferenceException:
                return True
            except WebDriverException as e:
                # Asked in the middle of the navigation (a form that posts
                # to its own URL, as the login does), chromedriver says
                # this instead of "stale": the old document is gone too.
                if "does not belong to the document" in str(e):
                    return True
                raise

        WebDriverWait(self.d, WAIT).until(gone)
        # The old document is gone once the new one commits; reading the
        # new one is safe only once it is parsed.
        WebDriverWait(self.d, WAIT).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def login(self, user, password):
        if self.path() != "/login":
            self.get("/login")
        self.d.find_element(By.NAME, "user").send_keys(user)
        self.d.find_element(By.NAME, "password").send_keys(password)
        self.submit(self.d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]"))

    def text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def h1(self):
        return self.d.find_element(By.TAG_NAME, "h1").text

    def release_buttons(self, incident):
        return self.d.find_elements(
            By.XPATH,
            f"//form[@action='/incidents/{incident}/release']//button",
        )

    def bcc_button(self, incident):
        return self.d.find_element(
            By.XPATH,
            f"//form[@action='/incidents/{incident}/release']"
            "[input[@name='how' and @value='bcc']]//button",
        )

    def no_dialog(self):
        try:
            alert = self.d.switch_to.alert
        except NoAlertPresentException:
            return True
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"a dialog is open: {text!r}")

    def shot(self, directory, name):
        path = Path(directory) / name
        if not self.d.save_screenshot(str(path)):
            raise AssertionError(f"no screenshot {path}")

    def debug(self, directory, name):
        """The page as the failing check saw it."""
        try:
            Path(directory, name + ".html").write_text(self.d.page_source)
            self.d.save_screenshot(str(Path(directory, name + ".png")))
            print(f"debug: {name} at {self.d.current_url} saved in {directory}", file=sys.stderr)
        except Exception as e:  # the browser may be gone; the error matters more
            print(f"debug: could not save {name}: {e}", file=sys.stderr)

    def quit(self):
        self.d.quit()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(name):
    print("ok", name, flush=True)


def post_without_csrf(args, cookies, path, form):
    """A POST from outside the page, with the browser's session cookie
    (HttpOnly: WebDriver still reads it) and no CSRF token: what a forged
    cross-site form would send if SameSite did not stop it. Returns the
    status."""
    jar = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
    req = urllib.request.Request(
        args.url.rstrip("/") + path,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Cookie": jar, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def get_with(args, cookies, path):
    """A GET with the browser's cookies: proves the copied session is
    valid, so the 403 above is the missing token and not a lost login."""
    jar = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
    req = urllib.request.Request(args.url.rstrip("/") + path, headers={"Cookie": jar})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        return urllib.parse.urlsplit(r.geturl()).path, r.read().decode()


def dpo_flow(c, args):
    rel, hostile = args.release, args.hostile

    # Not logged in: the console sends the browser to its login, in German.
    c.get("/")
    check(c.path() == "/login", f"not sent to the login: {c.d.current_url}")
    check(c.h1() == "Anmelden", f"login page not German: {c.h1()!r}")
    c.login(args.dpo, args.password)
    check(c.path() == "/", f"after login at {c.d.current_url}")
    check(c.h1() == "Übersicht", f"overview heading: {c.h1()!r}")
    check("Warten auf Entscheidung: 3" in c.text(), "three mails waiting:\n" + c.text())
    check(f"{args.dpo} (dpo)" in c.text(), "who is logged in")
    ok("login")
    c.shot(args.screenshots, "console-overview.png")

    # The queue through the navigation, then the incident by its link.
    c.submit(c.d.find_element(By.CSS_SELECTOR, "header nav a[href='/held']"))
    check(c.path() == "/held", f"queue at {c.d.current_url}")
    rows = c.d.find_elements(By.CSS_SELECTOR, "main tbody tr")
    check(len(rows) == 3, f"{len(rows)} rows in the queue")
    c.shot(args.screenshots, "console-held.png")
    c.submit(c.d.find_element(By.CSS_SELECTOR, f"main a[href='/incidents/{rel}']"))
    check(c.path() == f"/incidents/{rel}", f"incident at {c.d.current_url}")
    check(rel in c.h1(), f"incident heading: {c.h1()!r}")
    check("Subject:" in c.d.find_element(By.CSS_SELECTOR, "pre.headers").text, "held headers")
    # The record's fields fill the first screen; the picture is of what a
    # DPO decides on: the timeline, the header section as held, the
    # buttons. (Scrolling through WebDriver is not the page's script: the
    # CSP does not apply, and nothing on the page changes.)
    timeline = c.d.find_element(By.XPATH, "//h2[normalize-space()='Verlauf']")
    c.d.execute_script("arguments[0].scrollIntoView({block: 'start'})", timeline)
    c.shot(args.screenshots, "console-incident.png")
    ok("screenshots")

    button = c.bcc_button(rel)
    check(button.text == "Als Bcc senden", f"the bcc button says {button.text!r}")
    c.submit(button)
    check(c.path() == f"/incidents/{rel}", f"after the release at {c.d.current_url}")
    steps = [li.text for li in c.d.find_elements(By.CSS_SELECTOR, "ol.timeline li")]
    released = [s for s in steps if " released " in f" {s} "]
    check(released, "no released step in the timeline:\n" + "\n".join(steps))
    check(f"({args.dpo})" in released[0], f"not under the user's name: {released[0]!r}")
    check(not c.release_buttons(rel), "release still offered after the release")
    c.get("/")
    check("Warten auf Entscheidung: 2" in c.text(), "two mails left:\n" + c.text())
    ok("release")

    # The hostile subject: text in the queue and in the held headers, no
    # script element, no dialog.
    c.get("/held")
    cells = [td.text for td in c.d.find_elements(By.CSS_SELECTOR, "main tbody td")]
    check("<script>alert(1)</script>" in cells, f"the subject as text: {cells}")
    check(not c.d.find_elements(By.TAG_NAME, "script"), "a script element in the queue")
    c.no_dialog()
    c.get(f"/incidents/{hostile}")
    headers = c.d.find_element(By.CSS_SELECTOR, "pre.headers").text
    check("Subject: <script>alert(1)</script>" in headers, "subject in the headers:\n" + headers)
    check(not c.d.find_elements(By.TAG_NAME, "script"), "a script element on the incident")
    c.no_dialog()
    ok("escaped")

    # A POST without the CSRF token, with a session that is valid.
    cookies = c.d.get_cookies()
    check(any(k["name"] == "bccguard_session" for k in cookies), f"no session cookie: {cookies}")
    path, body = get_with(args, cookies, f"/incidents/{hostile}")
    check(path == f"/incidents/{hostile}" and hostile in body, f"the copied session: {path}")
    status = post_without_csrf(args, cookies, f"/incidents/{hostile}/release", {"how": "bcc"})
    check(status == 403, f"a POST without a CSRF token got {status}")
    c.d.refresh()
    check(c.release_buttons(hostile), "the incident is no longer held after the forged POST")
    ok("csrf")

    # Logout: the button, then the page from before asks for a login.
    before = c.path()
    c.submit(c.d.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
    check(c.path() == "/login", f"after logout at {c.d.current_url}")
    c.get(before)
    check(c.path() == "/login", f"{before} after logout at {c.d.current_url}")
    check(c.d.find_elements(By.CSS_SELECTOR, "form.login"), "no login form")
    ok("logout")

    # Five wrong passwords, then the right one: still refused.
    for i in range(5):
        c.login(args.dpo, "not the password " + str(i))
        check("Benutzer oder Passwort falsch." in c.text(), f"wrong password {i + 1}:\n" + c.text())
    c.login(args.dpo, args.password)
    check("Zu viele Fehlversuche" in c.text(), "not throttled:\n" + c.text())
    check(c.d.get_cookie("bccguard_session") is None, "a session while throttled")
    check(c.path() == "/login", f"throttled at {c.d.current_url}")
    ok("throttled")


def viewer_flow(c, args):
    c.login(args.viewer, args.password)
    check(c.path() == "/", f"viewer after login at {c.d.current_url}")
    c.get(f"/incidents/{args.hostile}")
    check(args.hostile in c.h1(), f"viewer's incident heading: {c.h1()!r}")
    check(not c.release_buttons(args.hostile), "a release button for a viewer")
    check("Als Bcc senden" not in c.text(), "the bcc button text for a viewer")
    check("Nur Lesen" in c.text(), "no read-only note:\n" + c.text())
    ok("viewer")


def sender_flow(c, args):
    """The sender's own link from its hold notice, in a browser with no
    account: the page, then the Bcc button; nothing else is offered."""
    c.get(args.sender_link)
    check("Ihre zurückgehaltene Nachricht" in c.h1(), f"sender page heading: {c.h1()!r}")
    buttons = c.d.find_elements(By.CSS_SELECTOR, "form button[type=submit]")
    labels = [b.text for b in buttons]
    check("Unverändert senden (offener Verteiler)" not in labels, f"an original offered: {labels}")
    bcc = [b for b in buttons if b.text == "Mit verborgenen Empfängern (Bcc) senden"]
    check(len(bcc) == 1, f"the bcc button: {labels}")
    c.submit(bcc[0])
    check("Erledigt" in c.text(), "no confirmation:\n" + c.text())
    ok("sender")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--dpo", required=True)
    p.add_argument("--viewer", required=True)
    p.add_argument("--release", required=True, help="the held mail to release as bcc")
    p.add_argument("--hostile", required=True, help="the held mail with the <script> subject")
    p.add_argument("--sender-link", required=True, help="the path of a sender's link from its hold notice")
    p.add_argument("--screenshots", required=True)
    p.add_argument("--debug", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bccguard-chromium-") as profiles:
        for name, flow in [("dpo", dpo_flow), ("viewer", viewer_flow), ("sender", sender_flow)]:
            c = Console(args, profiles)
            try:
                flow(c, args)
            except Exception:
                traceback.print_exc()
                Path(args.debug, name + ".txt").write_text(traceback.format_exc())
                c.debug(args.debug, name)
                return 1
            finally:
                c.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
