"""The Python package against the command line: the same model and data
give the same scores, embeddings, search hits and simulated images."""

import json
import os
import warnings

import numpy as np
import pytest

import tidalscope as ts
from conftest import REPO, read_csv


def cli_scores(cli, data, out):
    cli("predict", "--model", "clf", "--data", data, "--out", out)
    header, rows = read_csv(cli.path(out))
    col = header.index("score")
    return [r[0] for r in rows], np.array([float(r[col]) for r in rows])


def test_predict_equals_the_cli_in_any_layout_dtype_and_byte_order(cli, images):
    ids, want = cli_scores(cli, "npy/images.npy", "p/scores.csv")
    clf = ts.load_classifier(cli.path("clf"))
    got = clf.predict(images)
    assert got.dtype == np.float32 and got.shape == (40,)
    # The CLI writes six decimals.
    np.testing.assert_allclose(got, want, atol=1e-6)
    chw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(clf.predict(chw), got)
    np.testing.assert_array_equal(clf.predict(chw, layout="chw"), got)
    np.testing.assert_array_equal(clf.predict(images.astype(">f8")), got)
    strided = np.asfortranarray(images)  # same values, other strides
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(clf.predict(strided), got)
    np.testing.assert_array_equal(clf.predict(images[5]), got[5:6])
    assert clf.bands == ["g", "r", "i", "z", "y"]
    # The quick preset's network also sees the residuals: the repr says so.
    assert "rotational residuals" in repr(clf) and "rotational residuals" in repr(ts.load_encoder(cli.path("enc")))


def test_fits_arrays_read_by_astropy_work_unchanged(cli):
    fits = pytest.importorskip("astropy.io.fits")
    ids, want = cli_scores(cli, "sim/catalog.csv", "f/scores.csv")
    header, rows = read_csv(cli.path("sim", "catalog.csv"))
    files = [header.index(f"file_{b}") for b in "grizy"]
    # One big-endian plane per band, as astropy gives it: [N, C, H, W].
    planes = [[fits.getdata(cli.path("sim", r[c])) for c in files] for r in rows]
    assert planes[0][0].dtype.byteorder == ">"
    cube = np.empty((len(rows), 5) + planes[0][0].shape, dtype=planes[0][0].dtype)
    for i, p in enumerate(planes):
        cube[i] = p
    got = ts.load_classifier(cli.path("clf")).predict(cube)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_predict_catalog_is_the_cli_table_and_shards_concatenate(cli):
    cli("predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "c/scores.csv")
    header, rows = read_csv(cli.path("c", "scores.csv"))
    clf = ts.load_classifier(cli.path("clf"))
    table = clf.predict_catalog(cli.path("sim", "catalog.csv"))
    assert list(table) == header
    assert header[:5] == ["id", "label", "score", "nonfinite_fraction", "constant_bands"]
    assert table["id"].dtype == np.int64 and table["nonfinite_fraction"].dtype == np.float64
    # Band names, text even when no object has a band of one value.
    assert table["constant_bands"].dtype.kind == "U" and set(table["constant_bands"]) == {""}
    np.testing.assert_array_equal(table["id"], [int(r[0]) for r in rows])
    np.testing.assert_array_equal(table["score"], [float(r[header.index("score")]) for r in rows])
    assert table["kind"].dtype.kind == "U"
    parts = [clf.predict_catalog(cli.path("sim", "catalog.csv"), shard=(k, 3)) for k in range(3)]
    np.testing.assert_array_equal(np.concatenate([p["score"] for p in parts]), table["score"])
    astropy_table = pytest.importorskip("astropy.table")
    t = astropy_table.Table(table)
    assert len(t) == 40 and t.colnames == header
    pandas = pytest.importorskip("pandas")
    assert pandas.DataFrame(table).shape == (40, len(header))


def test_a_missing_object_file_is_a_warning_or_an_error(cli, tmp_path):
    import shutil
    shutil.copytree(cli.path("sim"), tmp_path / "sim")
    header, rows = read_csv(tmp_path / "sim" / "catalog.csv")
    missing = rows[5][header.index("file_r")]
    (tmp_path / "sim" / missing).unlink()
    clf = ts.load_classifier(cli.path("clf"))
    with pytest.warns(UserWarning, match=r"1 of 40 objects could not be read.*object 5"):
        table = clf.predict_catalog(tmp_path / "sim" / "catalog.csv")
    assert len(table["id"]) == 39 and 5 not in table["id"]
    with pytest.raises(ValueError, match=missing.split("/")[-1]):
        clf.predict_catalog(tmp_path / "sim" / "catalog.csv", errors="raise")


def test_embed_equals_the_cli_and_search_finds_the_cli_neighbours(cli, images):
    cli("embed", "--encoder", "enc", "--data", "npy/images.npy", "--out", "emb", "--color-by", "none")
    want = np.load(cli.path("emb", "embeddings.npy"))
    enc = ts.load_encoder(cli.path("enc"))
    emb = enc.embed(images)
    assert emb.shape == want.shape == (40, enc.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, want, rtol=1e-6, atol=1e-7)
    # The encoder inside the classifier folder is the same network, fine-tuned.
    assert ts.load_encoder(cli.path("clf")).embed(images).shape == (40, enc.dim)

    cli("search", "--embeddings", "emb", "--query", "17", "--k", "5", "--out", "found")
    header, rows = read_csv(cli.path("found", "neighbours.csv"))
    idx, sim = ts.search(emb, query=emb[17], k=5, exclude=[17])
    assert idx.dtype == np.int64 and sim.dtype == np.float32
    np.testing.assert_array_equal(idx, [int(r[header.index("id")]) for r in rows])
    np.testing.assert_allclose(sim, [float(r[header.index("similarity")]) for r in rows], atol=1e-6)
    # Without exclusion the query is its own best match; several queries at once.
    idx2, sim2 = ts.search(emb, query=emb[[17, 3]], k=2)
    assert idx2.shape == (2, 2) and idx2[0, 0] == 17 and idx2[1, 0] == 3
    np.testing.assert_allclose(sim2[:, 0], 1.0, atol=1e-5)


def test_simulate_is_bit_identical_to_the_cli(cli, images):
    got, catalog = ts.simulate(40, size=32)
    assert got.dtype == np.float32 and got.shape == (40, 32, 32, 5)
    assert got.tobytes() == images.tobytes()
    header, rows = read_csv(cli.path("npy", "catalog.csv"))
    assert list(catalog) == header
    np.testing.assert_array_equal(catalog["label"], [int(r[1]) for r in rows])
    np.testing.assert_array_equal(catalog["host_mag_r"], [float(r[header.index("host_mag_r")]) for r in rows])
    other, _ = ts.simulate(40, size=32, seed=2)
    assert other.tobytes() != got.tobytes()
    lsst, _ = ts.simulate(2, survey="lsst-y10", size=32)
    assert lsst.shape == (2, 32, 32, 5)
    # The field and the hosts scaled: the same labels and host magnitudes
    # (drawn before either), the radii 1.5 times as large.
    crowded, crowded_cat = ts.simulate(40, size=32, crowding=3.0, host_size=1.5)
    assert crowded.tobytes() != got.tobytes()
    np.testing.assert_array_equal(crowded_cat["label"], catalog["label"])
    np.testing.assert_array_equal(crowded_cat["host_mag_r"], catalog["host_mag_r"])
    # The catalogue gives r_half to 1e-4 arcsec: 1.5 × a rounded value is
    # within 1.25e-4 of the rounded 1.5 × value.
    np.testing.assert_allclose(crowded_cat["r_half"], 1.5 * np.asarray(catalog["r_half"]), rtol=0, atol=1.5e-4)
    # Features on brighter host light: the same objects, other pixels.
    faint, faint_cat = ts.simulate(40, size=32, feature_contrast=-0.5)
    assert faint.tobytes() != got.tobytes()
    np.testing.assert_array_equal(faint_cat["label"], catalog["label"])
    with pytest.raises(ValueError, match="feature contrast"):
        ts.simulate(1, size=32, feature_contrast=4.0)


def test_read_gives_every_format_as_the_cli_reads_it(cli, images):
    from_npy, cat = ts.read(cli.path("npy", "images.npy"))
    np.testing.assert_array_equal(from_npy, images)
    assert list(cat) == ["id"] and list(cat["id"]) == list(range(40))
    folder, cat = ts.read(cli.path("npy"))
    np.testing.assert_array_equal(folder, images)
    assert cat["label"].dtype == np.int64 and "host_mag_r" in cat
    fits_images, cat = ts.read(cli.path("sim", "catalog.csv"))
    assert fits_images.shape == (40, 32, 32, 5) and fits_images.dtype == np.float32
    # Reading FITS with tidalscope or astropy gives the same pixels.
    fits = pytest.importorskip("astropy.io.fits")
    header, rows = read_csv(cli.path("sim", "catalog.csv"))
    plane = fits.getdata(cli.path("sim", rows[0][header.index("file_i")]))
    np.testing.assert_array_equal(fits_images[0, :, :, 2], plane)
    # A tf.data folder: its id and label keys are the id and label columns.
    cli("convert", "sim/catalog.csv", "tf", "--to", "tfdata")
    tf_images, cat = ts.read(cli.path("tf"))
    np.testing.assert_array_equal(tf_images, fits_images)
    assert list(cat) == ["id", "label"] and list(cat["id"]) == list(range(40))


def test_lupton_rgb_makes_an_image_to_look_at(images):
    rgb = ts.lupton_rgb(images[0])
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    assert rgb.max() > 0
    # Last row first: north up under imshow. A bright pixel in row 0 (FITS
    # order: the bottom) lands in the last output row.
    lit = images[0].copy()
    lit[0, 5, :3] = 100 * lit.max()
    out = ts.lupton_rgb(lit)
    brightest = np.unravel_index(out.astype(int).sum(-1).argmax(), out.shape[:2])
    assert tuple(int(i) for i in brightest) == (31, 5)
    assert (ts.lupton_rgb(images[0], stretch=1e6) <= rgb).all()


def test_imported_keras_models_reproduce_tensorflow(cli):
    fx = REPO / "tests" / "fixtures" / "keras-paper"
    cli("import-keras", fx / "classifier", "--out", "keras-clf", "--normalisation", "none")
    x = np.load(fx / "input_128.npy")
    got = ts.load_classifier(cli.path("keras-clf")).predict(x)
    want = np.load(fx / "expected_classifier.npy").reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_preprocess_gives_what_the_network_takes(cli, images):
    clf = ts.load_classifier(cli.path("clf"))
    x = clf.preprocess(images)
    # The test model: unbinned, a 24-pixel view, bands and both residuals.
    assert x.dtype == np.float32 and x.shape == (40, 24, 24, 15)
    names = clf.input_channels
    assert names[:5] == clf.bands and names[5:7] == ["g_residual", "r_residual"] and names[10] == "g_mirror"
    assert ts.load_encoder(cli.path("enc")).input_channels == names
    # The band channels by the documented rule: asinh(x / σ_b / 3) of the view.
    with open(cli.path("clf", "preprocess.json")) as f:
        sigma = np.array(json.load(f)["normalisation"]["sigma"])
    view = images[:, 4:28, 4:28, :].astype(np.float64)
    np.testing.assert_allclose(x[..., :5], np.arcsinh(view / (3 * sigma[:5])), rtol=1e-5, atol=1e-6)
    # An image symmetric under the half turn about its centre has no
    # rotational residual; the others have one.
    symmetric = images[:1] + images[:1, ::-1, ::-1]
    assert not clf.preprocess(symmetric)[..., 5:10].any()
    assert (np.abs(x[..., 5:10]).max(axis=(1, 2, 3)) > 0).all()
    # Layouts and single images as `predict` takes them.
    np.testing.assert_array_equal(clf.preprocess(images[3]), x[3:4])
    np.testing.assert_array_equal(clf.preprocess(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), x)


def keras_or_skip():
    """Keras 3 with TensorFlow, the reference pipeline's client: CI installs
    it and sets TIDALSCOPE_REQUIRE_KERAS=1, so there a missing Keras fails
    instead of skipping."""
    if os.environ.get("TIDALSCOPE_REQUIRE_KERAS"):
        import keras

        return keras
    return pytest.importorskip("keras")


def test_the_keras_exports_compute_what_predict_and_embed_do(cli, images):
    keras = keras_or_skip()
    clf = ts.load_classifier(cli.path("clf"))
    x = clf.preprocess(images)
    cli("export-keras", "--model", "clf", "--out", "clf-export.keras")
    model = keras.models.load_model(cli.path("clf-export.keras"))
    np.testing.assert_allclose(model.predict(x, verbose=0).reshape(-1), clf.predict(images), atol=2e-5)
    # The encoder's export gives its representations.
    enc = ts.load_encoder(cli.path("enc"))
    cli("export-keras", "--model", "enc", "--out", "enc-export.keras")
    model = keras.models.load_model(cli.path("enc-export.keras"))
    want = enc.embed(images)
    got = model.predict(enc.preprocess(images), verbose=0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_shapes_bands_and_files_raise_the_right_exception(cli, images, tmp_path):
    clf = ts.load_classifier(cli.path("clf"))
    with pytest.raises(ValueError, match=r"\[N, H, W, C\].*shape \[40, 5120\]"):
        clf.predict(images.reshape(40, -1))
    with pytest.raises(ValueError, match="3 bands.*expects 5|expects 5.*3"):
        clf.predict(images[..., :3])
    with pytest.raises(ValueError, match=r"smaller than the model's 24×24"):
        clf.predict(images[:, :16, :16])
    with pytest.raises(ValueError, match="not a real number type"):
        clf.predict(np.full((1, 32, 32, 5), "x"))
    blank = images[:2].copy()
    blank[1, :, :, 1] = np.nan
    with pytest.raises(ValueError, match="image 1: band r has no finite pixel"):
        clf.predict(blank)
    with pytest.raises(ValueError, match="unknown layout"):
        clf.predict(images, layout="hcw")
    with pytest.raises(ValueError, match="unknown device"):
        ts.load_classifier(cli.path("clf"), device="tpu")
    with pytest.raises(FileNotFoundError, match="nowhere: no such file"):
        ts.load_classifier(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a classifier folder"):
        ts.load_classifier(cli.path("enc"))
    with pytest.raises(FileNotFoundError):
        ts.read(tmp_path / "nothing.npy")
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(OSError, match="corrupt.npy"):
        ts.read(corrupt)
    broken = tmp_path / "clf"
    import shutil
    shutil.copytree(cli.path("clf"), broken)
    weights = next(p for p in broken.iterdir() if p.suffix == ".bpk")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OSError, match=weights.name):
        ts.load_classifier(broken)
    with pytest.raises(ValueError, match="unknown survey"):
        ts.simulate(1, survey="des")
    with pytest.raises(ValueError, match="crowding must lie in"):
        ts.simulate(1, crowding=-1.0)
    with pytest.raises(ValueError, match="query has 3 numbers"):
        ts.search(np.zeros((4, 8)), np.zeros(3))


def test_threads_can_be_set_and_results_do_not_change(cli, images):
    clf = ts.load_classifier(cli.path("clf"))
    before = clf.predict(images)
    ts.set_threads(1)
    try:
        assert ts.get_threads() == 1
        np.testing.assert_array_equal(clf.predict(images), before)
    finally:
        ts.set_threads(0)


def test_the_gil_is_released_while_the_network_runs(cli, images):
    import threading
    clf = ts.load_classifier(cli.path("clf"))
    many = np.concatenate([images] * 25)
    worker = threading.Thread(target=clf.predict, args=(many,))
    ticks = 0
    worker.start()
    while worker.is_alive():
        ticks += 1
    worker.join()
    # Holding the GIL, the call would let this loop run a handful of times
    # at most (Python's switch interval is 5 ms).
    assert ticks > 1000, ticks


def test_help_shows_the_documentation():
    assert "Tidal-feature probabilities" in ts.Classifier.predict.__doc__
    import inspect
    assert str(inspect.signature(ts.load_classifier)) == "(path, device='cpu')"
    assert "predict_catalog" in dir(ts.Classifier)


def test_the_readme_example_runs_as_written(cli, tmp_path, monkeypatch):
    import re
    import shutil
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Python\n"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    # The folders `demo` makes, here from the tiny models.
    demo = tmp_path / "runs" / "demo"
    shutil.copytree(cli.path("clf"), demo / "classifier-finetune-all")
    shutil.copytree(cli.path("enc"), demo / "encoder")
    shutil.copytree(cli.path("npy"), demo / "test")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md (Python)", "exec"), scope)
    assert scope["scores"].shape == (200,) and len(scope["table"]) == 200
    assert scope["idx"].shape == (5,) and 17 not in scope["idx"]
    assert scope["rgb"].shape == (128, 128, 3)
    assert len(scope["scored"]["score"]) == 10
    assert scope["x"].shape[0] == 200 and scope["x"].shape[-1] == len(scope["clf"].input_channels)


def test_one_model_serves_several_threads_at_once(cli, images):
    from concurrent.futures import ThreadPoolExecutor
    clf = ts.load_classifier(cli.path("clf"))
    want = clf.predict(images)
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(clf.predict, images) for _ in range(8)]
        for r in runs:
            np.testing.assert_array_equal(r.result(timeout=60), want)


def test_fits_and_parquet_catalogues_from_the_cli_read_back_in_astropy(cli):
    table = pytest.importorskip("astropy.table")
    pytest.importorskip("pyarrow")
    for k in range(2):
        cli("predict", "--model", "clf", "--data", "sim/catalog.csv", "--shard", f"{k}/2",
            "--out", f"fparts/scores.{k}-of-2.csv")
    for ext in ("fits", "parquet"):
        cli("collect", "--from", "fparts", "--out", f"fits-out/merged.{ext}")
        cli("predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", f"fits-out/scores.{ext}")
    cli("predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "fits-out/scores.csv")
    header, rows = read_csv(cli.path("fits-out", "scores.csv"))
    for name in ("scores.fits", "merged.fits", "scores.parquet", "merged.parquet"):
        t = table.Table.read(cli.path("fits-out", name))
        assert t.colnames == header, name
        # FITS is big-endian: compare kind and size.
        types = {c: (t[c].dtype.kind, t[c].dtype.itemsize) for c in ("id", "label", "score", "nonfinite_fraction")}
        assert types == {"id": ("i", 8), "label": ("i", 8), "score": ("f", 8), "nonfinite_fraction": ("f", 8)}
        assert t["kind"].dtype.kind in "US"
        # astropy masks empty strings (mask_invalid): none named either way.
        constant = np.ma.filled(np.ma.asarray(t["constant_bands"]), "")
        assert t["constant_bands"].dtype.kind in "US" and set(constant) == {""}, name
        np.testing.assert_array_equal(t["id"], [int(r[0]) for r in rows])
        np.testing.assert_array_equal(t["score"], [float(r[header.index("score")]) for r in rows])
        assert list(t["kind"]) == [r[header.index("kind")] for r in rows]
        assert t.meta["ORIGIN"] == "tidalscope" and len(t.meta["MODELSHA"]) == 64
    # pandas reads the Parquet file with the same columns and values.
    pandas = pytest.importorskip("pandas")
    df = pandas.read_parquet(cli.path("fits-out", "scores.parquet"))
    assert list(df.columns) == header and str(df["id"].dtype) == "int64"
    np.testing.assert_array_equal(df["score"], [float(r[header.index("score")]) for r in rows])
    assert not list(cli.path("fits-out").glob(".*"))  # no temporary file left


def test_embedding_tables_read_back_in_astropy_with_the_vectors(cli):
    table = pytest.importorskip("astropy.table")
    pytest.importorskip("pyarrow")
    for ext in ("csv", "fits", "parquet"):
        cli("embed", "--encoder", "enc", "--data", "sim/catalog.csv", "--out", f"emb-{ext}",
            "--table", f"emb-{ext}/table.{ext}", "--color-by", "none")
    vectors = np.load(cli.path("emb-fits", "embeddings.npy"))
    header, ids = read_csv(cli.path("emb-fits", "ids.csv"))
    n, d = vectors.shape
    t = table.Table.read(cli.path("emb-fits", "table.fits"))
    assert t.colnames == header + ["embedding"]
    assert t["embedding"].shape == (n, d) and t["embedding"].dtype.kind == "f"
    np.testing.assert_array_equal(np.asarray(t["embedding"], dtype=np.float32), vectors)
    assert list(t["id"]) == [int(r[header.index("id")]) for r in ids]
    assert len(t.meta["ENCSHA"]) == 64
    for ext in ("parquet", "csv"):
        t = table.Table.read(cli.path(f"emb-{ext}", f"table.{ext}"))
        cols = [f"embedding_{k}" for k in range(d)]
        assert t.colnames == header + cols
        got = np.stack([np.asarray(t[c], dtype=np.float32) for c in cols], axis=1)
        np.testing.assert_array_equal(got, np.load(cli.path(f"emb-{ext}", "embeddings.npy")))
        if ext == "parquet":
            assert t["embedding_0"].dtype == np.float32
