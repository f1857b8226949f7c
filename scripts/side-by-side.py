"""Side-by-side pairs: `tidalscope bench encoder --kernels fast` and the same
encoder in TensorFlow (scripts/bench-tensorflow.py), run back to back on one
machine, and the ratio of their training and inference rates in each pair.

A machine's speed swings by several percent within minutes, so a single
pair can flatter either side: each pair runs the two back to back, the
order alternates from pair to pair (TensorFlow first in odd pairs,
tidalscope first in even ones) so that a slow spell does not always fall on
the same side, and the ratios' range over the pairs is printed last. Every
argument this script does not know (--preset, --batch, --size, --width,
--bands, --steps) goes to both benches. Needs TensorFlow in the Python given
by --python (`pip install tensorflow-cpu`); not part of the tests' needs.

    python3 scripts/side-by-side.py --pairs 3 --tidalscope target/release/tidalscope \
        --python /path/to/tf-venv/bin/python --preset paper --batch 32
"""
import argparse
import pathlib
import re
import subprocess
import sys

# The rate lines each bench prints, and the line that says what it timed.
RATES = {
    "tensorflow": re.compile(r"^tensorflow (train|infer): ([0-9.]+) images/s", re.M),
    "tidalscope": re.compile(r"^fast (train|infer): ([0-9.]+) images/s", re.M),
}
SHAPES = {
    "tensorflow": re.compile(r"^tensorflow \S+: .*parameters.*$", re.M),
    "tidalscope": re.compile(r"^encoder\b.*$", re.M),
}


def rates(who, cmd):
    """Runs one bench: its training and inference images/s, and the line
    saying what it timed (or None)."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        sys.exit(f"side-by-side: cannot run {who} ({' '.join(cmd)}): {e}")
    if r.returncode != 0:
        sys.exit(f"side-by-side: {who} failed with exit status {r.returncode}: {' '.join(cmd)}\n{r.stdout[-3000:]}")
    found = {kind: float(v) for kind, v in RATES[who].findall(r.stdout)}
    missing = sorted({"train", "infer"} - found.keys())
    if missing:
        sys.exit(f"side-by-side: no {' or '.join(missing)} rate in what {who} printed ({' '.join(cmd)}):\n"
                 f"{r.stdout[-3000:]}")
    shape = SHAPES[who].search(r.stdout)
    return found, shape.group(0) if shape else None


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other flag (--preset, --batch, --size, --width, --bands, --steps) goes to both benches.",
    )
    p.add_argument("--pairs", type=int, default=3, help="pairs to run (default 3)")
    p.add_argument("--tidalscope", default="tidalscope", help="the tidalscope binary (default: on the PATH)")
    p.add_argument("--python", default=sys.executable, help="a Python with TensorFlow (default: this one)")
    p.add_argument("--tensorflow-script", default=str(pathlib.Path(__file__).with_name("bench-tensorflow.py")),
                   help="the TensorFlow bench (default: bench-tensorflow.py beside this script)")
    a, common = p.parse_known_args()
    if a.pairs <= 0:
        p.error("--pairs must be positive")
    commands = {
        "tensorflow": [a.python, a.tensorflow_script, *common],
        "tidalscope": [a.tidalscope, "bench", "encoder", "--kernels", "fast", *common],
    }
    # Ratios to three places: a goal such as 2× is a threshold, and 1.998
    # shown as 2.00 would pass it.
    ratios = []
    for pair in range(1, a.pairs + 1):
        order = ["tensorflow", "tidalscope"] if pair % 2 == 1 else ["tidalscope", "tensorflow"]
        got = {who: rates(who, commands[who]) for who in order}
        if pair == 1:
            # What each timed, so that a reader can see the two ran one network on one input.
            for who in ("tensorflow", "tidalscope"):
                print(f"{who}: {got[who][1] or '(no description printed)'}")
            print(f"{'pair':>4}  {'first':<10}  {'TensorFlow train / infer':>24}  {'tidalscope train / infer':>24}"
                  f"  {'ratio train / infer':>19}")
        tf, ts = got["tensorflow"][0], got["tidalscope"][0]
        r = (ts["train"] / tf["train"], ts["infer"] / tf["infer"])
        ratios.append(r)
        print(f"{pair:>4}  {order[0]:<10}  {tf['train']:>11.2f} / {tf['infer']:<10.2f}  "
              f"{ts['train']:>11.2f} / {ts['infer']:<10.2f}  {r[0]:>8.3f}× / {r[1]:.3f}×", flush=True)
    low = [min(r[k] for r in ratios) for k in (0, 1)]
    high = [max(r[k] for r in ratios) for k in (0, 1)]
    pairs = f"{a.pairs} pair{'s' if a.pairs != 1 else ''}"
    print(f"ratio over {pairs}: training {low[0]:.3f}–{high[0]:.3f}×, inference {low[1]:.3f}–{high[1]:.3f}×")


if __name__ == "__main__":
    main()
