"""Shared fixtures: the command-line binary, and a tiny model trained by it
on a tiny simulated set, so every Python result can be compared with the
command line's on the same model and data."""

import csv
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]

# Seconds, not science: the settings of the Rust integration tests.
TINY = ["--preset", "quick", "--bin", "1", "--crop", "24", "--width", "0.25",
        "--batch", "8", "--queue-size", "64", "--epochs", "1"]


def binary():
    """The tidalscope binary: $TIDALSCOPE_BIN, else the newest cargo build."""
    given = os.environ.get("TIDALSCOPE_BIN")
    if given:
        return given
    built = [REPO / "target" / p / "tidalscope" for p in ("debug", "release")]
    built = [b for b in built if b.is_file()]
    if not built:
        pytest.fail("no tidalscope binary: run `cargo build` or set TIDALSCOPE_BIN")
    return str(max(built, key=lambda b: b.stat().st_mtime))


class Cli:
    """Runs the binary in one folder."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.exe = binary()

    def __call__(self, *args, ok=True):
        out = subprocess.run([self.exe, *map(str, args)], cwd=self.root,
                             capture_output=True, text=True)
        if ok and out.returncode != 0:
            raise AssertionError(f"tidalscope {' '.join(map(str, args))}: {out.stderr}")
        return out

    def path(self, *parts):
        return self.root.joinpath(*parts)


def read_csv(path):
    """(header, rows) of a CSV file."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """A folder holding a tiny simulated set (npy and FITS), an encoder
    pretrained on it and a classifier fine-tuned from that encoder."""
    run = Cli(tmp_path_factory.mktemp("cli"))
    run("simulate", "--n", 40, "--size", 32, "--out", "sim", "--preview", 0, "--format", "fits")
    run("simulate", "--n", 40, "--size", 32, "--out", "npy", "--preview", 0)
    run("pretrain", "--data", "sim", "--out", "enc", *TINY)
    run("finetune", "--encoder", "enc", "--data", "sim", "--out", "clf", "--epochs", 2)
    return run


@pytest.fixture(scope="session")
def images(cli):
    """The npy set's images, [N, H, W, C] float32."""
    return np.load(cli.path("npy", "images.npy"))
