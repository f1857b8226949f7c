"""Type stubs for tidalscope: tidal features in deep survey images, from Python.

Images are NumPy arrays ``[N, H, W, C]`` or ``[N, C, H, W]`` (or one image
of three axes) of any real dtype, byte order and strides. Catalogues are
``dict[str, numpy.ndarray]``, which ``astropy.table.Table`` and
``pandas.DataFrame`` take directly.
"""

from os import PathLike
from typing import Literal, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

_Path = str | PathLike[str]
_Layout = Literal["auto", "hwc", "chw"]
Catalog = dict[str, npt.NDArray[np.generic]]
# Coadd images: one tile as {band: file}, a list of tiles, or a tile list CSV (tile,band,file).
_Coadd = dict[str, _Path] | list[dict[str, _Path]] | _Path

class Classifier:
    """A trained classifier (a ``finetune`` or ``import-keras`` folder)."""

    @property
    def bands(self) -> list[str]:
        """Bands the model expects, in channel order."""
    def predict(self, images: npt.ArrayLike, layout: _Layout | None = None) -> npt.NDArray[np.float32]:
        """Tidal-feature probabilities ``[N]`` of images in the model's bands and flux units."""
    def preprocess(self, images: npt.ArrayLike, layout: _Layout | None = None) -> npt.NDArray[np.float32]:
        """The network's input ``[N, h, w, C]`` (binned, cut to the view, residuals made,
        normalised), channels last: what the Keras model of ``export-keras`` takes."""
    @property
    def input_channels(self) -> list[str]:
        """Names of the network's input channels (``preprocess``'s last axis)."""
    def predict_catalog(
        self,
        path: _Path,
        shard: tuple[int, int] | None = None,
        format: str | None = None,
        layout: _Layout | None = None,
        image_key: str = "image",
        errors: Literal["warn", "raise"] = "warn",
        coadd: _Coadd | None = None,
        cutout_size: int = 128,
        ra_column: str = "ra",
        dec_column: str = "dec",
    ) -> Catalog:
        """Scores every object of a dataset, as ``tidalscope predict --data``: id, label, score, metadata."""

class Encoder:
    """A trained encoder (a ``pretrain`` folder, or a classifier's encoder)."""

    @property
    def dim(self) -> int:
        """Length of a representation."""
    @property
    def bands(self) -> list[str]:
        """Bands the encoder expects, in channel order."""
    def embed(self, images: npt.ArrayLike, layout: _Layout | None = None) -> npt.NDArray[np.float32]:
        """Representations ``[N, dim]``, as ``tidalscope embed`` writes them."""
    def preprocess(self, images: npt.ArrayLike, layout: _Layout | None = None) -> npt.NDArray[np.float32]:
        """The network's input ``[N, h, w, C]``, as ``Classifier.preprocess``."""
    @property
    def input_channels(self) -> list[str]:
        """Names of the network's input channels (``preprocess``'s last axis)."""

def load_classifier(path: _Path, device: str = "cpu") -> Classifier:
    """Loads a classifier folder; ``device`` is "cpu", "cuda" or "cuda:N"."""

def load_encoder(path: _Path, device: str = "cpu") -> Encoder:
    """Loads an encoder folder, or the encoder inside a classifier folder."""

def simulate(
    n: int,
    survey: Literal["hsc-ud", "lsst-y10"] = "hsc-ud",
    seed: int = 1,
    size: int = 128,
    tidal_fraction: float = 0.3,
    near_miss_fraction: float = 0.25,
    companion_probability: float = 0.15,
    crowding: float = 1.0,
    host_size: float = 1.0,
    feature_contrast: float = 1.0,
    sky_residual: float = 1.0,
) -> tuple[npt.NDArray[np.float32], Catalog]:
    """Labelled mock cutouts ``[N, size, size, 5]`` and their catalogue, bit for bit as ``tidalscope simulate``."""

def read(
    path: _Path,
    format: str | None = None,
    layout: _Layout | None = None,
    image_key: str = "image",
    coadd: _Coadd | None = None,
    cutout_size: int = 128,
    ra_column: str = "ra",
    dec_column: str = "dec",
) -> tuple[npt.NDArray[np.float32], Catalog]:
    """Every image of a dataset in any format the command line reads, ``[N, H, W, C]``, and its catalogue."""

def lupton_rgb(
    image: npt.ArrayLike,
    layout: _Layout | None = None,
    stretch: float | None = None,
    q: float = 10.0,
) -> npt.NDArray[np.uint8]:
    """An asinh colour composite ``[H, W, 3]`` (i, r, g) for ``matplotlib.pyplot.imshow``."""

def search(
    embeddings: npt.ArrayLike,
    query: npt.ArrayLike,
    k: int = 10,
    exclude: Sequence[int] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` most similar rows by cosine similarity: (indices, similarities), best first."""

def set_threads(threads: int) -> None:
    """Sets the number of compute threads (0: all cores)."""

def get_threads() -> int:
    """The number of compute threads."""
