#!/usr/bin/python3
"""Browser tests of the console's page (cli/console/web/), in headless
Chromium against the real console, example services and relays.

    console_page_test.py TEST

TEST is one of the functions named in TESTS below; tests/browser/
CMakeLists.txt registers each as its own CTest test. Each saves a
screenshot (TXM_SCREENSHOT_DIR/TEST.png) and fails if the page logged a
Content-Security-Policy violation or a script error. Exit 0 pass, 1 fail,
77 skip (no chromium, chromedriver or selenium)."""

import os
import sys
import time
import traceback
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import console_stack as cs  # noqa: E402

XSS_NAME = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def by_css(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def text_of(driver, css):
    els = by_css(driver, css)
    return els[0].text if els else None


def set_token(driver):
    box = by_css(driver, "#token-input")[0]
    box.clear()
    box.send_keys(cs.TOKEN)
    by_css(driver, "#token-form button[type=submit]")[0].click()
    cs.wait_until(lambda: text_of(driver, "#actions-note") == "actions enabled", 10,
                  "the page to enable actions")


def create_customer(stack, name="Ada", credit=25000, cid=None):
    headers = {"X-Correlation-Id": cid} if cid else {}
    st, doc, _ = cs.http("POST", stack.service_url("customers") + "/customers",
                         {"name": name, "credit_limit": credit}, headers)
    assert st == 200, "POST /customers answered %s %s" % (st, doc)
    return doc["customer_id"] if "customer_id" in doc else doc["id"]


def create_order(stack, customer_id, total=10000, cid=None):
    headers = {"X-Correlation-Id": cid} if cid else {}
    st, doc, _ = cs.http("POST", stack.service_url("orders") + "/orders",
                         {"customer_id": customer_id, "order_total": total}, headers)
    assert st == 200, "POST /orders answered %s %s" % (st, doc)
    return doc["id"]


def backlog(driver, service):
    t = text_of(driver, 'tr[data-service="%s"] td.backlog' % service)
    return None if t in (None, "", "—") else int(t.replace(",", ""))


# ---- the tests ----

def overview_backlog_falls_after_relay_starts(stack, driver):
    """Orders created while no relay runs show as a backlog, which falls to
    0 once the relays start."""
    for s in cs.SERVICES:
        stack.start_service(s)
    url = stack.start_console()
    customer = create_customer(stack)
    for _ in range(5):
        create_order(stack, customer)
    driver.get(url + "/")
    cs.wait_until(lambda: (backlog(driver, "orders") or 0) >= 5, 15,
                  "the orders backlog to show 5 or more")
    assert backlog(driver, "customers") >= 1
    cs.wait_until(lambda: len(by_css(driver, "#chart-backlog .uplot")) == 1, 10,
                  "the backlog chart")
    cs.screenshot(driver, "overview_backlog_before_relays")
    for s in cs.SERVICES:
        stack.start_relay(s)
    cs.wait_until(lambda: backlog(driver, "orders") == 0 and backlog(driver, "customers") == 0,
                  20, "both backlogs to reach 0")
    # The saga ran: the queues were handled, and nothing is dead.
    cs.wait_until(lambda: text_of(driver, 'tr[data-queue="customer--order-created"] td.depth')
                  == "0", 10, "customer--order-created to drain")
    cs.screenshot(driver, "overview_backlog_falls_after_relay_starts")


def trace_shows_three_steps_of_approved_order(stack, driver):
    """/#trace/<id> of an approved order lists order--created,
    customer--credit-reserved and order--approved in time order."""
    stack.start_all()
    customer = create_customer(stack)
    cid = "browser-trace-" + uuid.uuid4().hex[:12]
    order = create_order(stack, customer, 10000, cid)

    def approved():
        st, doc, _ = cs.http("GET", stack.service_url("orders") + "/order/" + order)
        return st == 200 and doc["state"] == "APPROVED"
    cs.wait_until(approved, 20, "the order to be APPROVED")
    driver.get(stack.console_url + "/#trace/" + cid)

    def outbox_topics():
        steps = by_css(driver, '#trace-timeline li[data-kind="outbox"]')
        return [s.get_attribute("data-topic") for s in steps]
    want = ["order--created", "customer--credit-reserved", "order--approved"]
    cs.wait_until(lambda: outbox_topics() == want, 10,
                  "the trace's outbox steps to be %s" % want)
    assert text_of(driver, "#trace-cid") == cid
    inbox = [s.get_attribute("data-topic")
             for s in by_css(driver, '#trace-timeline li[data-kind="inbox"]')]
    assert "order--created" in inbox and "customer--credit-reserved" in inbox, inbox
    assert "Last step" in text_of(driver, "#trace-waiting")
    # A correlation id elsewhere links here: the outbox browser's link.
    driver.get(stack.console_url + "/#outbox/orders")
    link = cs.wait_until(lambda: [a for a in by_css(driver, "#outbox-table a.cid")
                                  if a.get_attribute("title") == "Trace " + cid],
                         10, "the outbox row's correlation link")
    link[0].click()
    cs.wait_until(lambda: outbox_topics() == want, 10, "the trace opened from the outbox")
    cs.screenshot(driver, "trace_shows_three_steps_of_approved_order")


def redrive_group_from_page_empties_it(stack, driver):
    """Two groups of dead letters; redriving the larger from the page moves
    it back to the queue, the consumer handles it, and only the other group
    stays."""
    queue = "customer--order-cancelled"
    stack.seed_dead_letters("order--cancelled", queue, 6,
                            "customer store: database is locked (retry 3 of 3)")
    stack.seed_dead_letters("order--cancelled", queue, 2,
                            'handler timed out after 5000 ms <img src=x onerror="window.__pwned=3">')
    stack.start_all()
    driver.get(stack.console_url + "/#dlq/" + queue)
    set_token(driver)

    def group_rows():
        return {r.get_attribute("data-group"): r
                for r in by_css(driver, "#groups-table tbody tr[data-group]")}
    cs.wait_until(lambda: len(group_rows()) == 2, 10, "two dead-letter groups")
    big = [g for g, r in group_rows().items()
           if r.find_elements("css selector", "td.num")[0].text == "6"]
    assert len(big) == 1, "no group of 6"
    big = big[0]
    rate = by_css(driver, "#dlq-rate")[0]
    rate.clear()
    rate.send_keys("20")
    group_rows()[big].find_elements("css selector", "button.redrive")[0].click()
    cs.wait_until(lambda: "done" in (text_of(driver, "#jobs-list li .job-state") or ""), 15,
                  "the redrive job to finish")
    assert "6 / 6 moved" in text_of(driver, "#jobs-list li .job-moved")
    cs.wait_until(lambda: list(group_rows()) and big not in group_rows(), 10,
                  "the redriven group to leave the table")
    assert len(group_rows()) == 1

    def handled():
        st, ov, _ = stack.api("GET", "/api/overview")
        q = [x for x in ov["queues"] if x["name"] == queue][0]
        return q["dead_letters"] == 2 and q["depth"] == 0
    cs.wait_until(handled, 15, "the consumer to handle the redriven messages")
    # The other group's error, with its <img onerror>, is text.
    assert 'onerror="window.__pwned=3"' in text_of(driver, "#groups-table tbody")
    assert driver.execute_script("return window.__pwned") is None, "an error text ran"
    assert not by_css(driver, 'img[src="x"]'), "an img element was added"
    cs.screenshot(driver, "redrive_group_from_page_empties_it")


def payload_with_script_renders_as_text(stack, driver):
    """A customer named with <script> and <img onerror> shows in the
    envelope as text and runs nothing."""
    stack.start_service("customers")
    stack.start_service("orders")
    stack.start_console()
    create_customer(stack, XSS_NAME)
    st, _, headers = cs.http("GET", stack.console_url + "/")
    assert st == 200 and "script-src 'self'" in headers.get("Content-Security-Policy", ""), \
        "the page is served without its Content-Security-Policy"
    driver.get(stack.console_url + "/#outbox/customers")
    rows = cs.wait_until(lambda: [r for r in by_css(driver, "#outbox-table tbody tr")
                                  if "customer--created" in r.text], 10,
                         "the customer--created row")
    rows[0].find_elements("css selector", "button")[0].click()
    cs.wait_until(lambda: XSS_NAME.replace('"', '\\"') in
                  (text_of(driver, "#message-envelope") or ""), 10,
                  "the envelope to show the name as text")
    time.sleep(0.5)  # an onerror would have fired by now
    assert driver.execute_script("return window.__pwned") is None, "the payload ran"
    assert len(by_css(driver, "script")) == 2, "a script element was added"
    assert not by_css(driver, 'img[src="x"]'), "an img element was added"
    from selenium.common.exceptions import NoAlertPresentException
    try:
        driver.switch_to.alert
        raise AssertionError("an alert is open")
    except NoAlertPresentException:
        pass
    cs.screenshot(driver, "payload_with_script_renders_as_text")


def refused_actions_say_why(stack, driver):
    """A wrong token's refusal shows the API's error and changes nothing;
    a --read-only console disables every action button and says why."""
    for s in cs.SERVICES:
        stack.start_service(s)
    url = stack.start_console()
    create_customer(stack)
    driver.get(url + "/#outbox/customers")
    box = by_css(driver, "#token-input")[0]
    box.send_keys("not-the-token")
    by_css(driver, "#token-form button[type=submit]")[0].click()
    stack.expected_log.append("status of 403")
    button = cs.wait_until(lambda: [b for b in by_css(driver, "#outbox-table button")
                                    if b.text == "Dispatch now" and b.is_enabled()], 10,
                           "an enabled Dispatch now button")
    button[0].click()
    cs.wait_until(lambda: '"error": "FORBIDDEN"' in (text_of(driver, "#outbox-error") or ""),
                  10, "the FORBIDDEN error document")
    st, doc, _ = stack.api("GET", "/api/outbox?service=customers&state=pending")
    assert st == 200 and len(doc["messages"]) == 1, "the refused dispatch changed something"
    cs.screenshot(driver, "refused_actions_say_why-forbidden")

    ro = stack.start_console(["--read-only"], name="console-read-only")
    driver.get(ro + "/#outbox/customers")
    cs.wait_until(lambda: text_of(driver, "#actions-note") ==
                  "actions off: the console runs --read-only", 10, "the read-only note")
    cs.wait_until(lambda: by_css(driver, "#outbox-table button.action"), 10, "the outbox rows")
    enabled = [b.text for b in by_css(driver, "button.action") if b.is_enabled()]
    assert not enabled, "enabled on a read-only console: %s" % enabled
    assert not by_css(driver, "#token-input")[0].is_enabled()
    cs.screenshot(driver, "refused_actions_say_why")


TESTS = {f.__name__: f for f in (overview_backlog_falls_after_relay_starts,
                                 trace_shows_three_steps_of_approved_order,
                                 redrive_group_from_page_empties_it,
                                 payload_with_script_renders_as_text,
                                 refused_actions_say_why)}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        print("usage: console_page_test.py TEST\n  " + "\n  ".join(TESTS), file=sys.stderr)
        return 2
    name = sys.argv[1]
    cs.need_browser()
    started = time.monotonic()
    stack = cs.Stack(name)
    driver = None
    ok = False
    try:
        driver = cs.browser(stack.dir)
        TESTS[name](stack, driver)
        problems = cs.browser_problems(driver, stack.expected_log)
        assert not problems, "the page logged:\n" + "\n".join(problems)
        ok = True
    except Exception:
        traceback.print_exc()
        if driver is not None:
            try:
                cs.screenshot(driver, name + "-FAILED")
                print("page log:\n" + "\n".join(cs.browser_problems(driver)))
            except Exception:
                pass
        print(stack.logs())
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()
    print("%s: %s in %.1f s" % (name, "PASS" if ok else "FAIL", time.monotonic() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
