"""Tile-compressed FITS images (fpack's `.fits.fz` layout, written here by
astropy, which compresses with cfitsio's code) read by the command line
exactly as astropy decompresses them: coadd bands quantised with RICE_1 and
dither, or GZIP_2 lossless, cut as astropy's Cutout2D cuts the decompressed
images; and a folder of compressed cutout cubes."""

import numpy as np
import pytest

from conftest import Cli, read_csv
from test_coadd import BANDS, SIZE, band_header, coadd_args, cutout

fits = pytest.importorskip("astropy.io.fits")
wcs_mod = pytest.importorskip("astropy.wcs")


def compression(k):
    """Alternate bands between lossy RICE_1 (dithered) and lossless GZIP_2."""
    if k % 2 == 0:
        return dict(compression_type="RICE_1", quantize_method=2, quantize_level=8.0, dither_seed=k + 1)
    return dict(compression_type="GZIP_2", quantize_level=0.0)


def test_compressed_coadd_bands_cut_as_astropy_cuts_them(tmp_path):
    rng = np.random.default_rng(11)
    files = {}
    for k, b in enumerate(BANDS):
        data = rng.normal(size=(170, 200)).astype(np.float32)
        data[60:64, 40:90] = np.nan  # a masked strip
        data[100:103, 10:30] = 0.0  # exact zeros (kept so by SUBTRACTIVE_DITHER_2)
        hdu = fits.CompImageHDU(data, band_header(b, 0), name="IMAGE", **compression(k))
        files[b] = f"{b}.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / files[b])
    px, py = rng.uniform(20, 180, 12), rng.uniform(20, 150, 12)
    ra, dec = wcs_mod.WCS(band_header("g", 0)).all_pix2world(px, py, 0)
    with open(tmp_path / "objects.csv", "w") as f:
        f.write("object_id,ra,dec\n")
        for k, (a, d) in enumerate(zip(ra, dec)):
            f.write(f"{k},{float(a)!r},{float(d)!r}\n")
    Cli(tmp_path)("convert", "objects.csv", "cut", "--to", "npy", "--cutout-size", SIZE, *coadd_args([files]))
    header, out = read_csv(tmp_path / "cut" / "catalog.csv")
    images = np.load(tmp_path / "cut" / "images.npy")
    assert images.shape == (12, SIZE, SIZE, len(BANDS))
    masked = 0
    for img, r in zip(images, out):
        want = cutout(tmp_path, files, float(r[header.index("ra")]), float(r[header.index("dec")]))
        np.testing.assert_array_equal(np.isnan(img), np.isnan(want), err_msg=f"object {r[0]}")
        np.testing.assert_array_equal(img[~np.isnan(img)], want[~np.isnan(want)], err_msg=f"object {r[0]}")
        masked += bool(np.isnan(img).any())
    assert masked >= 1, "some cutout must cross the masked strip"


def test_a_folder_of_compressed_cutouts_reads_as_astropy_reads_it(tmp_path):
    rng = np.random.default_rng(12)
    (tmp_path / "cutouts").mkdir()
    cubes = []
    for i in range(4):
        cube = rng.normal(size=(5, 24, 24)).astype(np.float32)
        hdu = fits.CompImageHDU(cube, name="IMAGE", tile_shape=(1, 8, 24), **compression(i))
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "cutouts" / f"obj{i}.fits.fz")
        with fits.open(tmp_path / "cutouts" / f"obj{i}.fits.fz") as f:
            cubes.append(np.asarray(f[1].data, dtype=np.float32))
    Cli(tmp_path)("convert", "cutouts", "out", "--to", "npy")
    header, rows = read_csv(tmp_path / "out" / "catalog.csv")
    assert [r[0] for r in rows] == [f"obj{i}" for i in range(4)]
    images = np.load(tmp_path / "out" / "images.npy")
    np.testing.assert_array_equal(images, np.stack([c.transpose(1, 2, 0) for c in cubes]))
