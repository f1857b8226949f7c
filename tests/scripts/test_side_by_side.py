"""scripts/side-by-side.py against the real `tidalscope bench encoder` and a
stand-in for the TensorFlow bench (so that its rates are known, and the
test takes seconds): the stand-in prints the TensorFlow bench's lines with
rates that differ from call to call, and logs each call with its arguments;
the binary runs through a wrapper that logs its calls to the same log. So
the order the two ran in, the forwarded flags and every printed ratio can
be checked.
"""

import os
import pathlib
import re
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "crates" / "tidalscope-py" / "tests"))
from conftest import binary  # noqa: E402

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "side-by-side.py"
SMALL = ["--size", "16", "--batch", "2", "--width", "0.25", "--bands", "3", "--steps", "1"]

# Its call k (from 1) prints training 10·k and inference 100·k images/s.
STAND_IN = '''
import pathlib, sys
calls = pathlib.Path(sys.argv[0]).with_name("calls.txt")
done = calls.read_text().splitlines() if calls.exists() else []
k = sum(line.startswith("tensorflow") for line in done) + 1
with calls.open("a") as f:
    f.write(" ".join(["tensorflow", *sys.argv[1:]]) + "\\n")
print("tensorflow 0.0: 123 parameters, width 0.25, 16x16x3, batch 2")
print(f"tensorflow train: {10 * k:.2f} images/s (median of 1 timed steps)")
if "{drop}" != "infer":
    print(f"tensorflow infer: {100 * k:.2f} images/s (median of 1 timed steps)")
'''


def side_by_side(tmp_path, pairs, drop=""):
    fake = tmp_path / "fake_tf.py"
    fake.write_text(STAND_IN.replace("{drop}", drop))
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "tidalscope.sh"
    wrapper.write_text(f'#!/bin/sh\necho tidalscope >> "{calls}"\nexec "{binary()}" "$@"\n')
    os.chmod(wrapper, 0o755)
    cmd = [sys.executable, str(SCRIPT), "--pairs", str(pairs), "--tidalscope", str(wrapper),
           "--tensorflow-script", str(fake), *SMALL]
    return subprocess.run(cmd, capture_output=True, text=True), calls


def test_pairs_alternate_and_every_ratio_is_the_quotient_of_the_printed_rates(tmp_path):
    out, calls = side_by_side(tmp_path, 3)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # What each side timed, the tidalscope line as the bench printed it.
    assert lines[0].startswith("tensorflow: tensorflow 0.0: 123 parameters")
    assert lines[1].startswith("tidalscope: encoder") and "16×16 input, batch 2" in lines[1]
    rows = [re.split(r"\s+/\s+|\s+", line.strip().replace("×", "")) for line in lines[3:6]]
    assert [r[:2] for r in rows] == [["1", "tensorflow"], ["2", "tidalscope"], ["3", "tensorflow"]]
    for k, r in enumerate(rows, start=1):
        tf_train, tf_infer, ts_train, ts_infer, ratio_train, ratio_infer = map(float, r[2:8])
        assert (tf_train, tf_infer) == (10.0 * k, 100.0 * k), "the stand-in's k-th call"
        assert ts_train > 0 and ts_infer > 0
        # To three places (the rates printed to two bound the rest).
        assert re.fullmatch(r"[0-9]+\.[0-9]{3}", r[6]) and re.fullmatch(r"[0-9]+\.[0-9]{3}", r[7]), r
        assert abs(ratio_train - ts_train / tf_train) <= 0.0005 + 0.005 / tf_train
        assert abs(ratio_infer - ts_infer / tf_infer) <= 0.0005 + 0.005 / tf_infer
    ratios = [(float(r[6]), float(r[7])) for r in rows]
    summary = re.fullmatch(r"ratio over 3 pairs: training ([0-9.]+)–([0-9.]+)×, inference ([0-9.]+)–([0-9.]+)×",
                           lines[6])
    assert summary, lines[6]
    low_train, high_train, low_infer, high_infer = map(float, summary.groups())
    assert (low_train, high_train) == (min(r[0] for r in ratios), max(r[0] for r in ratios))
    assert (low_infer, high_infer) == (min(r[1] for r in ratios), max(r[1] for r in ratios))
    # The two ran in that order, and the flags this script does not know
    # reached the TensorFlow bench (and the binary: its line above).
    tf = " ".join(["tensorflow", *SMALL])
    assert calls.read_text().splitlines() == [tf, "tidalscope", "tidalscope", tf, tf, "tidalscope"]


def test_a_bench_without_a_rate_line_is_an_error_naming_it(tmp_path):
    out, _ = side_by_side(tmp_path, 1, drop="infer")
    assert out.returncode != 0
    assert "no infer rate in what tensorflow printed" in out.stderr
    assert "fake_tf.py" in out.stderr
