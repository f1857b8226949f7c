//! The rotational residual: each band minus its copy turned by 180° about
//! the galaxy's light-weighted centre, the classical way to see faint
//! asymmetric structure (tails, streams, plumes, off-centre shells) under a
//! bright host (as in the asymmetry index of Conselice 2000). What is
//! point-symmetric — the host's smooth body, a bar, two-armed spirals —
//! cancels; the faint structure and the neighbours remain.
//!
//! A model's input ([`Channels`]) is the bands as given, their residuals,
//! or both stacked (twice the channels); the choice is stored with the
//! model (`preprocess.json`), so inference repeats it. The residual is made
//! at the cutout's own resolution, before binning.
//!
//! The centre is found on the sum of the bands (sky median subtracted) by
//! a Gaussian-windowed centroid, iterated from the cutout's centre with a
//! window of 1/20 of the side and then 1/40, clamped to within 1/40 of the
//! side of the cutout's centre (cutouts are centred on the
//! catalogued galaxy) and rounded to the nearest half pixel, so that the
//! rotation maps pixels onto pixels exactly: no interpolation smooths the
//! noise of one copy and not the other. Rounding moves the centre by at
//! most ¼ pixel (so past the clamp by as much).
//!
//! Non-finite rule: a pixel whose value or mirror is not finite is not
//! finite in the residual (then left out of binning and 0 after
//! normalisation, as any non-finite pixel), and a pixel not finite in some
//! band has no weight in the centre; a pixel whose mirror falls outside the
//! cutout is 0 (no asymmetry is measurable there).

use serde::{Deserialize, Serialize};
use tidalscope_core::Cutout;

/// What the model's input channels are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    /// The bands as given (the reference pipeline's input).
    #[default]
    Image,
    /// Each band's rotational residual only.
    Residual,
    /// The bands, then each band's rotational residual: twice the channels.
    Both,
}

impl Channels {
    /// Input channels per band of the image.
    pub fn factor(self) -> usize {
        match self {
            Channels::Image | Channels::Residual => 1,
            Channels::Both => 2,
        }
    }

    /// What the network sees, in words (reports, reprs and messages).
    pub fn describe(self) -> &'static str {
        match self {
            Channels::Image => "the bands as given",
            Channels::Residual => "only the bands' rotational residuals",
            Channels::Both => "the bands and their rotational residuals",
        }
    }

    /// The model's channel names for an image with bands `names`: the
    /// residual of band `g` is `g_residual`.
    pub fn names(self, names: &[String]) -> Vec<String> {
        let residual = names.iter().map(|n| format!("{n}_residual"));
        match self {
            Channels::Image => names.to_vec(),
            Channels::Residual => residual.collect(),
            Channels::Both => names.iter().cloned().chain(residual).collect(),
        }
    }

    /// The channels of `img` this input is made of.
    pub fn apply(self, img: &Cutout) -> Cutout {
        match self {
            Channels::Image => img.clone(),
            Channels::Residual => residual(img),
            Channels::Both => {
                // The residuals are written straight into the second half.
                let mut out = Cutout::zeros(2 * img.bands(), img.height(), img.width());
                let n = img.data().len();
                let (bands, residuals) = out.data_mut().split_at_mut(n);
                bands.copy_from_slice(img.data());
                residual_into(img, residuals);
                out
            }
        }
    }
}

/// The light-weighted centre of `img` (pixel coordinates `(x, y)`, pixel
/// centres at integers), rounded to the nearest half pixel.
pub fn centre(img: &Cutout) -> (f64, f64) {
    let (h, w) = (img.height(), img.width());
    let geometric = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    if h == 0 || w == 0 {
        return geometric;
    }
    // A pixel that is not finite in some band (masked) carries no weight:
    // NaN here, left out of the sky level and of the centroid.
    let mut sum = vec![0f64; h * w];
    for b in 0..img.bands() {
        for (s, v) in sum.iter_mut().zip(img.band(b)) {
            *s += if v.is_finite() { *v as f64 } else { f64::NAN };
        }
    }
    let mut sorted: Vec<f64> = sum.iter().copied().filter(|v| !v.is_nan()).collect();
    let mid = sorted.len() / 2;
    let sky = if sorted.is_empty() { 0.0 } else { *sorted.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1 };
    let side = w.min(h) as f64;
    let (mut cx, mut cy) = geometric;
    let (mut gx, mut gy) = (Vec::new(), Vec::new());
    // Gaussian-windowed centroid (as SExtractor's XWIN): for a symmetric
    // profile its fixed point is the centre, where a hard box would pull
    // the estimate towards the box's middle. A wide window first, to get
    // near, then a narrow one around the core. The window is separable:
    // one exponential per row and per column.
    for sw in [side / 20.0, side / 40.0] {
        let sw = sw.max(1.0);
        let r = 3.0 * sw;
        for _ in 0..30 {
            let (x0, x1) = ((cx - r).floor().max(0.0) as usize, ((cx + r).ceil().max(0.0) as usize).min(w - 1));
            let (y0, y1) = ((cy - r).floor().max(0.0) as usize, ((cy + r).ceil().max(0.0) as usize).min(h - 1));
            let g = |d: f64| (-(d * d) / (2.0 * sw * sw)).exp();
            gx.clear();
            gx.extend((x0..=x1).map(|x| g(x as f64 - cx)));
            gy.clear();
            gy.extend((y0..=y1).map(|y| g(y as f64 - cy)));
            let (mut t, mut tx, mut ty) = (0.0, 0.0, 0.0);
            for (y, wy) in (y0..=y1).zip(&gy) {
                let (mut row, mut row_x) = (0.0, 0.0);
                for (x, wx) in (x0..=x1).zip(&gx) {
                    let s = sum[y * w + x] - sky;
                    // NaN (masked) fails the test: no weight.
                    if s > 0.0 {
                        row += s * wx;
                        row_x += s * wx * x as f64;
                    }
                }
                t += row * wy;
                tx += row_x * wy;
                ty += row * wy * y as f64;
            }
            if t <= 0.0 {
                break;
            }
            let (nx, ny) = (tx / t, ty / t);
            let moved = (nx - cx).abs().max((ny - cy).abs());
            (cx, cy) = (nx, ny);
            if moved < 1e-3 {
                break;
            }
        }
    }
    let limit = side / 40.0;
    let clamp = |c: f64, g: f64| (c.clamp(g - limit, g + limit) * 2.0).round() / 2.0;
    (clamp(cx, geometric.0), clamp(cy, geometric.1))
}

/// Each band of `img` minus its copy turned by 180° about [`centre`].
pub fn residual(img: &Cutout) -> Cutout {
    let mut out = Cutout::zeros(img.bands(), img.height(), img.width());
    residual_into(img, out.data_mut());
    out
}

/// [`residual`] written into `out` (band-major, the size of `img`).
fn residual_into(img: &Cutout, out: &mut [f32]) {
    let mirror = Mirror::of(img);
    let (h, w) = (img.height(), img.width());
    for (b, dst) in out.chunks_exact_mut((h * w).max(1)).take(img.bands()).enumerate() {
        for (y, row) in dst.chunks_exact_mut(w.max(1)).take(h).enumerate() {
            mirror.row(img.band(b), w, y, row);
        }
    }
}

/// The 180° turn about an image's [`centre`]: pixel (x, y) lands on
/// (mx − x, my − y), integers since the centre is a half pixel. Lets the
/// residual be made row by row, where a caller (binning) wants a few rows
/// at a time rather than the whole image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mirror {
    mx: isize,
    my: isize,
}

impl Mirror {
    /// The turn about `img`'s [`centre`].
    pub(crate) fn of(img: &Cutout) -> Self {
        let (cx, cy) = centre(img);
        Self { mx: (2.0 * cx).round() as isize, my: (2.0 * cy).round() as isize }
    }

    /// Row `y` of the residual of `band` (`w` pixels wide) into `out`
    /// (`w` values): the row minus its mirror, 0 where the mirror falls
    /// outside.
    #[inline(always)]
    pub(crate) fn row(self, band: &[f32], w: usize, y: usize, out: &mut [f32]) {
        let h = band.len() / w.max(1);
        let ym = self.my - y as isize;
        out[..w].fill(0.0);
        if !(0..h as isize).contains(&ym) {
            return;
        }
        let (row, mirror) = (&band[y * w..(y + 1) * w], &band[ym as usize * w..(ym as usize + 1) * w]);
        // Columns whose mirror lies inside: mx − x in 0..w.
        let lo = (self.mx - w as isize + 1).max(0) as usize;
        let hi = ((self.mx + 1).max(0) as usize).min(w);
        for x in lo..hi {
            out[x] = row[x] - mirror[(self.mx - x as isize) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gaussian blob of `flux` at `(x0, y0)` added to every band.
    fn blob(img: &mut Cutout, x0: f64, y0: f64, sigma: f64, flux: f32) {
        let w = img.width();
        for b in 0..img.bands() {
            for (i, v) in img.band_mut(b).iter_mut().enumerate() {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                *v += flux * (-((x - x0).powi(2) + (y - y0).powi(2)) / (2.0 * sigma * sigma)).exp() as f32;
            }
        }
    }

    #[test]
    fn the_centre_follows_the_galaxy_to_the_nearest_half_pixel() {
        let mut img = Cutout::zeros(2, 64, 64);
        blob(&mut img, 32.3, 30.8, 3.0, 100.0);
        assert_eq!(centre(&img), (32.5, 31.0));
        // A bright neighbour far from the centre does not pull it.
        blob(&mut img, 55.0, 10.0, 2.0, 500.0);
        assert_eq!(centre(&img), (32.5, 31.0));
        // Masked pixels carry no weight, even where the sky is negative
        // (over-subtracted) and 0 would count as light.
        // A faint compact galaxy beside a masked strip in one band.
        let mut masked = Cutout::zeros(2, 64, 64);
        masked.data_mut().iter_mut().for_each(|v| *v = -1.0);
        blob(&mut masked, 32.3, 30.8, 1.0, 2.0);
        for y in 26..36 {
            for x in 35..38 {
                masked.band_mut(0)[y * 64 + x] = f32::NAN;
            }
        }
        assert_eq!(centre(&masked), (32.5, 31.0));
        // Empty images have no pixel to weigh: the geometric centre, no panic.
        assert_eq!(centre(&Cutout::zeros(2, 0, 0)), (-0.5, -0.5));
        assert_eq!(residual(&Cutout::zeros(1, 0, 7)).shape(), [1, 0, 7]);
        // A centre far off is kept within 1/40 of the side (1.6 px) of the middle.
        let mut off = Cutout::zeros(1, 64, 64);
        blob(&mut off, 40.0, 31.5, 3.0, 100.0);
        assert_eq!(centre(&off), (33.0, 31.5));
    }

    #[test]
    fn a_point_symmetric_galaxy_leaves_no_residual_and_a_tail_remains() {
        let mut img = Cutout::zeros(3, 48, 48);
        // Elongated symmetric host: two blobs mirrored about (24, 23.5).
        blob(&mut img, 21.0, 22.5, 2.5, 50.0);
        blob(&mut img, 27.0, 24.5, 2.5, 50.0);
        let r = residual(&img);
        let peak = r.data().iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(peak < 1e-4, "a point-symmetric image has residual {peak}");
        // A faint tail on one side shows as itself, and negative on the other.
        blob(&mut img, 36.0, 23.5, 1.5, 1.0);
        let r = residual(&img);
        let at = |x: usize, y: usize| r.band(1)[y * 48 + x];
        let tail = (-0.25f32 / 4.5).exp();
        assert!((at(36, 23) - tail).abs() < 1e-3 && (at(36, 24) - tail).abs() < 1e-3, "tail {}", at(36, 23));
        assert!((at(12, 23) + at(36, 24)).abs() < 1e-4, "its mirror is its negative");
    }

    #[test]
    fn non_finite_pixels_and_their_mirrors_are_nan_and_outside_mirrors_are_zero() {
        let mut img = Cutout::zeros(1, 40, 40);
        for (i, v) in img.band_mut(0).iter_mut().enumerate() {
            *v = (i % 7) as f32 * 0.01;
        }
        blob(&mut img, 20.5, 20.5, 2.0, 100.0);
        img.band_mut(0)[12 * 40 + 10] = f32::NAN;
        assert_eq!(centre(&img), (20.5, 20.5));
        let r = residual(&img);
        assert!(r.band(0)[12 * 40 + 10].is_nan());
        assert!(r.band(0)[29 * 40 + 31].is_nan(), "the mirror of a NaN pixel is NaN");
        assert_eq!(r.data().iter().filter(|v| v.is_nan()).count(), 2);
        // Mirrors of rows and columns 0 and 1 (41 − x ≥ 40) lie outside: 0 there.
        for i in 0..40 {
            for j in 0..2 {
                assert_eq!((r.band(0)[j * 40 + i], r.band(0)[i * 40 + j]), (0.0, 0.0));
            }
        }
        assert!(r.band(0)[2 * 40 + 2] != 0.0);
    }

    #[test]
    fn both_stacks_the_bands_then_their_residuals_and_names_them() {
        let mut img = Cutout::zeros(2, 16, 16);
        blob(&mut img, 7.0, 9.0, 1.5, 10.0);
        img.band_mut(1)[3] = 4.0;
        let both = Channels::Both.apply(&img);
        assert_eq!(both.shape(), [4, 16, 16]);
        assert_eq!(&both.data()[..img.data().len()], img.data());
        assert_eq!(&both.data()[img.data().len()..], residual(&img).data());
        assert_eq!(Channels::Image.apply(&img).data(), img.data());
        let names = ["g".to_string(), "r".to_string()];
        assert_eq!(Channels::Both.names(&names), ["g", "r", "g_residual", "r_residual"]);
        assert_eq!(Channels::Residual.names(&names), ["g_residual", "r_residual"]);
        assert_eq!((Channels::Image.factor(), Channels::Residual.factor(), Channels::Both.factor()), (1, 1, 2));
        assert!(Channels::Residual.describe().starts_with("only") && Channels::Both.describe().contains("bands and"));
    }
}
