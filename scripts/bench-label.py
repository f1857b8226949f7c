#!/usr/bin/env python3
"""Measures `tidalscope label` as a person meets it, in headless Chromium:

- preparing: embedding the catalogue once (then cached) and starting;
- the first cutout on screen after opening the page;
- the step from a key press to the next object's cutout on screen;
- retraining the probe and rescoring every object.

The labeller is an oracle: it presses t or n by the catalogue's `label`
column (shown on the page), so the cross-validated AUC is meaningful.

  scripts/bench-label.py --data SET --encoder ENC [--objects 100000]

With --objects, a catalogue of that many rows is made first, cycling
over the first 200 images of SET (a `simulate` folder), so a 100k-object
catalogue costs 200 files on disk. Needs the Python test venv (selenium)
and Debian's chromium and chromium-driver.
"""

import argparse
import csv
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_catalogue(src, n, out):
    """`n` rows over the first 200 images of the simulate folder `src`."""
    images = np.load(src / "images.npy", mmap_mode="r")
    with open(src / "catalog.csv", newline="") as f:
        labels = [r["label"] for r in csv.DictReader(f)]
    k = min(200, len(images))
    (out / "img").mkdir(parents=True, exist_ok=True)
    for i in range(k):
        np.save(out / "img" / f"{i}.npy", np.asarray(images[i]))
    with open(out / "catalog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "file", "label"])
        for j in range(n):
            w.writerow([f"obj{j}", f"img/{j % k}.npy", labels[j % k]])
    return out / "catalog.csv"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=pathlib.Path)
    ap.add_argument("--encoder", required=True, type=pathlib.Path)
    ap.add_argument("--objects", type=int, default=0, help="make a catalogue of this many rows first")
    ap.add_argument("--labels", type=int, default=60, help="labels to give (timed steps)")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "tidalscope"))
    ap.add_argument("--work", type=pathlib.Path, help="folder to work in (kept; default: a temporary one)")
    ap.add_argument("--screenshot", type=pathlib.Path)
    a = ap.parse_args()
    work = a.work or pathlib.Path(tempfile.mkdtemp(prefix="bench-label-"))
    work.mkdir(parents=True, exist_ok=True)
    data = a.data.resolve()
    if a.objects:
        data = make_catalogue(data, a.objects, work / "catalogue")
    t0 = time.perf_counter()
    proc = subprocess.Popen([a.bin, "label", "--data", str(data), "--encoder", str(a.encoder.resolve()),
                             "--labels", str(work / "labels.csv"), "--port", "0", "--annotator", "bench"],
                            stdout=subprocess.PIPE, text=True)
    url = None
    for line in proc.stdout:
        if line.startswith("labelling page: "):
            url = line.split(": ", 1)[1].strip()
            break
    if url is None:
        sys.exit("the server did not start")
    ready = time.perf_counter() - t0
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        def on_screen(previous=None, timeout=60):
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                oid = driver.find_element(By.ID, "object-id").text
                img = driver.find_element(By.ID, "cutout")
                done = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                if oid and oid != previous and oid != "(queue empty)" and done:
                    return oid
                time.sleep(0.002)
            raise SystemExit("timed out waiting for a cutout")

        t1 = time.perf_counter()
        driver.get(url)
        oid = on_screen()
        first = time.perf_counter() - t1
        body = driver.find_element(By.TAG_NAME, "body")
        steps = []
        for _ in range(a.labels):
            meta = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
                    for r in driver.find_elements(By.CSS_SELECTOR, "#meta tr")}
            t = time.perf_counter()
            body.send_keys("t" if meta.get("label") == "1" else "n")
            oid = on_screen(previous=oid)
            steps.append(time.perf_counter() - t)
        counts = driver.find_element(By.ID, "counts").text
        t = time.perf_counter()
        body.send_keys("r")
        deadline = time.perf_counter() + 600
        while driver.find_element(By.ID, "status").text != "retrained: queue re-sorted":
            if time.perf_counter() > deadline:
                raise SystemExit("retrain timed out")
            time.sleep(0.01)
        # The page says so once the re-sorted queue's first object is on screen.
        retrain = time.perf_counter() - t
        probe = driver.find_element(By.ID, "retrain-status").text
        if a.screenshot:
            driver.save_screenshot(str(a.screenshot))
    finally:
        driver.quit()
        proc.terminate()
    n = sum(1 for _ in open(work / "labels.embeddings" / "ids.csv")) - 1
    steps_ms = sorted(1000 * s for s in steps)
    print(f"catalogue: {n} objects ({data}); encoder {a.encoder}")
    print(f"server ready (embedding included unless cached): {ready:.1f} s")
    print(f"first cutout on screen after opening the page: {1000 * first:.0f} ms")
    print(f"label → next cutout on screen, {len(steps)} steps: median {statistics.median(steps_ms):.0f} ms, "
          f"90th percentile {steps_ms[int(0.9 * (len(steps_ms) - 1))]:.0f} ms")
    print(f"{counts}")
    print(f"retrain + rescore {n} objects + re-sorted queue on screen: {retrain:.2f} s ({probe})")


if __name__ == "__main__":
    main()
