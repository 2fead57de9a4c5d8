"""The real stack under the console's page, for the browser tests.

Stack starts, in a private temporary folder, the example services
(customers-service, orders-service) on SQLite files and the embedded broker,
one txmsg-relay per service, and `txmsg console` with an action token; each
on a free 127.0.0.1 port picked by binding port 0. Stack.stop() ends every
process it started (SIGTERM, then SIGKILL after 5 s) and removes the folder.

The programs' paths come from the environment CTest sets (tests/browser/
CMakeLists.txt): TXM_CUSTOMERS_BIN, TXM_ORDERS_BIN, TXM_RELAY_BIN,
TXM_CLI_BIN, TXM_SEED_BIN; screenshots go to TXM_SCREENSHOT_DIR.

browser() opens headless Chromium through selenium; browser_problems()
returns what the page's console logged (CSP violations, script errors).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77  # CTest SKIP_RETURN_CODE: chromium, its driver or selenium absent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-test-token-7f3a"

SERVICES = ("customers", "orders")


def need_browser():
    """Exits 77 (skip) when chromium, chromedriver or selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python3-selenium")
    if missing:
        print("SKIP: not installed: " + ", ".join(missing) + " (scripts/install-deps)")
        sys.exit(SKIP)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout_s, what, step_s=0.1):
    """Calls fn until it returns a true value, which it returns; fails after
    timeout_s naming what it waited for (and fn's last exception)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # retried until the deadline
            last = e
        time.sleep(step_s)
    raise AssertionError("timed out after %.0f s waiting for %s%s" %
                         (timeout_s, what, " (last error: %r)" % last if last else ""))


def http(method, url, body=None, headers=None, timeout=5):
    """Returns (status, parsed JSON or text, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), e.headers
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = raw.decode(errors="replace")
    return status, doc, hdrs


class Stack:
    def __init__(self, name):
        self.name = name
        # A short path: Chromium's socket path under it must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="txm-browser-")
        self.broker = "embedded:" + os.path.join(self.dir, "txmsg-broker.db")
        self.db = {s: "sqlite:" + os.path.join(self.dir, s + ".db") for s in SERVICES}
        self.port = {}
        self.procs = {}  # name -> (Popen, log path)
        self.console_url = None
        self.expected_log = []  # browser log texts the test provokes on purpose
        self.bins = {
            "customers": os.environ["TXM_CUSTOMERS_BIN"],
            "orders": os.environ["TXM_ORDERS_BIN"],
            "relay": os.environ["TXM_RELAY_BIN"],
            "cli": os.environ["TXM_CLI_BIN"],
            "seed": os.environ.get("TXM_SEED_BIN", ""),
        }

    # ---- processes ----

    def _spawn(self, name, argv, env):
        log = os.path.join(self.dir, name + ".log")
        full = dict(os.environ)
        full.update(env)
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, env=full, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=self.dir)
        self.procs[name] = (p, log)
        return p

    def _alive(self, name):
        p, log = self.procs[name]
        if p.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (name, p.returncode, tail(log)))
        return True

    def start_service(self, name):
        """Starts customers-service or orders-service; returns its base URL
        once /<name>/health answers 200."""
        port = free_port()
        self.port[name] = port
        self._spawn(name, [self.bins[name]],
                    {"TXMSG_DATABASE_URL": self.db[name], "TXMSG_BROKER_URL": self.broker,
                     "PORT": str(port)})
        url = "http://127.0.0.1:%d" % port

        def healthy():
            self._alive(name)
            return http("GET", url + "/%s/health" % name, timeout=2)[0] == 200
        wait_until(healthy, 15, "%s to answer /%s/health" % (name, name))
        return url

    def service_url(self, name):
        return "http://127.0.0.1:%d" % self.port[name]

    def start_relay(self, service):
        self._spawn(service + "-relay", [self.bins["relay"]],
                    {"TXMSG_DATABASE_URL": self.db[service], "TXMSG_BROKER_URL": self.broker})
        time.sleep(0.05)
        self._alive(service + "-relay")

    def start_console(self, extra_args=(), name="console"):
        """Starts `txmsg console` over both services' databases and the
        broker, with the action token; returns its URL once /api/overview
        answers 200 (the first console's is also self.console_url)."""
        port = free_port()
        argv = [self.bins["cli"], "console", "--listen", "127.0.0.1:%d" % port,
                "--broker-url", self.broker, "--interval", "1s"]
        for s in SERVICES:
            argv += ["--service", "%s=%s" % (s, self.db[s])]
        argv += list(extra_args)
        self._spawn(name, argv, {"TXMSG_CONSOLE_TOKEN": TOKEN})
        url = "http://127.0.0.1:%d" % port
        if self.console_url is None:
            self.console_url = url

        def up():
            self._alive(name)
            return http("GET", url + "/api/overview", timeout=2)[0] == 200
        wait_until(up, 15, "%s to answer /api/overview" % name)
        return url

    def start_all(self):
        for s in SERVICES:
            self.start_service(s)
        for s in SERVICES:
            self.start_relay(s)
        return self.start_console()

    def seed_dead_letters(self, topic, queue, count, reason):
        """Dead-letters count messages of topic in queue (tests/browser/
        dlq_seed.c); run it before the service consuming queue starts."""
        r = subprocess.run([self.bins["seed"], self.broker, topic, queue, str(count), reason],
                           cwd=self.dir, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError("browser-dlq-seed failed: " + r.stderr)

    def api(self, method, path, body=None):
        headers = {"X-Txmsg-Token": TOKEN} if method != "GET" else {}
        return http(method, self.console_url + path, body, headers)

    def logs(self):
        return "\n".join("---- %s\n%s" % (n, tail(log)) for n, (p, log) in self.procs.items())

    def stop(self, keep=False):
        for name, (p, log) in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for name, (p, log) in self.procs.items():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# ---- browser ----

def browser(tmpdir, width=1280, height=900):
    """Headless Chromium whose profile and temporary files (its singleton
    socket folder) live under tmpdir, so removing tmpdir leaves nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    home = os.path.join(tmpdir, "chromium")
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ)
    env["TMPDIR"] = home
    opts = webdriver.ChromeOptions()
    opts.add_argument("--user-data-dir=" + os.path.join(home, "profile"))
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=%d,%d" % (width, height), "--disable-extensions",
              "--no-first-run", "--disable-background-networking", "--hide-scrollbars",
              "--force-device-scale-factor=1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=opts)


def browser_problems(driver, expected=()):
    """What the page logged at warning level or above: CSP violations and
    script errors (an empty list when the page is clean). A line holding
    one of the expected texts (a refusal the test provoked) is left out."""
    out = []
    for e in driver.get_log("browser"):
        msg = e.get("message", "")
        if any(x in msg for x in expected):
            continue
        if e.get("level") in ("SEVERE", "WARNING") or "Content Security Policy" in msg:
            out.append("%s %s" % (e.get("level"), msg))
    return out


def screenshot(driver, name):
    folder = os.environ.get("TXM_SCREENSHOT_DIR") or os.path.join(os.getcwd(), "screenshots")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".png")
    driver.save_screenshot(path)
    print("screenshot: " + path)
    return path
