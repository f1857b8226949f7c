"""Cutouts cut from coadd images by the command line are pixel for pixel
the cutouts astropy's Cutout2D makes on the same images and WCS (TAN and
TAN-SIP, a different WCS in every band, objects on edges, two overlapping
tiles)."""

import numpy as np
import pytest

from conftest import Cli, read_csv

fits = pytest.importorskip("astropy.io.fits")
wcs_mod = pytest.importorskip("astropy.wcs")
nddata = pytest.importorskip("astropy.nddata")
coordinates = pytest.importorskip("astropy.coordinates")

SIZE = 32  # the test model's input size
BANDS = ["g", "r", "i", "z", "y"]


def band_header(band, tile):
    """A different WCS per band and tile: plain TAN with a CD matrix (g, z),
    TAN with PC+CDELT (r), and TAN-SIP (i, y); tile 1 is shifted by 150
    pixels in x."""
    scale = 0.168 / 3600
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"] = 100.5 - 150 * tile + {"g": 0.0, "r": 3.25, "i": -7.5, "z": 1.0, "y": -2.0}[band]
    h["CRPIX2"] = 90.0 + {"g": 0.0, "r": -2.0, "i": 4.75, "z": 0.5, "y": 1.0}[band]
    h["RADESYS"] = "ICRS"
    if band in "gz":
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 0.0, 0.0, scale
    elif band == "r":
        angle = np.radians(0.3)
        h["CDELT1"], h["CDELT2"] = -scale * 1.001, scale
        h["PC1_1"], h["PC1_2"] = np.cos(angle), -np.sin(angle)
        h["PC2_1"], h["PC2_2"] = np.sin(angle), np.cos(angle)
    else:
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 2e-8, -1e-8, scale
        h["A_ORDER"], h["B_ORDER"] = 2, 2
        h["A_2_0"], h["A_1_1"], h["A_0_2"] = 3e-5, -2e-5, 1e-5
        h["B_2_0"], h["B_1_1"], h["B_0_2"] = -1e-5, 2.5e-5, 2e-5
    return h


@pytest.fixture(scope="module")
def coadd(tmp_path_factory):
    root = tmp_path_factory.mktemp("coadd")
    rng = np.random.default_rng(5)
    shape = (170, 200)  # NAXIS2, NAXIS1
    tiles = []
    for t in range(2):
        files = {}
        for b in BANDS:
            data = rng.normal(size=shape).astype(np.float32)
            name = f"t{t}-{b}.fits"
            # Image in HDU 1 behind an empty primary, as HSC and LSST write.
            fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, band_header(b, t), name="IMAGE")]).writeto(
                root / name)
            files[b] = name
        tiles.append(files)
    # Positions spread over both tiles and their overlap, some on edges.
    w0 = wcs_mod.WCS(band_header("g", 0))
    # In g's pixels tile 0 spans x 0…200 and tile 1 x 150…350; the other
    # bands are offset by a few pixels. The last object is off both tiles.
    # (Not at whole pixels: with an even size a whole-pixel position is where
    # the first pixel is decided by rounding noise, in astropy as here.)
    px = np.concatenate([rng.uniform(10, 340, 40), [8.3, 199.4, 100.2, 100.7, 340.2, 420.0]])
    py = np.concatenate([rng.uniform(5, 160, 40), [85.4, 85.3, 2.6, 163.3, 80.6, 80.0]])
    ra, dec = w0.all_pix2world(px, py, 0)
    with open(root / "objects.csv", "w") as f:
        f.write("object_id,ra,dec,mag\n")
        for k, (a, d) in enumerate(zip(ra, dec)):
            f.write(f"{1000 + k},{float(a)!r},{float(d)!r},{20 + k * 0.1:.1f}\n")
    return root, tiles


def cutout(root, files, ra, dec):
    """astropy's cutout of every band, [H, W, C]."""
    sky = coordinates.SkyCoord(ra, dec, unit="deg", frame="icrs")
    planes = []
    for b in BANDS:
        with fits.open(root / files[b]) as hdul:
            data, header = hdul[1].data.astype(np.float32), hdul[1].header
        c = nddata.Cutout2D(data, sky, (SIZE, SIZE), wcs=wcs_mod.WCS(header), mode="partial",
                            fill_value=np.nan)
        planes.append(c.data)
    return np.stack(planes, axis=-1)


def depth(root, files, ra, dec):
    """How far inside every band's image the position lies (pixels)."""
    d = np.inf
    for b in BANDS:
        with fits.open(root / files[b]) as hdul:
            header, (ny, nx) = hdul[1].header, hdul[1].data.shape
        x, y = wcs_mod.WCS(header).world_to_pixel(coordinates.SkyCoord(ra, dec, unit="deg"))
        d = min(d, x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y)
    return d


def coadd_args(tiles):
    return [a for files in tiles for a in ("--coadd", ",".join(f"{b}={files[b]}" for b in BANDS))]


@pytest.fixture(scope="module")
def cli_cutouts(coadd):
    """The command line's cutouts of every object on the coadd
    (`convert --coadd`): images [N, H, W, C], catalogue header and rows."""
    root, tiles = coadd
    # The last object lies beyond both tiles: convert needs every object.
    _, rows = read_csv(root / "objects.csv")
    with open(root / "inside.csv", "w") as f:
        f.write("object_id,ra,dec,mag\n")
        for r in rows[:-1]:
            f.write(",".join(r) + "\n")
    Cli(root)("convert", "inside.csv", "cut", "--to", "npy", "--cutout-size", SIZE, *coadd_args(tiles))
    header, out = read_csv(root / "cut" / "catalog.csv")
    return np.load(root / "cut" / "images.npy"), header, out, rows


def test_coadd_cutouts_equal_astropy_cutout2d(coadd, cli_cutouts):
    root, tiles = coadd
    images, header, out, rows = cli_cutouts
    assert images.shape == (len(rows) - 1, SIZE, SIZE, len(BANDS))
    assert header[:2] == ["id", "label"] and header[-1] == "tile"
    assert sorted(r[0] for r in out) == sorted(r[0] for r in rows[:-1])
    ra_col, dec_col = header.index("ra"), header.index("dec")
    edges = 0
    for img, r in zip(images, out):
        ra, dec = float(r[ra_col]), float(r[dec_col])
        depths = [depth(root, files, ra, dec) for files in tiles]
        t = int(np.argmax(depths))
        assert r[-1] == f"tile{t}", (r, depths)
        want = cutout(root, tiles[t], ra, dec)
        # Pixel for pixel, NaN where the cutout leaves the image.
        np.testing.assert_array_equal(np.isnan(img), np.isnan(want), err_msg=f"object {r[0]}")
        np.testing.assert_array_equal(img[~np.isnan(img)], want[~np.isnan(want)], err_msg=f"object {r[0]}")
        edges += bool(np.isnan(img).any())
    assert edges >= 3, "the edge objects must be cut partially"


def test_objects_off_the_coadd_are_error_rows_and_edges_are_flagged(coadd, cli):
    root, tiles = coadd
    c = Cli(root)
    model = cli.path("clf")
    # One error row: the run completes and exits with status 3.
    run = c("predict", "--model", model, "--data", "objects.csv", "--cutout-size", SIZE, *coadd_args(tiles),
            "--out", "scores.csv", ok=False)
    assert run.returncode == 3, run.stderr
    header, scored = read_csv(root / "scores.csv")
    _, errors = read_csv(root / "scores.errors.csv")
    assert [e[0] for e in errors] == ["1045"], errors
    assert "off the coadd" in errors[0][2] and "line 47" in errors[0][2], errors[0]
    assert len(scored) == 45
    nonfinite = header.index("nonfinite_fraction")
    flagged = [r for r in scored if float(r[nonfinite]) > 0]
    assert 3 <= len(flagged) < 20
    run = (root / "scores.run.toml").read_text()
    assert "coadd = " in run and "failed = 1" in run
    # As a Parquet table the positions carry their unit.
    table = pytest.importorskip("astropy.table")
    pytest.importorskip("pyarrow")
    c("predict", "--model", model, "--data", "objects.csv", "--cutout-size", SIZE, *coadd_args(tiles),
      "--out", "scores.parquet", ok=False)
    t = table.Table.read(root / "scores.parquet")
    assert t.colnames == header and len(t) == 45
    assert str(t["ra"].unit) == "deg" and str(t["dec"].unit) == "deg"
    np.testing.assert_array_equal(t["id"], [int(r[0]) for r in scored])


def test_python_reads_coadd_cutouts_as_the_cli_cuts_them(coadd, cli_cutouts):
    ts = pytest.importorskip("tidalscope")
    root, tiles = coadd
    cut, _, out, _ = cli_cutouts
    dicts = [{b: str(root / files[b]) for b in BANDS} for files in tiles]
    images, table = ts.read(root / "inside.csv", coadd=dicts, cutout_size=SIZE)
    np.testing.assert_array_equal(images, cut)
    assert list(table["id"]) == [int(r[0]) for r in out]
    assert list(table["tile"]) == [r[-1] for r in out]
    # A bad object in a file is an OSError, as for any unreadable input.
    with pytest.raises(OSError, match="off the coadd"):
        ts.read(root / "objects.csv", coadd=dicts, cutout_size=SIZE)
    with pytest.raises(ValueError, match="same bands"):
        ts.read(root / "inside.csv", coadd=[dicts[0], {"g": dicts[1]["g"]}], cutout_size=SIZE)


def test_a_fits_table_catalogue_cuts_as_the_csv_does(coadd, cli_cutouts):
    """The same objects as a FITS binary table (astropy's), the way survey
    catalogues come: the same cutouts, ids and tiles as from the CSV."""
    table = pytest.importorskip("astropy.table")
    root, tiles = coadd
    cut, header, out, rows = cli_cutouts
    t = table.Table()
    t["object_id"] = np.array([int(r[0]) for r in rows[:-1]], dtype=np.int64)
    t["ra"] = np.array([float(r[1]) for r in rows[:-1]])
    t["dec"] = np.array([float(r[2]) for r in rows[:-1]])
    t["mag"] = np.array([float(r[3]) for r in rows[:-1]], dtype=np.float32)
    t.write(root / "inside.fits", overwrite=True)
    Cli(root)("convert", "inside.fits", "cut_fits", "--to", "npy", "--cutout-size", SIZE, *coadd_args(tiles))
    fits_header, fits_out = read_csv(root / "cut_fits" / "catalog.csv")
    np.testing.assert_array_equal(np.load(root / "cut_fits" / "images.npy"), cut)
    assert [r[0] for r in fits_out] == [r[0] for r in out]
    assert [r[-1] for r in fits_out] == [r[-1] for r in out]
    assert fits_header == header


def test_a_parquet_catalogue_cuts_as_the_csv_does(coadd, cli_cutouts):
    """The same objects as a Parquet file written by pandas (Snappy pages,
    its default) and by pyarrow with Zstandard, the way Rubin's catalogues
    come: the same cutouts, ids and tiles as from the CSV."""
    pandas = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    root, tiles = coadd
    cut, header, out, rows = cli_cutouts
    frame = pandas.DataFrame({
        "object_id": np.array([int(r[0]) for r in rows[:-1]], dtype=np.int64),
        "ra": [float(r[1]) for r in rows[:-1]],
        "dec": [float(r[2]) for r in rows[:-1]],
        "mag": np.array([float(r[3]) for r in rows[:-1]], dtype=np.float32),
    })
    frame.to_parquet(root / "inside.parquet")
    import pyarrow
    pq.write_table(pyarrow.Table.from_pandas(frame), root / "inside-zstd.parquet", compression="zstd")
    for name in ("inside.parquet", "inside-zstd.parquet"):
        folder = "cut-" + name.removesuffix(".parquet")
        Cli(root)("convert", name, folder, "--to", "npy", "--cutout-size", SIZE, *coadd_args(tiles))
        pq_header, pq_out = read_csv(root / folder / "catalog.csv")
        np.testing.assert_array_equal(np.load(root / folder / "images.npy"), cut)
        assert [r[0] for r in pq_out] == [r[0] for r in out]
        assert [r[-1] for r in pq_out] == [r[-1] for r in out]
        assert pq_header == header
