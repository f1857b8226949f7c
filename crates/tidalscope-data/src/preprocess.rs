//! What every image goes through before a model sees it, stored with each
//! trained model so inference repeats it exactly: the input channels (the
//! bands, their rotational and mirror residuals: [`Channels`]), optional
//! k×k binning, the asinh normalisation, and the view size the model was
//! trained on.
//! Inference makes only the centre view the model reads
//! ([`Preprocess::apply_view`]), with the same values as the whole image.

use crate::normalise::{BandMismatch, Normaliser};
use crate::residual::{Centring, Channels, Resample, RowResidual, Turn};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tidalscope_core::binning::block_means;
use tidalscope_core::{multiversion, Band, Cutout};
use tidalscope_io::source::{Format, Loaded, Pixels, SourceInfo};

/// Binning, normalisation and crop of a model's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Pixels averaged in k×k blocks before anything else (1 = none).
    /// Binning by 2 quarters the compute and doubles the S/N per pixel of
    /// extended features, at the cost of resolution.
    pub bin: usize,
    /// Side of the (centre or random) crop fed to the network, in binned
    /// pixels.
    pub crop: usize,
    /// Normalisation (σ_b measured after binning, one per input channel).
    pub normalisation: Normaliser,
    /// The input channels made from the image's bands, before binning
    /// (models written before this existed: the bands as given).
    #[serde(default)]
    pub channels: Channels,
    /// How finely the residuals' centre is kept (models written before
    /// it existed: to the half pixel).
    #[serde(default)]
    pub centring: Centring,
}

/// Errors of preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The image does not fit the model.
    #[error("{0}")]
    Mismatch(String),
    /// The image's bands are not the model's.
    #[error(transparent)]
    Bands(#[from] crate::normalise::BandMismatch),
    /// The stored file is unreadable.
    #[error("{path}: {message}")]
    File {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// A band holds no finite pixel: nothing in it can be measured, and a
    /// model fed zeros there would give a made-up score.
    #[error("band {band} has no finite pixel (all NaN or infinite)")]
    EmptyBand {
        /// The band's name.
        band: String,
    },
}

/// Averages `k×k` blocks (a trailing partial block is dropped). Non-finite
/// pixels are left out of their block's mean; a block with none finite is NaN.
pub fn bin(img: &Cutout, k: usize) -> Cutout {
    bin_counted(img, k).0
}

/// [`bin`], also returning how many of each band's pixels (in the whole
/// image, dropped partial blocks included) are finite: counted in the
/// same pass, so that preprocessing reads the image once.
fn bin_counted(img: &Cutout, k: usize) -> (Cutout, Vec<usize>) {
    let (out, mut finite) = match k {
        0 | 1 => return (img.clone(), (0..img.bands()).map(|b| finite_in(img.band(b))).collect()),
        2..=4 => bin_small(img, k),
        _ => bin_any(img, k),
    };
    // Pixels of the partial blocks: the right-hand columns of the binned
    // rows, then the rows below them.
    let (h, w, width) = (out.height() * k, out.width() * k, img.width());
    if w < width || h < img.height() {
        for (b, n) in finite.iter_mut().enumerate() {
            let band = img.band(b);
            // (An image 0 pixels wide has no rows to split.)
            *n += band[..h * width].chunks_exact(width.max(1)).map(|row| finite_in(&row[w..])).sum::<usize>();
            *n += finite_in(&band[h * width..]);
        }
    }
    (out, finite)
}

multiversion! {
    /// How many of `values` are finite. Counted in 32-bit lanes a block at a
    /// time, so that it compiles to vector compares (summed as one `usize`
    /// per value, it ran a value at a time).
    fn finite_in(values: &[f32]) -> usize {
        const LANES: usize = 16;
        // Each lane counts at most 2^16 values of a block: no overflow.
        let mut total = 0usize;
        for block in values.chunks(LANES << 16) {
            let mut lanes = [0u32; LANES];
            let mut chunks = block.chunks_exact(LANES);
            for chunk in &mut chunks {
                for (n, v) in lanes.iter_mut().zip(chunk) {
                    // Finite: the exponent is not all ones (compares on the
                    // bits, which vectorise as `is_finite` did not).
                    *n += u32::from((v.to_bits() & 0x7fff_ffff) < 0x7f80_0000);
                }
            }
            total += lanes.iter().map(|&n| n as usize).sum::<usize>();
            total += chunks.remainder().iter().filter(|v| v.is_finite()).count();
        }
        total
    }
}

multiversion! {
    /// [`bin_by`] for a block of 2, 3 or 4 pixels, compiled for
    /// the widest vectors the CPU has.
    fn bin_small(img: &Cutout, k: usize) -> (Cutout, Vec<usize>) {
        match k {
            2 => bin_by::<2>(img),
            3 => bin_by::<3>(img),
            4 => bin_by::<4>(img),
            _ => unreachable!("bin_small takes blocks of 2 to 4 pixels, not {k}"),
        }
    }
}

/// [`bin`] for a block size known at compile time. Each block's finite
/// pixels are added in the same order as [`bin_any`] (row by row, left to
/// right), so both give identical results; with `K` fixed, the loop over
/// a row's blocks is vectorised. Also returns each band's finite pixels
/// inside whole blocks.
#[inline(always)]
fn bin_by<const K: usize>(img: &Cutout) -> (Cutout, Vec<usize>) {
    let (h, w) = (img.height() / K, img.width() / K);
    let mut out = Cutout::zeros(img.bands(), h, w);
    let mut finite = vec![0; img.bands()];
    let src_w = img.width();
    let mut count = vec![0u32; w];
    for (b, finite) in finite.iter_mut().enumerate() {
        let src = img.band(b);
        let dst = out.band_mut(b);
        for (y, sum) in dst.chunks_exact_mut(w.max(1)).take(h).enumerate() {
            let rows = |dy: usize| &src[(y * K + dy) * src_w..];
            *finite += block_means::<K>(rows, sum, &mut count);
        }
    }
    (out, finite)
}

/// A rectangle of a binned image, in binned pixels: rows `y0..y0 + h`,
/// columns `x0..x0 + w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    y0: usize,
    x0: usize,
    h: usize,
    w: usize,
}

impl Window {
    /// The whole of `img` binned by `k`.
    fn all(img: &Cutout, k: usize) -> Self {
        let k = k.max(1);
        Self { y0: 0, x0: 0, h: img.height() / k, w: img.width() / k }
    }

    /// The window cut from `b`, the image binned.
    fn of(self, b: &Cutout) -> Cutout {
        self.scaled(1).cut(b)
    }

    /// The pixels of `img` that the window binned by `k` is made from.
    fn unbinned(self, img: &Cutout, k: usize) -> Cutout {
        self.scaled(k.max(1)).cut(img)
    }

    /// The window in pixels `k` times smaller.
    fn scaled(self, k: usize) -> Self {
        Self { y0: self.y0 * k, x0: self.x0 * k, h: self.h * k, w: self.w * k }
    }

    /// These pixels of `img`, as a cutout.
    fn cut(self, img: &Cutout) -> Cutout {
        let mut data = Vec::with_capacity(img.bands() * self.h * self.w);
        for band in 0..img.bands() {
            for row in img.band(band).chunks_exact(img.width().max(1)).skip(self.y0).take(self.h) {
                data.extend_from_slice(&row[self.x0..self.x0 + self.w]);
            }
        }
        Cutout::from_chw(img.bands(), self.h, self.w, data).expect("a window inside the image")
    }
}

/// The window `win` of `img`'s residual `turn` (the rotational or the
/// mirror one) binned by `k`: for blocks of 2 to 4, made a block-row at a
/// time, only the window's columns, into a few rows of scratch and binned
/// from there (the same values, added in the same order, as binning the
/// whole residual image, which is never made).
fn bin_residual(img: &Cutout, k: usize, turn: Turn, win: Window) -> Cutout {
    match k {
        2..=4 => bin_residual_small(img, k, turn, win),
        _ => win.of(&bin_counted(&crate::residual::whole_image(img, turn), k).0),
    }
}

multiversion! {
    /// [`bin_rows_by`] for a block of 2, 3 or 4 pixels, compiled for
    /// the widest vectors the CPU has (the mirror residual's
    /// interpolation forms no fused multiply-adds, so every variant gives
    /// the same bits).
    fn bin_residual_small(img: &Cutout, k: usize, turn: Turn, win: Window) -> Cutout {
        match k {
            2 => bin_rows_by::<2>(img, turn, win),
            3 => bin_rows_by::<3>(img, turn, win),
            4 => bin_rows_by::<4>(img, turn, win),
            _ => unreachable!("bin_residual_small takes blocks of 2 to 4 pixels, not {k}"),
        }
    }
}

/// The window `win` of the residual `turn` of `img` binned by `K`, made a
/// block-row at a time into `K` rows of scratch per band: the values of
/// the whole residual image binned ([`bin_by`] adds each block in the same
/// order), which is never made.
#[inline(always)]
fn bin_rows_by<const K: usize>(img: &Cutout, mut turn: impl RowResidual, win: Window) -> Cutout {
    let bands = img.bands();
    let mut out = Cutout::zeros(bands, win.h, win.w);
    // The window's unbinned columns; row dy of band b's block-row at
    // (dy · bands + b) · src_w.
    let xs = win.x0 * K..(win.x0 + win.w) * K;
    let src_w = xs.len();
    let mut rows = vec![0f32; K * bands * src_w];
    let mut count = vec![0u32; win.w];
    for y in 0..win.h {
        for (dy, block) in rows.chunks_exact_mut((bands * src_w).max(1)).enumerate() {
            turn.rows(img, (win.y0 + y) * K + dy, xs.clone(), block);
        }
        for b in 0..bands {
            let sum = &mut out.band_mut(b)[y * win.w..(y + 1) * win.w];
            block_means::<K>(|dy| &rows[(dy * bands + b) * src_w..], sum, &mut count);
        }
    }
    out
}

/// [`bin_by`] for any block size.
fn bin_any(img: &Cutout, k: usize) -> (Cutout, Vec<usize>) {
    let (h, w) = (img.height() / k, img.width() / k);
    let mut out = Cutout::zeros(img.bands(), h, w);
    let mut finite = vec![0; img.bands()];
    let src_w = img.width();
    for (b, finite) in finite.iter_mut().enumerate() {
        let src = img.band(b);
        let dst = out.band_mut(b);
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0.0f32, 0u32);
                for dy in 0..k {
                    for dx in 0..k {
                        let v = src[(y * k + dy) * src_w + x * k + dx];
                        if v.is_finite() {
                            s += v;
                            n += 1;
                        }
                    }
                }
                dst[y * w + x] = if n > 0 { s / n as f32 } else { f32::NAN };
                *finite += n as usize;
            }
        }
    }
    (out, finite)
}

impl Preprocess {
    /// Bins and normalises an image, checking it fits the model. Returns
    /// the image and how many of the given image's pixels were not finite
    /// (NaN, ±inf): the rule is that they are left out of binning and are 0
    /// after normalisation. An image with a band that has no finite pixel
    /// at all is refused ([`PreprocessError::EmptyBand`]).
    pub fn apply(&self, img: &Cutout) -> Result<(Cutout, usize), PreprocessError> {
        self.check(img)?;
        let (b, finite) = self.bin_channels(img, Window::all(img, self.bin));
        self.finish(b, &finite, img.shape())
    }

    /// [`apply`](Self::apply), keeping only the model's inference view (the
    /// centre `crop` × `crop` pixels, [`Augment::inference`]): to the bit
    /// what the view cuts from `apply`'s image, with the residuals made and
    /// the stretch applied only there (56% of the pixels at the quick
    /// preset's binning and view). The non-finite count is the whole
    /// image's, as `apply`'s.
    ///
    /// [`Augment::inference`]: crate::augment::Augment::inference
    pub fn apply_view(&self, img: &Cutout) -> Result<(Cutout, usize), PreprocessError> {
        self.check(img)?;
        let all = Window::all(img, self.bin);
        match self.view_of(all.h, all.w) {
            Some(view) => {
                let (b, finite) = self.bin_channels(img, view);
                self.finish(b, &finite, img.shape())
            }
            // Too small: `apply` says so.
            None => self.apply(img),
        }
    }

    /// The inference view of an image `h` × `w` after binning, `None`
    /// when it is smaller than the view.
    fn view_of(&self, h: usize, w: usize) -> Option<Window> {
        let c = self.crop;
        (h >= c && w >= c).then(|| {
            let (y0, x0) = crate::augment::Augment::inference_origin(h, w, c);
            Window { y0, x0, h: c, w: c }
        })
    }

    /// The window `win` of the model's channels made from `img`, binned,
    /// and each band's finite pixels in the whole of `img`.
    fn bin_channels(&self, img: &Cutout, win: Window) -> (Cutout, Vec<usize>) {
        let k = self.bin;
        let count = || (0..img.bands()).map(|b| finite_in(img.band(b))).collect::<Vec<_>>();
        // The bands binned; binning the whole image counts its finite
        // pixels on the way.
        let bands = || {
            if win == Window::all(img, k) {
                bin_counted(img, k)
            } else {
                (bin_counted(&win.unbinned(img, k), k).0, count())
            }
        };
        // Non-finite pixels are counted on the image as given: the
        // residual repeats each at its mirror.
        match self.channels {
            Channels::Image => bands(),
            Channels::Residual => (bin_residual(img, k, Turn::of(img, self.centring), win), count()),
            Channels::Both | Channels::All => {
                // Binning works band by band, so the bands and their
                // residuals binned apart and stacked are the stacked
                // channels binned, to the bit, without first copying the
                // full-resolution bands.
                let (bands, finite) = bands();
                // One centre for both residuals.
                let (turn, reflection) = match self.channels {
                    Channels::All => {
                        let reflection = Resample::reflection(img, self.centring);
                        (reflection.turn(), Some(reflection))
                    }
                    _ => (Turn::of(img, self.centring), None),
                };
                let residuals = bin_residual(img, k, turn, win);
                let mirrors = reflection.map(|r| bin_residual(img, k, Turn::Interpolated(r), win));
                let parts = [Some(&bands), Some(&residuals), mirrors.as_ref()];
                let parts: Vec<&Cutout> = parts.into_iter().flatten().collect();
                let mut data = Vec::with_capacity(parts.iter().map(|p| p.data().len()).sum());
                parts.iter().for_each(|p| data.extend_from_slice(p.data()));
                let stacked = Cutout::from_chw(parts.len() * img.bands(), win.h, win.w, data)
                    .expect("the bands and their residuals bin to the same shape");
                (stacked, finite)
            }
        }
    }

    /// Checks that `img` has the bands the model was fitted on.
    fn check(&self, img: &Cutout) -> Result<(), BandMismatch> {
        let n = self.normalisation.sigma.len() / self.channels.factor();
        if !self.normalisation.is_identity() && img.bands() != n {
            return Err(BandMismatch { got: img.bands(), expected: self.input_bands() });
        }
        Ok(())
    }

    /// How data's bands, by their names, reach the model's inputs, before
    /// any pixel goes in: `None` where they arrive in the model's order (or
    /// cannot be told, below); `Some(order)` where the data's own names are
    /// the model's survey bands in another order — plane `k` for the model
    /// is the data's plane `order[k]` (see
    /// `tidalscope_io::source::BandOrder`); an error naming the data where
    /// they cannot reach them:
    ///
    /// - a catalogue for a model whose recorded bands are known bands out
    ///   of wavelength order (`i,g,r,z,y`: pretrained on a catalogue
    ///   listing `file_i` first before its band columns were read in
    ///   wavelength order, or imported with `--bands` so): the catalogue's
    ///   planes arrive g, r, i, z, y and would not line up with its
    ///   channels;
    /// - data whose own band names (a FITS cube's `BAND1…` cards, image
    ///   extensions' EXTNAMEs, a catalogue's `file_<band>` columns, a
    ///   coadd's bands) include one the model was not trained on
    ///   (`u,g,r,i,z` for a g, r, i, z, y model), or one twice.
    ///
    /// Not checked, for want of names: data whose names are the defaults
    /// (`.npy`, tf.data and unnamed FITS planes: `b0, b1, …`, or
    /// `g, r, i, z, y` for five), names none of which is a survey band, a
    /// model whose bands are not survey bands, and a band count that
    /// differs (refused image by image).
    pub fn band_order(&self, info: &SourceInfo) -> Result<Option<Vec<usize>>, tidalscope_io::Error> {
        let names = self.input_bands();
        let Some(bands) = Band::parse_all(names.iter().map(String::as_str)) else {
            return Ok(None);
        };
        if info.format == Format::Catalog && !bands.is_sorted() {
            return Err(tidalscope_io::Error::format(
                &info.path,
                format!(
                    "the model's bands are recorded in the order {}, but a catalogue's file_<band> columns are read \
                     in wavelength order (g, r, i, z, y): give this model its data as a .npy or FITS cube in its own \
                     order",
                    names.join(",")
                ),
            ));
        }
        let data = &info.bands;
        if data.len() != bands.len() || *data == tidalscope_io::source::default_bands(data.len()) {
            return Ok(None);
        }
        let parsed: Vec<Option<Band>> = data.iter().map(|n| n.parse().ok()).collect();
        if parsed.iter().all(Option::is_none) || parsed.iter().zip(&bands).all(|(d, m)| *d == Some(*m)) {
            return Ok(None);
        }
        let order: Option<Vec<usize>> = bands.iter().map(|m| parsed.iter().position(|d| *d == Some(*m))).collect();
        let distinct = parsed.iter().flatten().collect::<std::collections::HashSet<_>>().len() == data.len();
        match order {
            Some(order) if distinct && parsed.iter().all(Option::is_some) => Ok(Some(order)),
            _ => Err(tidalscope_io::Error::format(
                &info.path,
                format!(
                    "its bands are {}, the model's {}: a plane would go to another band's input. Give the data in \
                     the model's bands (a cube's BAND1… cards, its image extensions, a catalogue's file_<band> \
                     columns, --coadd's bands)",
                    data.join(","),
                    names.join(",")
                ),
            )),
        }
    }

    /// [`band_order`](Self::band_order) for a caller that cannot reorder
    /// bands (pretraining's resume): data in another order is refused too.
    pub fn check_bands(&self, info: &SourceInfo) -> Result<(), tidalscope_io::Error> {
        match self.band_order(info)? {
            None => Ok(()),
            Some(_) => Err(tidalscope_io::Error::format(
                &info.path,
                format!(
                    "its bands are {} in this order, the model's {}: give the data in the model's order",
                    info.bands.join(","),
                    self.input_bands().join(",")
                ),
            )),
        }
    }

    /// The names of the bands an image must have (the model's input
    /// channels are made from them).
    pub fn input_bands(&self) -> Vec<String> {
        let names = &self.normalisation.bands;
        names[..names.len() / self.channels.factor()].to_vec()
    }

    /// The input bands of a prepared image (as [`apply`](Self::apply) or
    /// [`apply_view`](Self::apply_view) return it) whose pixels all hold
    /// one value: a band with no data there, such as one a pipeline filled
    /// with 0 where it had no coverage, or one masked (NaN, then 0 by the
    /// non-finite rule) except where it is 0. The network still reads the
    /// other bands, so such an object is scored, but its score is made
    /// from fewer bands than the model learnt from. A model of residuals
    /// only ([`Channels::Residual`]) has no band channels: its residual
    /// channels are read and named instead (one of one value is a band
    /// without data or exactly point-symmetric: nothing there either way).
    pub fn constant_bands(&self, image: &Cutout) -> Vec<String> {
        let names = self.input_bands();
        (0..names.len().min(image.bands()))
            .filter(|&b| {
                let band = image.band(b);
                band.first().is_some_and(|&v0| band.iter().all(|&v| v == v0))
            })
            .map(|b| names[b].clone())
            .collect()
    }

    /// [`apply_view`](Self::apply_view) to a record's pixels, loaded for
    /// it: readers that bin while they decode skip a pass over the whole
    /// image, with the same result to the bit (today a plain `.npy` of
    /// little-endian float32, pixel-major, 3 to 5 bands, binned by 2 to 4;
    /// everything else loads whole). Also returns the unbinned image's
    /// number of values.
    pub fn load_view(&self, pixels: Pixels) -> Result<(Cutout, usize, usize), PreprocessError> {
        // The residual needs the unbinned image.
        let bin = if self.channels == Channels::Image { self.bin } else { 1 };
        match pixels.load_for_binning(bin)? {
            Loaded::Whole(img) => self.apply_view(&img).map(|(b, bad)| (b, bad, img.data().len())),
            Loaded::Binned(b, raw) => {
                debug_assert_eq!(self.channels, Channels::Image, "the residual needs the unbinned image");
                self.check(&b.image)?;
                // Smaller than the view: `finish` says so.
                let image = match self.view_of(b.image.height(), b.image.width()) {
                    Some(view) => view.of(&b.image),
                    None => b.image,
                };
                let (image, bad) = self.finish(image, &b.finite, raw)?;
                Ok((image, bad, raw.iter().product()))
            }
        }
    }

    /// The checks and the normalisation after binning: `finite` counts each
    /// band's finite pixels in the unbinned image of shape `raw`.
    fn finish(&self, mut b: Cutout, finite: &[usize], raw: [usize; 3]) -> Result<(Cutout, usize), PreprocessError> {
        if let Some(empty) = finite.iter().position(|&n| n == 0) {
            let name = self.input_bands().get(empty).cloned().unwrap_or_else(|| format!("{}", empty + 1));
            return Err(PreprocessError::EmptyBand { band: name });
        }
        let non_finite = raw.iter().product::<usize>() - finite.iter().sum::<usize>();
        if b.height() < self.crop || b.width() < self.crop {
            return Err(PreprocessError::Mismatch(format!(
                "image of {}×{} pixels ({}×{} after binning by {}) is smaller than the model's {}×{} input",
                raw[2],
                raw[1],
                b.width(),
                b.height(),
                self.bin,
                self.crop,
                self.crop
            )));
        }
        self.normalisation.apply(&mut b);
        Ok((b, non_finite))
    }

    /// Writes `preprocess.json`.
    pub fn save(&self, path: &Path) -> Result<(), PreprocessError> {
        tidalscope_io::atomic::write(path, serde_json::to_string_pretty(self).expect("serialisable").as_bytes())?;
        Ok(())
    }

    /// Reads `preprocess.json`.
    pub fn load(path: &Path) -> Result<Self, PreprocessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PreprocessError::File { path: path.display().to_string(), message: e.to_string() })?;
        serde_json::from_str(&text)
            .map_err(|e| PreprocessError::File { path: path.display().to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_averages_blocks_and_skips_nan() {
        let img = Cutout::from_chw(1, 2, 4, vec![1.0, 3.0, 5.0, f32::NAN, 1.0, 3.0, 7.0, 9.0]).unwrap();
        let b = bin(&img, 2);
        assert_eq!(b.shape(), [1, 1, 2]);
        assert_eq!(b.data(), &[2.0, 7.0]);
    }

    #[test]
    fn vectorised_binning_matches_the_plain_loop_bit_for_bit() {
        // Odd sizes leave partial blocks to drop; NaN and ±inf pixels, and
        // one all-NaN block, exercise the non-finite rule.
        let (bands, h, w) = (3, 23, 29);
        let mut data: Vec<f32> = (0..bands * h * w).map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.37).collect();
        for i in (0..data.len()).step_by(17) {
            data[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        for y in 0..4 {
            for x in 0..4 {
                data[y * w + x] = f32::NAN;
            }
        }
        let img = Cutout::from_chw(bands, h, w, data).unwrap();
        let finite: Vec<usize> = (0..bands).map(|b| img.band(b).iter().filter(|v| v.is_finite()).count()).collect();
        for k in 1..=5 {
            let (fast, n_fast) = bin_counted(&img, k);
            let plain = if k == 1 { img.clone() } else { bin_any(&img, k).0 };
            assert_eq!(fast.shape(), [bands, h / k, w / k]);
            let bits = |c: &Cutout| c.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&plain), "k = {k}");
            assert!(fast.data()[0].is_nan() || !(2..=4).contains(&k), "an all-NaN block is NaN (k = {k})");
            // Partial blocks are dropped from the image but not from the count.
            assert_eq!(n_fast, finite, "finite pixels per band, counted while binning (k = {k})");
        }
        // An image with no columns (or no rows) bins to an empty one, no panic.
        for k in 1..=5 {
            for (rows, cols) in [(5, 0), (0, 7)] {
                let (empty, n) = bin_counted(&Cutout::zeros(2, rows, cols), k);
                assert_eq!((empty.shape(), n), ([2, rows / k, cols / k], vec![0, 0]), "{rows}×{cols}, k = {k}");
                // (5 bands: the mirror residual's vector path, where the CPU has it.)
                for bands in [2, 5] {
                    let empty = Cutout::zeros(bands, rows, cols);
                    let turns = [
                        Turn::of(&empty, Centring::HalfPixel),
                        Turn::of(&empty, Centring::Subpixel),
                        Turn::Interpolated(Resample::reflection(&empty, Centring::Subpixel)),
                    ];
                    for turn in turns {
                        let binned = bin_residual(&empty, k, turn, Window::all(&empty, k));
                        assert_eq!(binned.shape(), [bands, rows / k, cols / k]);
                    }
                }
            }
        }
    }

    /// A test image of `shape` (bands, height, width): a fixed ripple, a
    /// NaN or +inf at every `every`-th value, and a bright source over
    /// rows × columns `area`, `bright(x)` brighter at column x.
    fn patterned(
        [bands, h, w]: [usize; 3],
        every: usize,
        (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
        bright: impl Fn(usize) -> f32,
    ) -> Cutout {
        let mut data: Vec<f32> = (0..bands * h * w).map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.01).collect();
        for i in (0..data.len()).step_by(every) {
            data[i] = [f32::NAN, f32::INFINITY][i % 2];
        }
        for b in 0..bands {
            for y in rows.clone() {
                for x in cols.clone() {
                    data[b * h * w + y * w + x] += bright(x);
                }
            }
        }
        Cutout::from_chw(bands, h, w, data).unwrap()
    }

    #[test]
    fn the_residual_binned_row_by_row_is_the_residual_image_binned_bit_for_bit() {
        // Odd sizes (partial blocks), non-finite pixels, and a bright
        // source off the middle, so that the centre is a half pixel away
        // and some mirrors fall outside the image.
        let (h, w) = (27, 31);
        let img = patterned([2, h, w], 23, (10..16, 14..19), |_| 400.0);
        let bits = |c: &Cutout| c.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for centring in [Centring::HalfPixel, Centring::Subpixel] {
            let (cx, cy) = crate::residual::centre(&img, centring);
            let middle = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
            assert!((cx, cy) != middle, "centre ({cx}, {cy}) is off the middle");
            let whole = crate::residual::residual(&img, centring);
            let mirror = crate::residual::mirror_residual(&img, centring);
            assert!(mirror.data().iter().any(|v| v.is_finite() && *v != 0.0), "the mirror residual is not empty");
            for k in 1..=5 {
                let what = format!("{centring:?}, k = {k}");
                assert_eq!(
                    bits(&bin_residual(&img, k, Turn::of(&img, centring), Window::all(&img, k))),
                    bits(&bin_counted(&whole, k).0),
                    "{what}"
                );
                // One centre for both residuals: the turn from the
                // reflection is the turn found afresh.
                let reflection = Resample::reflection(&img, centring);
                assert_eq!(
                    bits(&bin_residual(&img, k, reflection.turn(), Window::all(&img, k))),
                    bits(&bin_counted(&whole, k).0),
                    "turned from the reflection, {what}"
                );
                assert_eq!(
                    bits(&bin_residual(&img, k, Turn::Interpolated(reflection), Window::all(&img, k))),
                    bits(&bin_counted(&mirror, k).0),
                    "mirror, {what}"
                );
            }
        }
    }

    #[test]
    fn the_view_is_the_inference_crop_of_the_whole_image_bit_for_bit() {
        // What inference reads (`apply_view`, only the centre view made)
        // is what the inference view cuts from the whole image preprocessed:
        // every kind of channel, blocks of 1 to 5 (the row-by-row residuals
        // and the whole-image ones), odd sizes, non-finite pixels, a source
        // off the middle, and images just the view's size.
        let (h, w) = (43, 50);
        let img = patterned([3, h, w], 29, (17..23, 20..27), |x| 300.0 + 10.0 * x as f32);
        let names: Vec<String> = ["g", "r", "i"].iter().map(|n| n.to_string()).collect();
        let bits = |c: &Cutout| c.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let kinds = [Channels::Image, Channels::Residual, Channels::Both, Channels::All]
            .into_iter()
            .flat_map(|c| [(c, Centring::HalfPixel), (c, Centring::Subpixel)]);
        for (channels, centring) in kinds {
            for bin in 1..=5 {
                let full = (h / bin).min(w / bin);
                for crop in [3, 7, full] {
                    let names = channels.names(&names);
                    let pre = Preprocess {
                        bin,
                        crop,
                        normalisation: Normaliser::new(names.clone(), vec![0.05; names.len()], "t"),
                        channels,
                        centring,
                    };
                    let what = format!("{channels:?}, {centring:?}, bin {bin}, crop {crop}");
                    let (whole, bad) = pre.apply(&img).unwrap();
                    let mut want = vec![0f32; whole.bands() * crop * crop];
                    let mut rng = tidalscope_core::Rng::new(0);
                    crate::augment::Augment::inference(crop).view(&whole, &[], &mut rng, &mut want).unwrap();
                    let (view, view_bad) = pre.apply_view(&img).unwrap();
                    assert_eq!(view.shape(), [whole.bands(), crop, crop], "{what}");
                    assert_eq!(bits(&view), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{what}");
                    assert_eq!(view_bad, bad, "{what}: non-finite pixels of the whole image");
                }
                // Larger than the image: the same refusal as the whole image's.
                let pre = Preprocess {
                    bin,
                    crop: h / bin + 1,
                    normalisation: Normaliser::none(channels.names(&names)),
                    channels,
                    centring,
                };
                let (a, b) = (pre.apply(&img).unwrap_err(), pre.apply_view(&img).unwrap_err());
                assert_eq!(a.to_string(), b.to_string());
            }
        }
    }

    /// A float32 `.npy` record binned while it is read preprocesses to the
    /// bits, the non-finite count and the errors of the whole image
    /// preprocessed; band-major arrays and blocks without a fast path load
    /// whole.
    #[test]
    fn records_binned_while_read_preprocess_to_the_same_bits() {
        use tidalscope_io::npy::NpyWriter;
        use tidalscope_io::source::{open, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let (n, h, w, bands) = (3, 22, 26, 5);
        let hwc_path = dir.path().join("hwc.npy");
        let chw_path = dir.path().join("chw.npy");
        let mut hwc = NpyWriter::create(&hwc_path, &[n, h, w, bands]).unwrap();
        let mut chw = NpyWriter::create(&chw_path, &[n, bands, h, w]).unwrap();
        for i in 0..n {
            let mut img = Cutout::zeros(bands, h, w);
            for (j, v) in img.data_mut().iter_mut().enumerate() {
                *v = match (i * 31 + j * 7919) % 97 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    r => (r as f32 - 48.0) * 3e-3,
                };
            }
            if i == 2 {
                img.band_mut(3).fill(f32::NAN);
            }
            let mut values = vec![0f32; h * w * bands];
            img.write_hwc(&mut values);
            hwc.write(&values).unwrap();
            chw.write(img.data()).unwrap();
        }
        hwc.finish().unwrap();
        chw.finish().unwrap();
        let names: Vec<String> = (0..bands).map(|b| b.to_string()).collect();
        for (path, fast) in [(&hwc_path, true), (&chw_path, false)] {
            let src = open(path, &OpenOptions::default()).unwrap();
            for bin in 1..=5 {
                let p = Preprocess {
                    bin,
                    crop: 4,
                    normalisation: Normaliser::new(names.clone(), vec![0.01; 5], "t"),
                    channels: Channels::Image,
                    centring: Centring::HalfPixel,
                };
                for (a, b) in src.records(0).unwrap().zip(src.records(0).unwrap()) {
                    let (a, b) = (a.unwrap(), b.unwrap());
                    let whole = p.apply_view(&b.pixels.load().unwrap());
                    match (p.load_view(a.pixels), whole) {
                        (Ok((got, bad, values)), Ok((want, want_bad))) => {
                            let bits = |c: &Cutout| c.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                            assert_eq!(bits(&got), bits(&want), "{} image {} by {bin}", path.display(), a.index);
                            assert_eq!((bad, values), (want_bad, h * w * bands));
                        }
                        (Err(e), Err(want)) => assert_eq!(e.to_string(), want.to_string()),
                        (got, want) => panic!("image {}: {got:?} against {want:?}", a.index),
                    }
                }
                let rec = src.records(0).unwrap().next().unwrap().unwrap();
                let binned = matches!(rec.pixels.load_for_binning(bin).unwrap(), Loaded::Binned(..));
                assert_eq!(binned, fast && (2..=4).contains(&bin), "{} by {bin}", path.display());
            }
        }
    }

    #[test]
    fn images_smaller_than_the_input_are_refused() {
        let p = Preprocess {
            bin: 2,
            crop: 48,
            normalisation: Normaliser::none(vec!["x".into()]),
            channels: Channels::Image,
            centring: Centring::HalfPixel,
        };
        let err = p.apply(&Cutout::zeros(1, 64, 64)).unwrap_err().to_string();
        assert!(err.contains("32×32 after binning by 2") && err.contains("48×48"), "{err}");
        let wrong =
            Preprocess { normalisation: Normaliser::new(vec!["g".into(), "r".into()], vec![1.0, 1.0], "t"), ..p };
        let err = wrong.apply(&Cutout::zeros(5, 128, 128)).unwrap_err().to_string();
        assert!(err.contains("5 bands") && err.contains("expects 2"), "{err}");
    }

    /// A model recorded with its bands out of wavelength order is refused a
    /// catalogue (read in wavelength order) and not other sources; a model
    /// in order, or one whose names are not bands, is refused nothing.
    #[test]
    fn catalogues_are_refused_to_models_with_bands_out_of_order() {
        let info = |format| SourceInfo {
            path: "cat.csv".into(),
            format,
            len: 1,
            bands: vec!["g".into(), "i".into()],
            shape: None,
            dtype: "float32".into(),
            meta_columns: Vec::new(),
            labelled: false,
        };
        let model = |bands: &[&str], channels: Channels| Preprocess {
            bin: 1,
            crop: 8,
            normalisation: Normaliser::new(
                channels.names(&bands.iter().map(|b| b.to_string()).collect::<Vec<_>>()),
                vec![1.0; bands.len() * channels.factor()],
                "t",
            ),
            channels,
            centring: Centring::Subpixel,
        };
        let err = model(&["HSC-I", "g"], Channels::Both).check_bands(&info(Format::Catalog)).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("cat.csv")
                && err.contains("recorded in the order HSC-I,g")
                && err.contains("wavelength order"),
            "{err}"
        );
        // An array's planes keep their order; its names are the defaults.
        let npy = SourceInfo { bands: vec!["b0".into(), "b1".into()], ..info(Format::Npy) };
        assert!(model(&["i", "g"], Channels::Image).check_bands(&npy).is_ok());
        assert!(model(&["g", "i"], Channels::All).check_bands(&info(Format::Catalog)).is_ok());
        assert!(model(&["b1", "b0"], Channels::Image).check_bands(&info(Format::Catalog)).is_ok());
    }

    #[test]
    fn data_whose_band_names_disagree_with_the_models_are_refused() {
        let model = Preprocess {
            bin: 1,
            crop: 8,
            normalisation: Normaliser::new(
                Channels::Both.names(&["g", "r", "i", "z", "y"].map(String::from)),
                vec![1.0; 10],
                "t",
            ),
            channels: Channels::Both,
            centring: Centring::HalfPixel,
        };
        let data = |format: Format, bands: &[&str]| SourceInfo {
            path: "data.fits".into(),
            format,
            len: 1,
            bands: bands.iter().map(|b| b.to_string()).collect(),
            shape: None,
            dtype: "float32".into(),
            meta_columns: Vec::new(),
            labelled: false,
        };
        // Another order: reordered where the caller can, refused where not.
        let reversed = data(Format::Fits, &["y", "z", "i", "r", "g"]);
        assert_eq!(model.band_order(&reversed).unwrap(), Some(vec![4, 3, 2, 1, 0]));
        let hsc = data(Format::Fits, &["HSC-R2", "HSC-G", "HSC-I2", "HSC-Z", "HSC-Y"]);
        assert_eq!(model.band_order(&hsc).unwrap(), Some(vec![1, 0, 2, 3, 4]));
        let err = model.check_bands(&reversed).unwrap_err().to_string();
        assert!(err.contains("data.fits") && err.contains("y,z,i,r,g in this order, the model's g,r,i,z,y"), "{err}");
        // A band the model lacks, or one twice: refused.
        for bad in [&["u", "g", "r", "i", "z"], &["g", "g", "i", "z", "y"], &["g", "r", "i", "z", "SCI"]] {
            let err = model.band_order(&data(Format::Catalog, bad)).unwrap_err().to_string();
            assert!(err.contains(&bad.join(",")) && err.contains("the model's g,r,i,z,y"), "{err}");
        }
        for ok in [
            data(Format::Fits, &["g", "r", "i", "z", "y"]),
            data(Format::Fits, &["HSC-G", "HSC-R2", "HSC-I2", "HSC-Z", "HSC-Y"]),
            data(Format::Fits, &["SCI1", "SCI2", "SCI3", "SCI4", "SCI5"]),
            data(Format::Npy, &["g", "r", "i", "z", "y"]),
            data(Format::Fits, &["g", "r", "z"]),
        ] {
            assert_eq!(model.band_order(&ok).unwrap(), None, "{:?}", ok.bands);
        }
    }

    #[test]
    fn non_finite_pixels_are_counted_and_an_empty_band_is_refused() {
        let p = Preprocess {
            bin: 2,
            crop: 2,
            normalisation: Normaliser::new(vec!["g".into(), "r".into()], vec![1.0; 2], "t"),
            channels: Channels::Image,
            centring: Centring::HalfPixel,
        };
        let mut img = Cutout::zeros(2, 4, 4);
        img.band_mut(0)[..3].fill(f32::NAN);
        img.band_mut(1)[5] = f32::INFINITY;
        let (out, bad) = p.apply(&img).unwrap();
        assert_eq!(bad, 4, "counted on the image as given, before binning");
        assert!(out.data().iter().all(|v| v.is_finite()));
        img.band_mut(1).fill(f32::NAN);
        let err = p.apply(&img).unwrap_err();
        assert!(matches!(&err, PreprocessError::EmptyBand { band } if band == "r"), "{err}");
        assert_eq!(err.to_string(), "band r has no finite pixel (all NaN or infinite)");
    }

    /// A band of one value where the model looks (0 where a pipeline had
    /// no coverage, or masked but for zeros) is named; a band with any
    /// variation is not. Beside the bands, the residual channels are not
    /// read (0 for any symmetric image); a model of residuals alone is
    /// read on its residuals.
    #[test]
    fn bands_of_one_value_are_named() {
        let kinds = [Channels::Image, Channels::Residual, Channels::Both, Channels::All]
            .into_iter()
            .flat_map(|c| [(c, Centring::HalfPixel), (c, Centring::Subpixel)]);
        // 16 pixels, so that a corner is beyond what the view's
        // interpolated mirror points read (two pixels past them).
        let n = 16;
        for (channels, centring) in kinds {
            let bands = ["g", "r", "i"].map(String::from).to_vec();
            let names = channels.names(&bands);
            let p = Preprocess {
                bin: 1,
                crop: 8,
                normalisation: Normaliser::new(names.clone(), vec![1.0; names.len()], "t"),
                channels,
                centring,
            };
            let what = format!("{channels:?}, {centring:?}");
            let mut img = Cutout::zeros(3, n, n);
            for (j, v) in img.band_mut(0).iter_mut().enumerate() {
                *v = ((j * 7919) % 17) as f32 * 0.1;
            }
            // r: zero-filled; i: every other pixel masked, the rest zero.
            img.band_mut(2).iter_mut().step_by(2).for_each(|v| *v = f32::NAN);
            let (out, _) = p.apply_view(&img).unwrap();
            assert_eq!(p.constant_bands(&out), [names[1].clone(), names[2].clone()], "{what}");
            img.band_mut(1)[n * 8 + 8] = 0.5;
            img.band_mut(2)[n * 8 + 9] = 1e-3;
            // Band i, masked but at alternate pixels, can keep a residual
            // of one value (where each pixel's mirror is masked): for a
            // model of residuals alone only band r's verdict is fixed.
            let others = |got: Vec<String>| -> Vec<String> {
                match channels {
                    Channels::Residual => got.into_iter().filter(|n| *n != names[2]).collect(),
                    _ => got,
                }
            };
            let (out, _) = p.apply_view(&img).unwrap();
            assert!(others(p.constant_bands(&out)).is_empty(), "{what}");
            // A variation outside the model's view does not count.
            img.band_mut(1)[n * 8 + 8] = 0.0;
            img.band_mut(1)[0] = 3.0;
            let (out, _) = p.apply_view(&img).unwrap();
            assert_eq!(others(p.constant_bands(&out)), [names[1].clone()], "{what}");
        }
    }

    /// The residual channels are made before binning, on every path (a
    /// record that would be binned while read — float32, 3 to 5 bands —
    /// loads whole instead), and the bands part of
    /// `both` is the plain input to the bit.
    #[test]
    fn residual_channels_follow_the_image_on_every_path() {
        use tidalscope_io::npy::NpyWriter;
        use tidalscope_io::source::{open, OpenOptions};
        let (h, w, bands) = (24, 24, 3);
        let mut img = Cutout::zeros(bands, h, w);
        for (j, v) in img.data_mut().iter_mut().enumerate() {
            let (x, y) = ((j % w) as f32 - 11.5, ((j / w) % h) as f32 - 11.5);
            *v = (-(x * x + y * y) / 8.0).exp() + ((j * 7919) % 13) as f32 * 1e-3;
        }
        img.band_mut(1)[5] = f32::NAN;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hwc.npy");
        let mut file = NpyWriter::create(&path, &[1, h, w, bands]).unwrap();
        let mut values = vec![0f32; h * w * bands];
        img.write_hwc(&mut values);
        file.write(&values).unwrap();
        file.finish().unwrap();
        let names = vec!["g".to_string(), "r".to_string(), "i".to_string()];
        let bits = |c: &Cutout| c.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for centring in [Centring::HalfPixel, Centring::Subpixel] {
            let pre = |channels: Channels| Preprocess {
                bin: 2,
                crop: 8,
                normalisation: Normaliser::new(channels.names(&names), vec![0.01; bands * channels.factor()], "t"),
                channels,
                centring,
            };
            let (plain, bad) = pre(Channels::Image).apply(&img).unwrap();
            let (both, both_bad) = pre(Channels::Both).apply(&img).unwrap();
            let (residual, _) = pre(Channels::Residual).apply(&img).unwrap();
            assert_eq!(both.shape(), [6, 12, 12]);
            assert_eq!(bits(&both)[..plain.data().len()], bits(&plain)[..]);
            assert_eq!(bits(&both)[plain.data().len()..], bits(&residual)[..]);
            let mut want = Channels::Residual.apply(&img, centring);
            let (binned, _) = bin_counted(&want, 2);
            want = binned;
            pre(Channels::Residual).normalisation.apply(&mut want);
            assert_eq!(bits(&residual), bits(&want), "residual, then binning, then the stretch ({centring:?})");
            let (mut stacked, _) = bin_counted(&Channels::Both.apply(&img, centring), 2);
            pre(Channels::Both).normalisation.apply(&mut stacked);
            assert_eq!(bits(&both), bits(&stacked), "the stacked channels, binned, then the stretch");
            assert_eq!((bad, both_bad), (1, 1), "non-finite pixels count as given, not as mirrored");
            // All three: the bands, their residuals, then the mirror residuals.
            let (all, all_bad) = pre(Channels::All).apply(&img).unwrap();
            assert_eq!((all.shape(), all_bad), ([9, 12, 12], 1));
            assert_eq!(bits(&all)[..both.data().len()], bits(&both)[..]);
            let (mut stacked, _) = bin_counted(&Channels::All.apply(&img, centring), 2);
            pre(Channels::All).normalisation.apply(&mut stacked);
            assert_eq!(bits(&all), bits(&stacked), "all three stacked, binned, then the stretch ({centring:?})");
        }
        let pre = |channels: Channels| Preprocess {
            bin: 2,
            crop: 8,
            normalisation: Normaliser::new(channels.names(&names), vec![0.01; bands * channels.factor()], "t"),
            channels,
            centring: Centring::Subpixel,
        };
        assert_eq!(pre(Channels::All).input_bands(), names);
        let src = open(&path, &OpenOptions::default()).unwrap();
        let rec = src.records(0).unwrap().next().unwrap().unwrap();
        let (read, _, n) = pre(Channels::Both).load_view(rec.pixels).unwrap();
        let (view, _) = pre(Channels::Both).apply_view(&img).unwrap();
        assert_eq!((bits(&read), n), (bits(&view), h * w * bands));
        // Images are checked against the bands the channels are made from.
        let err = pre(Channels::Both).apply(&Cutout::zeros(4, h, w)).unwrap_err().to_string();
        assert!(err.contains("4 bands") && err.contains("expects 3 (g,r,i)"), "{err}");
        let mut empty = img.clone();
        empty.band_mut(1).fill(f32::NAN);
        let err = pre(Channels::Both).apply(&empty).unwrap_err().to_string();
        assert_eq!(err, "band r has no finite pixel (all NaN or infinite)");
        assert_eq!(pre(Channels::Both).input_bands(), names);
    }

    #[test]
    fn a_preprocess_file_without_channels_takes_the_bands_as_given() {
        let json = r#"{"bin": 4, "crop": 24, "normalisation": {"bands": ["g"], "sigma": [0.01], "provenance": "t"}}"#;
        let p: Preprocess = serde_json::from_str(json).unwrap();
        assert_eq!((p.channels, p.centring), (Channels::Image, Centring::HalfPixel));
        let both = Preprocess { channels: Channels::Both, centring: Centring::Subpixel, ..p };
        let back: Preprocess = serde_json::from_str(&serde_json::to_string(&both).unwrap()).unwrap();
        assert_eq!(back, both);
    }

    #[test]
    fn every_instruction_set_preprocesses_to_the_same_bits() {
        // Binning and the stretch run the widest vectors the CPU has; the
        // narrower variants (and the baseline) must give the same bits.
        // (On a machine without AVX-512 levels 2 and 1 are one variant.)
        let (bands, h, w) = (5, 45, 51);
        let mut data: Vec<f32> = (0..bands * h * w).map(|i| ((i * 7919 % 1013) as f32 - 400.0) * 1e-3).collect();
        for i in (0..data.len()).step_by(13) {
            data[i] = [f32::NAN, f32::INFINITY, 1e6, -3e-7][i % 4];
        }
        let img = Cutout::from_chw(bands, h, w, data).unwrap();
        let names: Vec<String> = (0..bands).map(|b| b.to_string()).collect();
        let run = || {
            let mut got = Vec::new();
            // The bands, and the bands with their residuals (binned row by
            // row; the mirror residual's interpolation included).
            let kinds = [
                (Channels::Image, Centring::HalfPixel),
                (Channels::Both, Centring::HalfPixel),
                (Channels::All, Centring::HalfPixel),
                (Channels::All, Centring::Subpixel),
            ];
            for (channels, centring) in kinds {
                let names = channels.names(&names);
                for bin in 2..=4 {
                    // The asinh stretch, and the identity (non-finite values zeroed).
                    for normalisation in
                        [Normaliser::new(names.clone(), vec![0.01; names.len()], "t"), Normaliser::none(names.clone())]
                    {
                        let pre = Preprocess { bin, crop: 8, normalisation, channels, centring };
                        for (out, bad) in [pre.apply(&img).unwrap(), pre.apply_view(&img).unwrap()] {
                            got.push((out.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bad));
                        }
                    }
                }
            }
            got
        };
        let best = run();
        for level in [1, 0] {
            let got = tidalscope_core::dispatch::with_ceiling(level, run);
            assert_eq!(got, best, "instruction-set level {level}");
        }
    }

    #[test]
    fn finite_pixels_are_counted_at_every_length_and_instruction_set() {
        // Every kind of value (NaNs of either sign and another payload,
        // ±inf, the largest finite, a subnormal, −0) at positions that fall
        // in the 16-lane chunks and in the remainder, on lengths around the
        // chunks and past one block of 2^20 values.
        let kinds = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            1e-45,
            -0.0,
            1.5,
        ];
        for len in (0..70).chain([1000, 4097, (16 << 16) + 17]) {
            let values: Vec<f32> = (0..len).map(|i| kinds[(i * 7 + len) % kinds.len()]).collect();
            let want = values.iter().filter(|v| v.is_finite()).count();
            for level in [2, 1, 0] {
                let got = tidalscope_core::dispatch::with_ceiling(level, || finite_in(&values));
                assert_eq!(got, want, "{len} values, instruction-set level {level}");
            }
        }
    }
}
