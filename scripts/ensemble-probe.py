"""The 50-label probe of an ensemble of separately pretrained encoders,
against each encoder alone (the README's "More levers at the protocol's
length"): each encoder's representation is whitened (its leading principal
components holding 95% of the variance over the unlabelled training set),
an L2 logistic regression is fitted on the drawn labels with its strength
chosen by 5-fold cross-validation, and the ensemble scores each object by
the mean of the encoders' standardised decision values. Besides each
AUC it prints the ensemble's gain over the mean of its members alone, and
each encoder's and the ensemble's paired difference from the first
`--encoder`.

Draws are balanced and identical for every encoder and the ensemble, so
the differences are paired. With `--by-kind CATALOG` (the validation set's
`catalog.csv`) it also prints, per label count, each encoder's AUC for
each kind of feature alone: the objects with tidal features whose first
listed type is that kind against every object without tidal features. Scores are ROC AUC on the `--val` set; use a
validation split, never the test set. Calls `tidalscope embed` for the
representations (reused from `--work` when present). Not part of the
tests; needs `pip install numpy scikit-learn`.

    python3 scripts/ensemble-probe.py --tidalscope target/release/tidalscope \\
        --encoder enc40 --encoder enc40s2 --train train --val val --work ens [--draws 20] \\
        [--by-kind val/catalog.csv]
"""
import argparse
import csv
import hashlib
import subprocess
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score

warnings.filterwarnings("ignore")


def embed(tidalscope, encoder, data, out):
    """Representations, labels and ids of `data` under `encoder`, cached in `out`."""
    if not (out / "embeddings.npy").is_file():
        subprocess.run(
            [tidalscope, "embed", "--encoder", encoder, "--data", data, "--out", str(out), "--color-by", "none"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    x = np.load(out / "embeddings.npy").astype(np.float64)
    with open(out / "ids.csv") as f:
        rows = list(csv.DictReader(f))
    return x, np.array([int(r["label"]) for r in rows]), [r["id"] for r in rows]


def kinds_of(catalog, ids, labels):
    """Each object's kind: its first listed feature type if it is labelled
    tidal, "" (a negative) otherwise."""
    with open(catalog) as f:
        first = {r["id"]: r["feature_types"].split(";")[0] for r in csv.DictReader(f)}
    missing = [i for i in ids if i not in first]
    if missing:
        raise SystemExit(f"{catalog}: no row for object {missing[0]} of the validation set")
    return np.array([first[i] if label == 1 else "" for i, label in zip(ids, labels)])


def whitening(pool, fraction=0.95):
    """Projection onto the whitened leading components of `pool`."""
    mean = pool.mean(0)
    values, vectors = np.linalg.eigh(np.cov(pool - mean, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    k = int(np.searchsorted(np.cumsum(values) / values.sum(), fraction) + 1)
    projection = vectors[:, :k] / np.sqrt(values[:k])
    return lambda x: (x - mean) @ projection


def paired(d):
    """A paired difference over draws: mean ± its standard error."""
    return f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tidalscope", required=True)
    p.add_argument("--encoder", action="append", required=True, help="repeat: two or more encoder folders")
    p.add_argument("--train", required=True, help="the labelled pool (and the unlabelled set whitening reads)")
    p.add_argument("--val", required=True, help="a validation set, never the test set")
    p.add_argument("--work", required=True)
    p.add_argument("--labels", default="25,50,100,300")
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--by-kind", metavar="CATALOG", help="the validation set's catalog.csv: AUC per kind of feature")
    a = p.parse_args()
    if len(a.encoder) < 2:
        p.error("give two or more --encoder folders")
    work = Path(a.work)
    features, y_train, y_val = [], None, None
    for enc in a.encoder:
        # Cached under the encoder's own path, so one --work serves many pairs.
        key = f"{Path(enc).name}-{hashlib.sha1(str(Path(enc).resolve()).encode()).hexdigest()[:8]}"
        x_train, y_train, _ = embed(a.tidalscope, enc, a.train, work / f"{key}-train")
        x_val, y_val, ids_val = embed(a.tidalscope, enc, a.val, work / f"{key}-val")
        w = whitening(x_train)
        features.append((w(x_train), w(x_val)))
    names = [Path(e).name for e in a.encoder] + ["ensemble"]
    kinds = kinds_of(a.by_kind, ids_val, y_val) if a.by_kind else None
    kind_names = sorted(set(kinds) - {""}) if a.by_kind else []
    pos, neg = np.where(y_train == 1)[0], np.where(y_train == 0)[0]
    for n in [int(v) for v in a.labels.split(",")]:
        aucs = {m: [] for m in names}
        by_kind = {(m, k): [] for m in names for k in kind_names}
        for seed in range(a.draws):
            rng = np.random.default_rng(1000 * n + seed)
            idx = np.concatenate([rng.choice(pos, n // 2, replace=False), rng.choice(neg, n - n // 2, replace=False)])
            scores = []
            for (z_train, z_val), name in zip(features, names):
                fit = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5, max_iter=2000).fit(z_train[idx], y_train[idx])
                s = fit.decision_function(z_val)
                aucs[name].append(roc_auc_score(y_val, s))
                scores.append(s / s.std())
            scores.append(np.mean(scores, axis=0))
            for name, s in zip(names, scores):
                if name == "ensemble":
                    aucs[name].append(roc_auc_score(y_val, s))
                for k in kind_names:
                    keep = (kinds == "") | (kinds == k)
                    by_kind[(name, k)].append(roc_auc_score(y_val[keep], s[keep]))
        alone = np.mean([aucs[m] for m in names[:-1]], axis=0)
        first = np.array(aucs[names[0]])
        line = "  ".join(f"{m} {np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" for m, v in aucs.items())
        against = "  ".join(f"{m} {paired(np.array(v) - first)}" for m, v in list(aucs.items())[1:])
        print(f"{n:5d} labels: {line}  ensemble − mean alone {paired(np.array(aucs['ensemble']) - alone)}")
        print(f"{'':13}paired against {names[0]} (± s.e. over draws): {against}")
        for k in kind_names:
            count = int((kinds == k).sum())
            line = "  ".join(f"{m} {np.mean(by_kind[(m, k)]):.3f}" for m in names)
            print(f"{'':13}{k} ({count} objects): {line}")


if __name__ == "__main__":
    main()
