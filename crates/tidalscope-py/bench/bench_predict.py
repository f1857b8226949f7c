"""Python `predict` on in-memory arrays against the command line's
`predict` on the same images and model: both rates, and their ratio.

    python crates/tidalscope-py/bench/bench_predict.py --model runs/clf \
        [--n 2000] [--cli target/release/tidalscope]

The images are simulated 128×128×5 HSC-UD cutouts (seed 1), written to a
temporary .npy for the command line. Each side runs `--repeat` times; the
best run counts (the least disturbed by other work on the machine).
Build the package with `maturin develop --release` for this.
"""

import argparse
import pathlib
import re
import subprocess
import tempfile
import time

import numpy as np

import tidalscope as ts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a classifier folder")
    ap.add_argument("--n", type=int, default=2000, help="images (default 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (default 3)")
    here = pathlib.Path(__file__).resolve().parents[3]
    ap.add_argument("--cli", default=str(here / "target" / "release" / "tidalscope"), help="the binary")
    args = ap.parse_args()

    images, _ = ts.simulate(args.n, seed=1)
    clf = ts.load_classifier(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        npy = pathlib.Path(tmp) / "images.npy"
        np.save(npy, images)
        cli_rates = []
        for r in range(args.repeat):
            out = subprocess.run(
                [args.cli, "predict", "--model", args.model, "--data", str(npy), "--out", f"{tmp}/s{r}.csv"],
                capture_output=True, text=True, check=True)
            m = re.search(r"\(([\d.]+) objects/s\)", out.stdout)
            cli_rates.append(float(m.group(1)))
    py_rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clf.predict(images)
        py_rates.append(args.n / (time.perf_counter() - t0))
    cli, py = max(cli_rates), max(py_rates)
    print(f"model {args.model}, {args.n} images of 128×128×5, {ts.get_threads()} threads, best of {args.repeat}")
    print(f"command line (predict from .npy): {cli:8.1f} images/s  (runs: {', '.join(f'{x:.1f}' for x in cli_rates)})")
    print(f"Python (clf.predict in memory):   {py:8.1f} images/s  (runs: {', '.join(f'{x:.1f}' for x in py_rates)})")
    print(f"Python / command line: {py / cli:.3f}")


if __name__ == "__main__":
    main()
