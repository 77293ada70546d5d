"""The admin console in headless Chromium, against the real server (see tests/browser/run).

Each test is a step a person would take, in order, on one browser: they share the users
created on the way. Any Content-Security-Policy violation, script error or XSS canary
fails the step it happens in. Prints "N passed, N failed" last.
"""

import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

OPEN = os.environ["OPEN_ADDR"]
TOKEN_ADDR = os.environ["TOKEN_ADDR"]
TOKEN = os.environ["API_TOKEN"]
KEYS_ADDR = os.environ["KEYS_ADDR"]  # a server with API_KEYS_FILE: a read key and a write key
READ_KEY = os.environ["READ_KEY"]
WRITE_KEY = os.environ["WRITE_KEY"]
ARTIFACTS = os.environ["ARTIFACTS_DIR"]
XSS_FIRST = "<img src=x onerror=alert(1)>"
XSS_LAST = "<script>window.__xss=1</script>"

# Installed before any script of the page runs (and outside its CSP): a canary for
# script injection, a record of CSP violations, of layout shifts not caused by input, and
# of the requests the page sends (method, path, body, If-Match).
GUARD = """
window.__xss = 0; window.__csp = []; window.__shift = 0; window.__sent = [];
var realFetch = window.fetch;
window.fetch = function (url, init) {
  init = init || {};
  window.__sent.push({method: init.method || 'GET', url: String(url), body: init.body || null,
                      ifMatch: (init.headers || {})['If-Match'] || null});
  return realFetch.apply(this, arguments);
};
window.alert = window.confirm = window.prompt = function () { window.__xss += 1; };
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
new PerformanceObserver(function (list) {
  list.getEntries().forEach(function (e) { if (!e.hadRecentInput) window.__shift += e.value; });
}).observe({type: 'layout-shift', buffered: true});
"""


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--user-data-dir=" + os.environ["PROFILE_DIR"],
        "--window-size=1280,900", "--lang=en-US",
    ]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": GUARD})
    d.set_page_load_timeout(20)
    return d


D = browser()


# --- helpers ----------------------------------------------------------------------------

def api(addr, method, path, body=None, token=None):
    req = urllib.request.Request("http://%s%s" % (addr, path), method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, json.loads(data) if data else None


def etag(addr, uid, token=None):
    req = urllib.request.Request("http://%s/users/%d" % (addr, uid))
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["ETag"]


def sent(method):
    """The requests of that method the page has sent so far, oldest first."""
    return [r for r in js("return window.__sent") if r["method"] == method]


def open_edit(uid):
    click_row_button(uid, "Edit")
    wait(lambda: by_id("form-title").text == "Edit user #%d" % uid, "the form to hold user #%d" % uid)
    wait(lambda: js("return document.activeElement.id") == "f-first_name", "focus in the form")


def all_ids(addr, token=None):
    ids, after = [], None
    while True:
        q = "/users?limit=100" + ("&after_id=%d" % after if after else "")
        status, page = api(addr, "GET", q, token=token)
        assert status == 200, page
        ids += [u["id"] for u in page["users"]]
        after = page["next_after_id"]
        if after is None:
            return ids


def wait(cond, what, timeout=10):
    try:
        return WebDriverWait(D, timeout, poll_frequency=0.05).until(lambda _: cond())
    except TimeoutException:
        raise AssertionError("timed out waiting for %s; status: %r; pager: %r" % (
            what, status_text(), js("return document.getElementById('page-info').textContent")))


def by_id(i):
    return D.find_element(By.ID, i)


def status_text():
    try:
        return by_id("status").text
    except Exception:  # noqa: BLE001 - only for messages
        return "?"


def wait_status(part, timeout=10):
    wait(lambda: part in status_text(), "status containing %r" % part, timeout)


def js(script, *args):
    return D.execute_script(script, *args)


def rows():
    """The users shown: one dict per row, as the page's text."""
    return js("""
      return Array.from(document.querySelectorAll('#rows tr')).map(function (tr) {
        var c = tr.querySelectorAll('td');
        return {id: Number(tr.dataset.id), first: c[1].textContent, last: c[2].textContent,
                email: c[3].textContent};
      });""")


def row_button(uid, label):
    return D.find_element(By.CSS_SELECTOR, '#rows tr[data-id="%d"] button[aria-label^="%s"]' % (uid, label))


def click_row_button(uid, label):
    """Clicks a row's button. The page renders the list afresh whenever a load ends, so
    a button found just before that is gone by the time of the click (a run of CI failed
    so): find it again until a click lands."""
    def attempt():
        try:
            row_button(uid, label).click()
        except StaleElementReferenceException:
            return False
        return True
    wait(attempt, "a click on user %d's %s button" % (uid, label))


def fill(field, value):
    el = by_id("f-" + field)
    el.clear()
    el.send_keys(value)
    return el


def open_page(addr):
    D.get("http://%s/admin" % addr)
    assert D.current_url == "http://%s/admin/" % addr, D.current_url


def shot(name):
    path = os.path.join(ARTIFACTS, name + ".png")
    D.save_screenshot(path)
    return path


def clean_checks():
    """What must hold after every step: no script ran, no CSP violation, no script error."""
    assert js("return window.__xss") == 0, "an injected script ran"
    violations = js("return window.__csp")
    assert violations == [], "CSP violations: %r" % violations
    for entry in D.get_log("browser"):
        msg = entry["message"]
        # A refused request (401, 403, 404, 409, 400, 503) is logged by Chromium itself;
        # it is what these steps provoke.
        if "Failed to load resource: the server responded with a status of" in msg:
            continue
        assert entry["level"] not in ("SEVERE", "WARNING") and "Content Security Policy" not in msg, \
            "browser console: %s" % msg


# --- the steps ---------------------------------------------------------------------------

def test_page_loads_without_layout_shift_and_every_input_has_a_label():
    open_page(OPEN)
    wait_status("on this page")
    assert D.title == "user-api admin"
    unlabelled = js("""return Array.from(document.querySelectorAll('input'))
        .filter(function (i) { return !i.labels || i.labels.length === 0; }).map(function (i) { return i.id; });""")
    assert unlabelled == [], unlabelled
    shift = js("return window.__shift")
    # 0 measured; 0.005 when the status bar was planted in the flow instead of fixed.
    assert shift < 0.001, "cumulative layout shift while loading: %s" % shift
    assert by_id("empty").is_displayed()
    # What the browser itself fetched: every file gzipped, all of it within 40 KiB.
    sizes = js("""return performance.getEntriesByType('navigation').concat(
        performance.getEntriesByType('resource')).map(function (e) {
          return [e.name, e.transferSize, e.encodedBodySize, e.decodedBodySize]; });""")
    files = [s for s in sizes if "/admin/" in s[0]]
    assert len(files) == 3, sizes
    for name, _, encoded, decoded in files:
        assert encoded < decoded, "%s was not compressed: %r" % (name, sizes)
    total = sum(s[1] for s in sizes)
    print("     the browser fetched %d bytes in %d responses; layout shift %.4f" % (total, len(sizes), shift))
    assert total <= 40 * 1024, sizes


def test_create_with_the_keyboard_shows_the_new_user():
    fill("first_name", "Ada")
    fill("last_name", "Lovelace")
    fill("email", "ada@example.com").send_keys(Keys.ENTER)
    wait_status("Created user #")
    wait(lambda: any(r["email"] == "ada@example.com" for r in rows()), "Ada in the list")
    ada = [r for r in rows() if r["email"] == "ada@example.com"][0]
    assert (ada["first"], ada["last"]) == ("Ada", "Lovelace"), ada
    assert by_id("f-first_name").get_attribute("value") == "", "the form is cleared"


def test_api_errors_show_next_to_their_field():
    fill("first_name", "Grace")
    fill("last_name", "Hopper")
    fill("email", "not-an-email")
    by_id("save").click()
    wait(lambda: by_id("e-email").text != "", "an email error")
    status, body = api(OPEN, "POST", "/users", {"first_name": "G", "last_name": "H", "email": "not-an-email"})
    assert status == 400 and body["field"] == "email", body
    assert by_id("e-email").text == body["error"], by_id("e-email").text
    assert by_id("f-email").get_attribute("aria-invalid") == "true"
    assert by_id("e-first_name").text == "" and by_id("e-last_name").text == ""
    fill("email", "ADA@example.com")
    by_id("save").click()
    wait(lambda: "another user" in by_id("e-email").text or "409" in status_text(), "the 409 by the email")
    assert "409" in status_text(), status_text()
    assert by_id("e-email").text != ""
    fill("first_name", "   ")
    fill("email", "grace@example.com")
    by_id("save").click()
    wait(lambda: by_id("e-first_name").text != "", "a first name error")
    assert by_id("e-email").text == "", "the old error is cleared"
    fill("first_name", "Grace")
    by_id("save").click()
    wait_status("Created user #")


def test_find_by_email_ignores_case_and_show_all_returns():
    box = by_id("find-email")
    box.send_keys("GRACE@example.COM", Keys.ENTER)
    wait(lambda: [r["email"] for r in rows()] == ["grace@example.com"], "the one match")
    assert "Found 1 user" in status_text()
    assert by_id("next").get_attribute("disabled") is not None
    box.clear()
    box.send_keys("nobody@example.com", Keys.ENTER)
    wait_status("No user has that email")
    assert rows() == []
    by_id("find-clear").click()
    wait(lambda: len(rows()) == 2, "both users again")


def test_edit_sends_only_the_changed_fields_with_if_match():
    ada = [r for r in rows() if r["first"] == "Ada"][0]
    tag = etag(OPEN, ada["id"])
    open_edit(ada["id"])
    fill("last_name", "King").send_keys(Keys.ENTER)
    wait_status("Saved user #%d" % ada["id"])
    patch = sent("PATCH")[-1]
    assert json.loads(patch["body"]) == {"last_name": "King"}, patch
    assert patch["ifMatch"] == tag, "If-Match is the ETag the user had when opened: %r, %r" % (patch, tag)
    status, user = api(OPEN, "GET", "/users/%d" % ada["id"])
    assert (user["last_name"], user["email"]) == ("King", "ada@example.com"), user
    wait(lambda: any(r["last"] == "King" for r in rows()), "the new name in the list")
    assert by_id("form-title").text == "New user"
    # Nothing changed: nothing sent.
    patches = len(sent("PATCH"))
    open_edit(ada["id"])
    by_id("save").click()
    wait_status("Nothing changed")
    assert len(sent("PATCH")) == patches
    by_id("cancel-edit").click()


def test_an_edit_of_a_user_changed_meanwhile_is_refused_with_412_and_offers_a_reload():
    ada = [r for r in rows() if r["first"] == "Ada"][0]
    open_edit(ada["id"])
    assert not by_id("reload-user").is_displayed()
    # Someone else changes the email after the form was filled.
    status, _ = api(OPEN, "PATCH", "/users/%d" % ada["id"], {"email": "ada@lovelace.example"})
    assert status == 200
    fill("last_name", "Byron").send_keys(Keys.ENTER)
    wait(lambda: "Someone else changed user #%d" % ada["id"] in by_id("e-form").text, "the 412 message")
    wait(lambda: [r["email"] for r in rows() if r["id"] == ada["id"]] == ["ada@lovelace.example"],
         "the list to show the user as it is now")
    assert "412 Precondition Failed" in status_text(), status_text()
    assert "not saved" in by_id("e-form").text, by_id("e-form").text
    assert by_id("reload-user").is_displayed(), "a reload is offered"
    assert js("return document.activeElement.id") == "reload-user"
    status, user = api(OPEN, "GET", "/users/%d" % ada["id"])
    assert (user["last_name"], user["email"]) == ("King", "ada@lovelace.example"), "nothing changed: %r" % user
    shot("admin-1280-412")
    by_id("reload-user").click()
    wait(lambda: by_id("f-email").get_attribute("value") == "ada@lovelace.example", "the new email in the form")
    assert by_id("f-last_name").get_attribute("value") == "King", "the form shows the user as it is now"
    assert not by_id("reload-user").is_displayed() and by_id("e-form").text == ""
    fill("last_name", "Byron").send_keys(Keys.ENTER)
    wait_status("Saved user #%d" % ada["id"])
    status, user = api(OPEN, "GET", "/users/%d" % ada["id"])
    assert (user["last_name"], user["email"]) == ("Byron", "ada@lovelace.example"), user


def test_a_hostile_name_renders_as_text_and_runs_nothing():
    fill("first_name", XSS_FIRST)
    fill("last_name", XSS_LAST)
    fill("email", "")
    by_id("save").click()
    wait_status("Created user #")
    wait(lambda: any(r["first"] == XSS_FIRST for r in rows()), "the hostile user in the list")
    row = [r for r in rows() if r["first"] == XSS_FIRST][0]
    assert row["last"] == XSS_LAST, row
    assert js("return document.querySelectorAll('#rows img, #rows script').length") == 0
    wait(lambda: XSS_FIRST in status_text(), "the status showing the name as text too")
    time.sleep(0.3)  # let an image error event, if there were an image, fire
    assert js("return window.__xss") == 0


def test_paging_walks_250_users_forward_and_back():
    for i in range(250):
        status, body = api(OPEN, "POST", "/users", {"first_name": "Seed%03d" % i, "last_name": "User"})
        assert status == 201, body
    expected = all_ids(OPEN)
    by_id("find-clear").click()
    wait(lambda: len(rows()) == 50, "a first page of 50")
    seen, pages = [], []
    while True:
        page = [r["id"] for r in rows()]
        pages.append(page)
        seen += page
        nxt = by_id("next")
        if nxt.get_attribute("disabled") is not None:
            break
        want = "Page %d" % (len(pages) + 1)
        if len(pages) % 2:
            nxt.click()
        else:
            nxt.send_keys(Keys.ENTER)  # keyboard, on every other page
        wait(lambda: by_id("page-info").text.startswith(want), want)
    assert seen == expected, "every user once, in id order (%d seen, %d expected)" % (len(seen), len(expected))
    assert len(pages) == 6 and [len(p) for p in pages] == [50] * 5 + [3], [len(p) for p in pages]
    for back in range(len(pages) - 2, -1, -1):
        by_id("prev").click()
        wait(lambda: [r["id"] for r in rows()] == pages[back], "page %d again" % (back + 1))
    assert by_id("prev").get_attribute("disabled") is not None
    assert by_id("page-info").text.startswith("Page 1")


def test_keyboard_reaches_every_control():
    # Start where a person's first Tab starts: the top of the page (the skip link).
    js("document.querySelector('.skip').focus()")
    reached = {"skip"}
    for _ in range(30):
        ActionChains(D).send_keys(Keys.TAB).perform()
        reached.add(js("return document.activeElement.id || document.activeElement.textContent"))
    for want in ["key-set", "find-email", "find-clear", "f-first_name", "f-last_name", "f-email",
                 "save", "next", "Edit"]:
        assert want in reached, "%s not reached by Tab: %r" % (want, sorted(reached))


def test_screenshots_at_1280_and_360_pixels():
    D.set_window_size(1280, 900)
    js("window.scrollTo(0, 0)")
    shot("admin-1280")
    D.set_window_size(360, 780)
    time.sleep(0.2)
    overflow = js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the page scrolls sideways at 360 px by %d px" % overflow
    js("window.scrollTo(0, 0)")
    shot("admin-360")
    js("window.scrollTo(0, 420)")
    shot("admin-360-list")
    D.set_window_size(1280, 900)


def test_delete_asks_first_and_cancel_keeps_the_user():
    by_id("find-clear").click()
    wait(lambda: any(r["first"] == XSS_FIRST for r in rows()), "the hostile user")
    uid = [r for r in rows() if r["first"] == XSS_FIRST][0]["id"]
    click_row_button(uid, "Delete")
    wait(lambda: by_id("confirm").get_attribute("open") is not None, "the confirmation")
    assert XSS_FIRST in by_id("confirm-text").text
    shot("admin-1280-confirm")
    D.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(lambda: by_id("confirm").get_attribute("open") is None, "the dialog to close")
    assert api(OPEN, "GET", "/users/%d" % uid)[0] == 200, "Escape deletes nothing"
    click_row_button(uid, "Delete")
    wait(lambda: by_id("confirm").get_attribute("open") is not None, "the confirmation")
    by_id("confirm-no").click()
    assert api(OPEN, "GET", "/users/%d" % uid)[0] == 200, "Cancel deletes nothing"
    # Changed by someone else after the dialog showed it: 412, nothing deleted.
    click_row_button(uid, "Delete")
    wait(lambda: by_id("confirm").get_attribute("open") is not None, "the confirmation")
    assert api(OPEN, "PATCH", "/users/%d" % uid, {"email": "changed@example.com"})[0] == 200
    by_id("confirm-yes").click()
    wait_status("so it was not deleted")
    assert api(OPEN, "GET", "/users/%d" % uid)[0] == 200, "a 412 deletes nothing"
    tag = etag(OPEN, uid)
    click_row_button(uid, "Delete")
    wait(lambda: by_id("confirm").get_attribute("open") is not None, "the confirmation")
    assert "changed@example.com" in by_id("confirm-text").text, "the dialog shows the user as it is now"
    by_id("confirm-yes").click()
    wait_status("Deleted user #%d" % uid)
    assert sent("DELETE")[-1]["ifMatch"] == tag, sent("DELETE")
    assert api(OPEN, "GET", "/users/%d" % uid)[0] == 404
    wait(lambda: all(r["id"] != uid for r in rows()), "the row to go")


def test_a_server_with_a_token_asks_for_a_key_and_refuses_a_wrong_one_plainly():
    api(TOKEN_ADDR, "POST", "/users", {"first_name": "Token", "last_name": "User"}, token=TOKEN)
    open_page(TOKEN_ADDR)
    wait(lambda: by_id("key-dialog").get_attribute("open") is not None, "the key dialog")
    assert "needs an API key" in by_id("key-message").text, by_id("key-message").text
    assert "401 Unauthorized" in status_text(), status_text()
    shot("admin-1280-key")
    by_id("key-input").send_keys("wrong-key", Keys.ENTER)
    wait(lambda: "refused" in by_id("key-message").text, "the refusal")
    assert "401 Unauthorized" in by_id("key-message").text
    assert by_id("key-dialog").get_attribute("open") is not None
    assert js("return sessionStorage.getItem('user-api-key')") is None, "a refused key is dropped"
    by_id("key-input").send_keys(TOKEN, Keys.ENTER)
    wait_status("on this page")
    assert [r["first"] for r in rows()] == ["Token"]
    assert "API key set" in by_id("key-state").text
    assert js("return sessionStorage.getItem('user-api-key')") == TOKEN
    assert js("return localStorage.length") == 0 and js("return document.cookie") == ""
    # The key lasts for this tab's session: a reload does not ask again.
    D.refresh()
    wait_status("on this page")
    assert by_id("key-dialog").get_attribute("open") is None


def test_a_read_key_hides_the_write_actions_after_a_403_and_a_write_key_writes():
    status, _ = api(KEYS_ADDR, "POST", "/users", {"first_name": "Keyed", "last_name": "User"}, token=WRITE_KEY)
    assert status == 201
    open_page(KEYS_ADDR)
    wait(lambda: by_id("key-dialog").get_attribute("open") is not None, "the key dialog")
    by_id("key-input").send_keys(READ_KEY, Keys.ENTER)
    wait_status("on this page")
    assert [r["first"] for r in rows()] == ["Keyed"]
    fill("first_name", "Not")
    fill("last_name", "Allowed")
    by_id("save").click()
    wait(lambda: "403 Forbidden" in status_text(), "the 403")
    assert "lacks the write scope" in status_text(), status_text()
    assert not by_id("edit-panel").is_displayed(), "the form is hidden"
    assert by_id("read-only-note").is_displayed()
    visible = [b for b in D.find_elements(By.CSS_SELECTOR, "#rows button") if b.is_displayed()]
    assert visible == [], "edit and delete are hidden"
    assert len(rows()) == 1, "reading goes on"
    assert [u["first_name"] for u in api(KEYS_ADDR, "GET", "/users", token=WRITE_KEY)[1]["users"]] == ["Keyed"]
    shot("admin-1280-read-only")
    # Another key: writing is offered again, and with the write key it works.
    by_id("key-set").click()
    by_id("key-input").send_keys(WRITE_KEY, Keys.ENTER)
    wait_status("on this page")
    assert by_id("edit-panel").is_displayed() and not by_id("read-only-note").is_displayed()
    fill("first_name", "Written")
    fill("last_name", "ByKey")
    by_id("save").click()
    wait_status("Created user #")
    uid = [r for r in rows() if r["first"] == "Written"][0]["id"]
    open_edit(uid)
    fill("last_name", "Edited").send_keys(Keys.ENTER)
    wait_status("Saved user #%d" % uid)
    click_row_button(uid, "Delete")
    wait(lambda: by_id("confirm").get_attribute("open") is not None, "the confirmation")
    by_id("confirm-yes").click()
    wait_status("Deleted user #%d" % uid)
    assert api(KEYS_ADDR, "GET", "/users/%d" % uid, token=WRITE_KEY)[0] == 404
    by_id("key-forget").click()
    assert js("return sessionStorage.getItem('user-api-key')") is None


def test_an_unavailable_database_shows_retrying_and_recovers():
    open_page(OPEN)
    wait_status("on this page")
    # The harness's launcher (scripts/lib/pg.sh, examples/pg.rs) stops and restarts it.
    pg = [os.environ["PG_TOOL"]]
    subprocess.run(pg + ["stop", os.environ["PG_DIR"]], check=True, stdout=subprocess.DEVNULL)
    try:
        by_id("find-clear").click()
        wait_status("database unavailable, retrying", timeout=15)
        shot("admin-1280-db-down")
    finally:
        subprocess.run(pg + ["start", os.environ["PG_DIR"], "--port", os.environ["PG_PORT"]],
                       check=True, stdout=subprocess.DEVNULL)
    wait_status("on this page", timeout=40)
    assert len(rows()) == 50


# --- runner --------------------------------------------------------------------------------

def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        started = time.monotonic()
        try:
            fn()
            clean_checks()
            passed += 1
            print("ok   %s (%.1f s)" % (name, time.monotonic() - started), flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next step runs
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            try:
                print("     screenshot: %s" % shot("FAILED-" + name), flush=True)
            except Exception:  # noqa: BLE001
                pass
    D.quit()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
