"""End to end: `tidalscope label` served to a real headless Chromium.

A person's session, by keyboard: label objects (with confidence, feature
types and contaminants), undo one, retrain, see the queue re-sorted; then
the server is killed (SIGKILL) mid-session and restarted, and no label is
lost. Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
them and sets TIDALSCOPE_REQUIRE_BROWSER=1, so there a missing browser
fails instead of skipping).
"""

import csv
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "crates" / "tidalscope-py" / "tests"))
from conftest import TINY, binary  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(DRIVER)
if not HAVE_BROWSER and os.environ.get("TIDALSCOPE_REQUIRE_BROWSER"):
    raise RuntimeError(f"TIDALSCOPE_REQUIRE_BROWSER is set but {CHROMIUM} or {DRIVER} is missing")
pytestmark = pytest.mark.skipif(not HAVE_BROWSER, reason="needs chromium and chromium-driver (Debian packages)")


def run(root, *args):
    out = subprocess.run([binary(), *map(str, args)], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, f"tidalscope {' '.join(map(str, args))}: {out.stderr}"
    return out


class Server:
    """`tidalscope label` in the background; its address from its stdout."""

    def __init__(self, root):
        self.log = open(root / f"server-{time.time_ns()}.err", "w")
        self.proc = subprocess.Popen(
            [binary(), "label", "--data", "sim", "--encoder", "enc", "--labels", "labels.csv",
             "--port", "0", "--annotator", "tester"],
            cwd=root, stdout=subprocess.PIPE, stderr=self.log, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        deadline = time.time() + 300
        self.url = None
        while self.url is None and time.time() < deadline and self.proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("labelling page: "):
                self.url = line.split(": ", 1)[1].strip()
        if self.url is None:
            self.proc.kill()
            raise AssertionError(f"the server did not start: {pathlib.Path(self.log.name).read_text()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def wait(driver, predicate, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
        except Exception:  # the element may be mid-update
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; status: {text(driver, 'status')!r}")


def text(driver, element_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).text


def showing(driver):
    """The id on screen once its cutout has loaded."""
    from selenium.webdriver.common.by import By

    def ready():
        oid = text(driver, "object-id")
        img = driver.find_element(By.ID, "cutout")
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        return oid if oid and oid != "(queue empty)" and loaded else None
    return wait(driver, ready, "an object on screen")


def press(driver, keys):
    from selenium.webdriver.common.by import By
    body = driver.find_element(By.TAG_NAME, "body")
    for k in keys:
        body.send_keys(k)


def label(driver, keys, verdict):
    """Presses `keys` on the object on screen; returns its id once saved."""
    oid = showing(driver)
    press(driver, keys)
    wait(driver, lambda: text(driver, "status") == f"saved ✓ {oid}: {verdict}", f"{oid} saved")
    return oid


def upcoming(driver):
    from selenium.webdriver.common.by import By
    items = driver.find_elements(By.CSS_SELECTOR, "#upcoming li")
    return [(li.get_attribute("data-id"), li.get_attribute("data-score")) for li in items]


def read_labels(root):
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["id"], r["label"], r["verdict"], r["confidence"], r["features"], r["contaminants"], r["annotator"])
            for r in rows]


def test_label_by_keyboard_retrain_and_survive_a_kill(tmp_path, browser):
    root = tmp_path
    run(root, "simulate", "--n", 40, "--size", 32, "--out", "sim", "--preview", 0)
    run(root, "pretrain", "--data", "sim", "--out", "enc", *TINY)
    server = Server(root)
    try:
        browser.get(server.url)
        expected = []
        # (keys, verdict, label, confidence, features, contaminants)
        plan = [
            ("ht", "tidal", "1", "1.00", "shell", ""),
            ("n", "not_tidal", "0", "1.00", "", ""),
            ("2gn", "not_tidal", "0", "0.67", "", "ghost"),
            ("t", "tidal", "1", "1.00", "", ""),
        ]
        for keys, verdict, lab, conf, feats, conts in plan:
            oid = label(browser, keys, verdict)
            expected.append((oid, lab, verdict, conf, feats, conts, "tester"))
        unsure = label(browser, "u", "unsure")
        press(browser, "z")
        wait(browser, lambda: text(browser, "status") == f"undone: {unsure}", "the undo")
        assert showing(browser) == unsure, "undo brings the object back"
        for keys, verdict, lab, conf, feats, conts in [
            ("1sat", "tidal", "1", "0.33", "stream;tail", ""),
            ("n", "not_tidal", "0", "1.00", "", ""),
            ("t", "tidal", "1", "1.00", "", ""),
            ("oln", "not_tidal", "0", "1.00", "", "star_halo;satellite_trail"),
        ]:
            oid = label(browser, keys, verdict)
            expected.append((oid, lab, verdict, conf, feats, conts, "tester"))
        assert expected[4][0] == unsure
        assert read_labels(root) == expected, "labels.csv holds exactly what was pressed"
        assert "4 tidal · 4 not · 0 unsure" in text(browser, "counts")

        before = upcoming(browser)
        assert all(score == "" for _, score in before), "no scores before the first retrain"
        press(browser, "r")
        wait(browser, lambda: text(browser, "status") == "retrained: queue re-sorted", "the retrain", timeout=120)
        assert "cross-validated AUC" in text(browser, "retrain-status")
        after = upcoming(browser)
        scores = [float(s) for _, s in after]
        assert len(after) == 8 and scores == sorted(scores, reverse=True), after
        assert [i for i, _ in after] != [i for i, _ in before], "the queue re-sorted"
        labelled = {e[0] for e in expected}
        assert not labelled & {i for i, _ in after}, "labelled objects leave the queue"
        shot = pathlib.Path(os.environ.get("TIDALSCOPE_SCREENSHOT", root / "label-page.png"))
        browser.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")

        # Killed right after a label is reported saved: it must be on disk.
        last = label(browser, "t", "tidal")
        expected.append((last, "1", "tidal", "1.00", "", "", "tester"))
        server.kill()
        assert read_labels(root) == expected
        server = Server(root)
        browser.get(server.url)
        wait(browser, lambda: "5 tidal · 4 not · 0 unsure" in text(browser, "counts"), "the counts after restart")
        wait(browser, lambda: f"last labelled {last}" in text(browser, "status"), "the resume note")
        assert "scores: linear probe on 8 labels" in text(browser, "retrain-status")
        oid = label(browser, "n", "not_tidal")
        assert oid not in labelled and oid != last
        expected.append((oid, "0", "not_tidal", "1.00", "", "", "tester"))
        assert read_labels(root) == expected

        # A classifier trains on the labels directly.
        server.kill()
        out = run(root, "finetune", "--encoder", "enc", "--data", "sim", "--label-file", "labels.csv",
                  "--out", "clf", "--epochs", 1, "--min-steps", 2, "--val-fraction", 0.2, "--test-fraction", 0.2)
        assert "labels from labels.csv: 10 tidal or not tidal" in out.stderr
    finally:
        if server.proc.poll() is None:
            server.kill()
