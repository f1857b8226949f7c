"""Two probe-side ideas for few labels, measured against the plain probe on a
frozen tidalscope encoder (the README's "Tried next ... and dropped"):

  * symmetry averaging: each object's representation averaged over the 8
    square symmetries of its cutout (rotations by 90 degrees, with a flip);
  * label spreading over a k-nearest-neighbour graph of the unlabelled
    training representations, objects scored by their pool neighbours.

The baseline is an L2 logistic regression with its strength chosen by 5-fold
cross-validation on the drawn labels (balanced). Scores are ROC AUC on the
`--val` set; use a validation split, never the test set. Calls `tidalscope
embed` for the representations. Not part of the tests; needs
`pip install numpy scikit-learn`.

    python3 scripts/probe-ideas.py --tidalscope target/release/tidalscope \\
        --encoder enc25m --train train24k --val val --work probe-ideas [--draws 12]
"""
import argparse
import csv
import subprocess
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.semi_supervised import LabelSpreading

warnings.filterwarnings("ignore")


def embed(tool, encoder, data, out):
    """Representations and labels of `data` (a folder or .npy), cached in `out`."""
    if not (out / "embeddings.npy").exists():
        subprocess.run([tool, "embed", "--encoder", str(encoder), "--data", str(data), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    x = np.load(out / "embeddings.npy").astype(np.float64)
    with open(out / "ids.csv") as f:
        y = np.array([int(r["label"]) if r.get("label") else -1 for r in csv.DictReader(f)])
    return x, y


def draw(y, n, seed):
    rng = np.random.default_rng(seed)
    pos = rng.choice(np.where(y == 1)[0], n // 2, replace=False)
    neg = rng.choice(np.where(y == 0)[0], n // 2, replace=False)
    return np.concatenate([pos, neg])


def probe_auc(xp, yp, xv, yv, idx):
    mu, sd = xp.mean(0), xp.std(0) + 1e-9
    lr = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=5, max_iter=3000, scoring="neg_log_loss")
    lr.fit((xp[idx] - mu) / sd, yp[idx])
    return roc_auc_score(yv, lr.decision_function((xv - mu) / sd))


def report(name, n, aucs):
    print(f"{n:5d} labels  {name:44s} AUC {np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f} ({len(aucs)} draws)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tidalscope", default="tidalscope")
    ap.add_argument("--encoder", required=True, type=Path)
    ap.add_argument("--train", required=True, type=Path, help="labelled training folder (images.npy, catalog.csv)")
    ap.add_argument("--val", required=True, type=Path, help="labelled validation folder")
    ap.add_argument("--work", required=True, type=Path, help="folder for embeddings and rotated copies")
    ap.add_argument("--labels", default="50,300")
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--pool", type=int, default=4000, help="training objects embedded 8 times for averaging")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    counts = [int(c) for c in a.labels.split(",")]

    # Label spreading over the whole training pool.
    xp, yp = embed(a.tidalscope, a.encoder, a.train, a.work / "emb-train")
    xv, yv = embed(a.tidalscope, a.encoder, a.val, a.work / "emb-val")
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    pp, pv = unit((xp - xp.mean(0)) / (xp.std(0) + 1e-9)), unit((xv - xp.mean(0)) / (xp.std(0) + 1e-9))
    _, near = NearestNeighbors(n_neighbors=10).fit(pp).kneighbors(pv)
    for n in counts:
        base, spread = [], []
        for seed in range(1, a.draws + 1):
            idx = draw(yp, n, seed)
            base.append(probe_auc(xp, yp, xv, yv, idx))
            y = -np.ones(len(yp), int)
            y[idx] = yp[idx]
            ls = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.9, max_iter=100).fit(pp, y)
            spread.append(roc_auc_score(yv, ls.label_distributions_[:, 1][near].mean(1)))
        report("logistic regression (baseline)", n, base)
        report("label spreading, 10-NN graph", n, spread)

    # Averaging over the 8 square symmetries, on the first --pool training objects.
    images = {"tr": np.load(a.train / "images.npy", mmap_mode="r")[: a.pool], "val": np.load(a.val / "images.npy")}
    emb = {"tr": [], "val": []}
    for k in range(8):
        for part, img in images.items():
            # Named by size, so that a cache of another --pool is not reused.
            out = a.work / f"emb-{part}{len(img)}-sym{k}"
            path = a.work / f"{part}{len(img)}-sym{k}.npy"
            if not (out / "embeddings.npy").exists():
                b = np.rot90(np.asarray(img), k % 4, axes=(1, 2))  # [n, h, w, bands]
                np.save(path, np.ascontiguousarray(b[:, :, ::-1] if k >= 4 else b))
            emb[part].append(embed(a.tidalscope, a.encoder, path, out)[0])
            path.unlink(missing_ok=True)
    yt = yp[: a.pool]
    for n in counts:
        single, mean8 = [], []
        for seed in range(1, a.draws + 1):
            idx = draw(yt, n, seed)
            single.append(probe_auc(emb["tr"][0], yt, emb["val"][0], yv, idx))
            mean8.append(probe_auc(sum(emb["tr"]) / 8, yt, sum(emb["val"]) / 8, yv, idx))
        report("logistic regression, one view", n, single)
        report("logistic regression, 8 symmetries averaged", n, mean8)


if __name__ == "__main__":
    main()
