#!/usr/bin/python3
"""Takes docs/console.png: the console's overview against the real example
services, relays and broker, after a minute or so of orders. Not a test; run
by hand after a build:

    tests/browser/console_screenshot.py BUILD_DIR [OUT.png] [SECONDS]

It seeds a few dead letters, starts the stack without relays, creates
customers and orders for SECONDS (default 40; the relays start a third of
the way in, so the backlog rises and falls on the charts), and saves the
overview at 1280 px wide (default OUT: docs/console.png)."""

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import console_stack as cs  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    out = os.path.abspath(sys.argv[2] if len(sys.argv) > 2
                          else os.path.join(HERE, "..", "..", "docs", "console.png"))
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 40.0
    os.environ.update({
        "TXM_CUSTOMERS_BIN": build + "/examples/customers/customers-service",
        "TXM_ORDERS_BIN": build + "/examples/orders/orders-service",
        "TXM_RELAY_BIN": build + "/relay/txmsg-relay",
        "TXM_CLI_BIN": build + "/cli/txmsg",
        "TXM_SEED_BIN": build + "/tests/browser/browser-dlq-seed",
    })
    cs.need_browser()
    stack = cs.Stack("screenshot")
    driver = None
    try:
        stack.seed_dead_letters("order--cancelled", "customer--order-cancelled", 4,
                                "customer store: database is locked (retry 3 of 3)")
        stack.seed_dead_letters("order--cancelled", "customer--order-cancelled", 1,
                                "handler timed out after 5000 ms")
        for s in cs.SERVICES:
            stack.start_service(s)
        stack.start_console()
        driver = cs.browser(stack.dir, 1280, 1000)
        # The viewport itself (the window's size includes its frame).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 1100, "deviceScaleFactor": 1,
                                "mobile": False})
        driver.get(stack.console_url + "/")
        customers = []
        for name in ("Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"):
            st, doc, _ = cs.http("POST", stack.service_url("customers") + "/customers",
                                 {"name": name, "credit_limit": 50000000})
            customers.append(doc["id"])
        start = time.monotonic()
        relays = False
        rnd = random.Random(7)
        while time.monotonic() - start < seconds:
            if not relays and time.monotonic() - start > seconds / 3:
                for s in cs.SERVICES:
                    stack.start_relay(s)
                relays = True
            for _ in range(rnd.randint(1, 6)):
                cs.http("POST", stack.service_url("orders") + "/orders",
                        {"customer_id": rnd.choice(customers),
                         "order_total": rnd.choice((1500, 4200, 9900, 60000, 90000000))})
            time.sleep(0.5)
        time.sleep(3)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        driver.save_screenshot(out)
        print("saved " + out)
        problems = cs.browser_problems(driver)
        if problems:
            print("the page logged:\n" + "\n".join(problems))
            return 1
        return 0
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
