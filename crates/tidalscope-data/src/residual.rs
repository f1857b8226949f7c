//! The rotational residual: each band minus its copy turned by 180° about
//! the galaxy's light-weighted centre, the classical way to see faint
//! asymmetric structure (tails, streams, plumes, off-centre shells) under a
//! bright host (as in the asymmetry index of Conselice 2000). What is
//! point-symmetric — the host's smooth body, a bar, two-armed spirals —
//! cancels; the faint structure and the neighbours remain.
//!
//! A model's input ([`Channels`]) is the bands as given, their residuals,
//! both stacked (twice the channels), or the bands with both kinds of
//! residual below (three times); the choice is stored with the
//! model (`preprocess.json`), so inference repeats it. The residual is made
//! at the cutout's own resolution, before binning. A third set, the mirror
//! residual ([`mirror_residual`]: each band minus its reflection about the
//! galaxy's major axis, about the same centre), keeps the point-symmetric
//! S of a tidal tail pair that the rotation cancels; all three stacked are
//! the quick preset's input.
//!
//! The centre is found on the sum of the bands (sky median subtracted) by
//! a Gaussian-windowed centroid, iterated from the cutout's centre with a
//! window of 1/20 of the side and then 1/40, and clamped to within 1/40 of
//! the side of the cutout's centre (cutouts are centred on the catalogued
//! galaxy). How finely it is kept is the model's [`Centring`]:
//! `half_pixel` (the presets, and every model made before the choice
//! existed) rounds it to the nearest half pixel, so that the turn maps
//! pixels onto pixels and no interpolation smooths one copy's noise, at
//! the cost of a residual of the host's core over up to half a pixel;
//! `subpixel` keeps it as measured and interpolates the turned copy by
//! cubic convolution, as the mirror residual's reflected one (measured
//! in the README, "The residuals' centre": no better).
//!
//! Non-finite rule: a pixel whose value or mirror is not finite is not
//! finite in the residual (then left out of binning and 0 after
//! normalisation, as any non-finite pixel), and a pixel not finite in some
//! band has no weight in the centre. Edge rule: where the exact turn's
//! mirror falls outside the cutout the residual is 0 (no asymmetry is
//! measurable there); every interpolated map (the mirror residual, the
//! subpixel turn) follows [`mirror_residual`]'s rules instead.

use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;
use tidalscope_core::{multiversion, Cutout};

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
    /// The bands, their rotational residuals, then their mirror residuals
    /// ([`mirror_residual`]): three times the channels.
    All,
}

impl Channels {
    /// Input channels per band of the image.
    pub fn factor(self) -> usize {
        match self {
            Channels::Image | Channels::Residual => 1,
            Channels::Both => 2,
            Channels::All => 3,
        }
    }

    /// What the network sees, in words (reports, reprs and messages).
    pub fn describe(self) -> &'static str {
        match self {
            Channels::Image => "the bands as given",
            Channels::Residual => "only the bands' rotational residuals",
            Channels::Both => "the bands and their rotational residuals",
            Channels::All => "the bands, their rotational residuals and their mirror residuals",
        }
    }

    /// The model's channel names for an image with bands `names`: the
    /// residual of band `g` is `g_residual`, its mirror residual `g_mirror`.
    pub fn names(self, names: &[String]) -> Vec<String> {
        let residual = names.iter().map(|n| format!("{n}_residual"));
        match self {
            Channels::Image => names.to_vec(),
            Channels::Residual => residual.collect(),
            Channels::Both => names.iter().cloned().chain(residual).collect(),
            Channels::All => {
                names.iter().cloned().chain(residual).chain(names.iter().map(|n| format!("{n}_mirror"))).collect()
            }
        }
    }

    /// The channels of `img` this input is made of, its residuals about
    /// the centre `centring` keeps.
    pub fn apply(self, img: &Cutout, centring: Centring) -> Cutout {
        match self {
            Channels::Image => img.clone(),
            Channels::Residual => residual(img, centring),
            Channels::Both => {
                // The residuals are written straight into the second half.
                let mut out = Cutout::zeros(2 * img.bands(), img.height(), img.width());
                let n = img.data().len();
                let (bands, residuals) = out.data_mut().split_at_mut(n);
                bands.copy_from_slice(img.data());
                whole(img, Turn::of(img, centring), residuals);
                out
            }
            Channels::All => {
                let mut out = Cutout::zeros(3 * img.bands(), img.height(), img.width());
                let n = img.data().len();
                let (bands, rest) = out.data_mut().split_at_mut(n);
                let (residuals, mirrors) = rest.split_at_mut(n);
                bands.copy_from_slice(img.data());
                // One centre for both residuals.
                let reflection = Resample::reflection(img, centring);
                whole(img, reflection.turn(), residuals);
                whole(img, Turn::Interpolated(reflection), mirrors);
                out
            }
        }
    }
}

/// How finely the galaxy's centre is kept for the residuals (stored with
/// the model: inference repeats it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centring {
    /// Rounded to the nearest half pixel, so that the 180° turn maps
    /// pixels onto pixels with no interpolation (the presets; models and
    /// run folders made before `subpixel` existed read as this).
    #[default]
    HalfPixel,
    /// As measured; the turned copy is interpolated by cubic convolution.
    Subpixel,
}

impl Centring {
    /// The rule, in words (messages).
    pub fn describe(self) -> &'static str {
        match self {
            Centring::HalfPixel => "the centre rounded to the nearest half pixel",
            Centring::Subpixel => "the centre as measured, the turned copy interpolated",
        }
    }
}

/// The light-weighted centre of `img` (pixel coordinates `(x, y)`, pixel
/// centres at integers), as finely as `centring` keeps it.
pub fn centre(img: &Cutout, centring: Centring) -> (f64, f64) {
    let (h, w) = (img.height(), img.width());
    let geometric = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    if h == 0 || w == 0 {
        return geometric;
    }
    centre_in(&light(img), w, h, centring)
}

/// [`centre`] from the image's [`light`] (`w` × `h` pixels, not empty).
fn centre_in(light: &[f64], w: usize, h: usize, centring: Centring) -> (f64, f64) {
    let geometric = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
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
                    let s = light[y * w + x];
                    row += s * wx;
                    row_x += s * wx * x as f64;
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
    let clamp = |c: f64, g: f64| {
        let c = c.clamp(g - limit, g + limit);
        match centring {
            Centring::HalfPixel => (c * 2.0).round() / 2.0,
            Centring::Subpixel => c,
        }
    };
    (clamp(cx, geometric.0), clamp(cy, geometric.1))
}

/// The light above the sky at each pixel: the sum of `img`'s bands minus
/// its median over the pixels where every band is finite (the sky level
/// under the galaxy's light), 0 where that is not positive or some band is
/// not finite (a masked pixel carries no weight).
fn light(img: &Cutout) -> Vec<f64> {
    let mut sum = vec![0f64; img.height() * img.width()];
    for b in 0..img.bands() {
        add_band(&mut sum, img.band(b));
    }
    let masked = sum.iter().any(|v| v.is_nan());
    let mut sorted: Vec<f64> = if masked { sum.iter().copied().filter(|v| !v.is_nan()).collect() } else { sum.clone() };
    let mid = sorted.len() / 2;
    let sky = if sorted.is_empty() { 0.0 } else { *sorted.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1 };
    above(&mut sum, sky);
    sum
}

multiversion! {
    /// `sum += band`, NaN where the band is not finite.
    fn add_band(sum: &mut [f64], band: &[f32]) {
        for (s, v) in sum.iter_mut().zip(band) {
            *s += if v.is_finite() { *v as f64 } else { f64::NAN };
        }
    }
}

multiversion! {
    /// Each value minus `sky`, 0 where that is not positive or NaN.
    fn above(sum: &mut [f64], sky: f64) {
        for v in sum.iter_mut() {
            let s = *v - sky;
            // NaN (masked) fails the test. A select, not a branch (half the
            // sky pixels pass it, at random).
            *v = if s > 0.0 { s } else { 0.0 };
        }
    }
}

/// The direction of the galaxy's major axis (radians from the +x axis,
/// in (−π/2, π/2]): that of the second moments of the sky-subtracted
/// light about `(cx, cy)` in a Gaussian window of 1/20 of the side (the
/// centroid's wide window, so the inner isophotes, where the host
/// dominates, set it). 0 when there is no light.
pub fn axis(img: &Cutout, centre: (f64, f64)) -> f64 {
    let (h, w) = (img.height(), img.width());
    if h == 0 || w == 0 {
        return 0.0;
    }
    axis_in(&light(img), w, h, centre)
}

/// [`axis`] from the image's [`light`] (`w` × `h` pixels, not empty).
fn axis_in(light: &[f64], w: usize, h: usize, (cx, cy): (f64, f64)) -> f64 {
    let sw = (w.min(h) as f64 / 20.0).max(1.0);
    // The window is separable: one exponential per column and per row
    // (an exponential per pixel cost about 30 µs a 128-pixel cutout).
    let g = |d: f64| (-(d * d) / (2.0 * sw * sw)).exp();
    let gx: Vec<f64> = (0..w).map(|x| g(x as f64 - cx)).collect();
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for y in 0..h {
        let dy = y as f64 - cy;
        let gy = g(dy);
        for (x, gx) in gx.iter().enumerate() {
            let dx = x as f64 - cx;
            let weight = light[y * w + x] * gx * gy;
            xx += weight * dx * dx;
            yy += weight * dy * dy;
            xy += weight * dx * dy;
        }
    }
    if xx + yy <= 0.0 {
        return 0.0;
    }
    0.5 * (2.0 * xy).atan2(xx - yy)
}

/// Each band of `img` minus its mirror image about the galaxy's major
/// axis ([`axis`] through [`centre`]). A tidal tail pair is point-symmetric
/// (an S), so the rotational residual cancels much of it; an S is not
/// symmetric about the host's axis, so it remains here, while the host's
/// elliptical body (symmetric about its axes) cancels. The mirror point
/// falls between pixels: it is interpolated by cubic convolution, which
/// smooths this copy's noise a little where the rotational residual's is
/// not. Rule: NaN where the pixel or any of the 16 pixels sampled is not
/// finite; a mirror point outside the cutout takes the value at the
/// cutout's nearest edge (sampled pixels clamped into it), so the outskirts
/// hold sky minus sky: noise of the same σ as elsewhere, which the sky
/// noise of the stretch (`--sigma sky`, from the outer frame) then
/// measures. (Zeros there, as the rotational residual has in its first
/// row and column, would fill much of the frame and shrink that σ by an
/// amount that depends on the cutout's size and the galaxy's angle.)
pub fn mirror_residual(img: &Cutout, centring: Centring) -> Cutout {
    whole_image(img, Resample::reflection(img, centring))
}

/// One of the residuals, made a row at a time: lets binning take a few
/// rows at a time rather than the whole residual image.
pub(crate) trait RowResidual {
    /// Columns `xs` of row `y` of every band's residual: band `b`'s into
    /// `out[b * n..(b + 1) * n]`, `n` the columns' number. (A caller that
    /// needs only part of the image, as inference's centre view, makes
    /// only that part, with the same values.)
    fn rows(&mut self, img: &Cutout, y: usize, xs: Range<usize>, out: &mut [f32]);
}

/// Either way of making a residual, so that one binning routine, compiled
/// once per instruction-set level, makes every residual.
#[derive(Debug, Clone)]
// One per image and residual, moved once: boxing the larger variant would
// save nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Turn {
    /// The 180° turn about a half-pixel centre, pixels onto pixels.
    Exact(Mirror),
    /// An interpolated map: the reflection about the major axis (the
    /// mirror residual) or the 180° turn about a subpixel centre.
    Interpolated(Resample),
}

impl Turn {
    /// The 180° turn about `img`'s [`centre`] (the rotational residual).
    pub(crate) fn of(img: &Cutout, centring: Centring) -> Self {
        match centring {
            Centring::HalfPixel => Turn::Exact(Mirror::of(img)),
            Centring::Subpixel => Resample::reflection(img, centring).turn(),
        }
    }
}

impl RowResidual for Turn {
    #[inline(always)]
    fn rows(&mut self, img: &Cutout, y: usize, xs: Range<usize>, out: &mut [f32]) {
        match self {
            Turn::Exact(m) => m.rows(img, y, xs, out),
            Turn::Interpolated(r) => r.rows(img, y, xs, out),
        }
    }
}

/// The residual `turn` of every band of `img`, as a cutout of its size.
pub(crate) fn whole_image(img: &Cutout, turn: impl RowResidual) -> Cutout {
    let mut out = Cutout::zeros(img.bands(), img.height(), img.width());
    whole(img, turn, out.data_mut());
    out
}

/// The residual `turn` of every band of `img`, written into `out`
/// (band-major, the size of `img`).
fn whole(img: &Cutout, mut turn: impl RowResidual, out: &mut [f32]) {
    let (h, w, bands) = (img.height(), img.width(), img.bands());
    let mut rows = vec![0f32; bands * w];
    for y in 0..h {
        turn.rows(img, y, 0..w, &mut rows);
        for (b, row) in rows.chunks_exact(w.max(1)).enumerate() {
            out[(b * h + y) * w..][..w].copy_from_slice(row);
        }
    }
}

/// A map of an image onto itself about its centre whose points fall
/// between pixels — the reflection about the major axis
/// ([`mirror_residual`]) or the 180° turn about a subpixel centre — with
/// scratch for where one row's pixels sample and, for the vector path, a
/// copy of the image: one per image and map, whose rows it alone makes.
#[derive(Debug, Clone)]
pub(crate) struct Resample {
    cx: f64,
    cy: f64,
    /// The map, row-major: pixel (x, y) samples the image at
    /// `c + m · ((x, y) − c)`, c the centre.
    m: [f64; 4],
    /// How the centre was kept (whether [`Resample::turn`] is exact).
    centring: Centring,
    taps: Taps,
    /// The taps as one array, for the plane-by-plane path.
    packed: Vec<Tap>,
    /// The image's pixels with each pixel's bands side by side, padded to
    /// 8 values, so that one pass over a pixel's 16 samples interpolates
    /// every band with 8-wide vectors, where plane by plane each band took
    /// its own 16 scalar products. Empty (the bands sampled plane by
    /// plane) without AVX, for fewer than 5 or more than 8 bands, and for
    /// an image with no pixels.
    // Read only by the x86-64 vector path; shared by the maps of one image.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pixels: Arc<Vec<f32>>,
    /// The shape of the image it was made for, `[bands, h, w]`.
    shape: [usize; 3],
}

/// The 180° turn as a [`Resample`]'s map: −1 times the identity.
const HALF_TURN: [f64; 4] = [-1.0, 0.0, 0.0, -1.0];

/// Where one pixel's mapped point samples: the cell's lower corner and
/// the cubic weights along x and y (the same for every band, so found once
/// per pixel).
#[derive(Debug, Clone, Copy, Default)]
struct Tap {
    x0: i64,
    y0: i64,
    wx: [f32; 4],
    wy: [f32; 4],
}

/// The [`Tap`]s of a row's pixels, each quantity in an array of its own so
/// that finding them compiles to vector arithmetic (as one array of
/// `Tap`s they took about as long as interpolating every band).
#[derive(Debug, Clone, Default)]
struct Taps {
    /// The cells' lower corners, floored, as floats.
    x0: Vec<f64>,
    y0: Vec<f64>,
    /// Where the 4 × 4 pixels sampled start, as an index of the image's
    /// pixels (`(y0 − 1) · w + x0 − 1`) when all of them lie inside it;
    /// −1 when some must be clamped into it (a mirror point near or past
    /// the edge), and everywhere in an image of 2³¹ − 1 pixels or more.
    start: Vec<i32>,
    /// The cubic weights along x and y: `wx[c][i]` pixel `i`'s `c`th.
    wx: [Vec<f32>; 4],
    wy: [Vec<f32>; 4],
}

impl Taps {
    /// The taps of columns `xs` of row `y` mapped by `m` (row-major)
    /// about `(cx, cy)`, in an image `w` × `h`.
    #[inline(always)]
    fn fill(
        &mut self,
        xs: Range<usize>,
        y: usize,
        (cx, cy): (f64, f64),
        [a, b, c, d]: [f64; 4],
        (w, h): (usize, usize),
    ) {
        let n = xs.len();
        self.x0.resize(n, 0.0);
        self.y0.resize(n, 0.0);
        self.start.resize(n, 0);
        self.wx.iter_mut().chain(&mut self.wy).for_each(|v| v.resize(n, 0.0));
        let dy = y as f64 - cy;
        let (x0, y0) = (&mut self.x0[..n], &mut self.y0[..n]);
        let [wx0, wx1, wx2, wx3] = &mut self.wx;
        let (wx0, wx1, wx2, wx3) = (&mut wx0[..n], &mut wx1[..n], &mut wx2[..n], &mut wx3[..n]);
        let [wy0, wy1, wy2, wy3] = &mut self.wy;
        let (wy0, wy1, wy2, wy3) = (&mut wy0[..n], &mut wy1[..n], &mut wy2[..n], &mut wy3[..n]);
        for (i, x) in xs.enumerate() {
            let dx = x as f64 - cx;
            let (mx, my) = (cx + a * dx + b * dy, cy + c * dx + d * dy);
            (x0[i], y0[i]) = (mx.floor(), my.floor());
            [wx0[i], wx1[i], wx2[i], wx3[i]] = keys((mx - x0[i]) as f32);
            [wy0[i], wy1[i], wy2[i], wy3[i]] = keys((my - y0[i]) as f32);
        }
        // Compared and summed as floats (whole numbers, exact), then cast
        // to 32 bits: all of it vectorises, where 64-bit casts did not.
        // The same answer as the saturating integer casts of `get` (NaN,
        // cast to 0, is outside either way).
        let (wf, hf) = (w as f64, h as f64);
        let small = w.checked_mul(h).is_some_and(|p| p < i32::MAX as usize);
        for ((s, &px), &py) in self.start[..n].iter_mut().zip(&self.x0[..n]).zip(&self.y0[..n]) {
            let inside = small && px >= 1.0 && py >= 1.0 && px <= wf - 3.0 && py <= hf - 3.0;
            *s = if inside { ((py - 1.0) * wf + px - 1.0) as i32 } else { -1 };
        }
    }

    /// How many pixels.
    fn len(&self) -> usize {
        self.x0.len()
    }

    /// Pixel `i`'s tap.
    #[inline(always)]
    fn get(&self, i: usize) -> Tap {
        let (wx, wy) = (&self.wx, &self.wy);
        Tap {
            // Saturating casts: a point however far outside stays a number.
            x0: self.x0[i] as i64,
            y0: self.y0[i] as i64,
            wx: [wx[0][i], wx[1][i], wx[2][i], wx[3][i]],
            wy: [wy[0][i], wy[1][i], wy[2][i], wy[3][i]],
        }
    }
}

impl Resample {
    /// The reflection about `img`'s major axis through its centre.
    pub(crate) fn reflection(img: &Cutout, centring: Centring) -> Self {
        // The tests' cap on wider instruction sets
        // ([`tidalscope_core::dispatch::with_ceiling`]) applies here too.
        let vector = (5..=8).contains(&img.bands()) && tidalscope_core::dispatch::allowed(1);
        Self::with_interleaved(img, centring, vector)
    }

    /// [`Resample::reflection`], its pixels interleaved for the vector
    /// path when `interleave` is asked and the CPU has AVX (1 to 8 bands),
    /// else sampled plane by plane.
    fn with_interleaved(img: &Cutout, centring: Centring, interleave: bool) -> Self {
        let (h, w) = (img.height(), img.width());
        let (cx, cy, theta) = if h == 0 || w == 0 {
            // [`centre`]'s answer for an image with no pixels.
            ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0, 0.0)
        } else {
            let light = light(img);
            let (cx, cy) = centre_in(&light, w, h, centring);
            (cx, cy, axis_in(&light, w, h, (cx, cy)))
        };
        let pixels = if interleave && avx() && h * w > 0 {
            let planes: Vec<&[f32]> = (0..img.bands()).map(|b| &img.band(b)[..h * w]).collect();
            // SAFETY: the CPU has AVX (checked just above).
            #[cfg(target_arch = "x86_64")]
            let pixels = unsafe { x86::interleave(&planes) };
            #[cfg(not(target_arch = "x86_64"))]
            let pixels = Vec::new();
            pixels
        } else {
            Vec::new()
        };
        // The reflection about the line at θ through the centre.
        let (c2, s2) = ((2.0 * theta).cos(), (2.0 * theta).sin());
        Self {
            cx,
            cy,
            m: [c2, s2, s2, -c2],
            centring,
            taps: Taps::default(),
            packed: Vec::new(),
            pixels: Arc::new(pixels),
            shape: img.shape(),
        }
    }

    /// The turn by 180° about the same centre, without finding it again:
    /// exact ([`Mirror`]) about a half-pixel centre, else interpolated
    /// from the same copy of the image.
    pub(crate) fn turn(&self) -> Turn {
        match self.centring {
            Centring::HalfPixel => Turn::Exact(Mirror::about((self.cx, self.cy))),
            Centring::Subpixel => Turn::Interpolated(Self {
                m: HALF_TURN,
                taps: Taps::default(),
                packed: Vec::new(),
                pixels: Arc::clone(&self.pixels),
                ..*self
            }),
        }
    }
}

impl RowResidual for Resample {
    // Inlined into the callers compiled for wider vectors (`multiversion!`),
    // where `floor` is one instruction.
    #[inline(always)]
    fn rows(&mut self, img: &Cutout, y: usize, xs: Range<usize>, out: &mut [f32]) {
        // The vector path reads its own copy of the image.
        assert_eq!(img.shape(), self.shape, "a resampling makes the rows of the image it was made for");
        let (h, w) = (img.height(), img.width());
        self.taps.fill(xs.clone(), y, (self.cx, self.cy), self.m, (w, h));
        let n = xs.len();
        let out = &mut out[..n * img.bands()];
        #[cfg(target_arch = "x86_64")]
        if !self.pixels.is_empty() {
            // SAFETY: the copy is made only where the CPU has AVX.
            unsafe { x86::reflect_pixels(&self.pixels, w, h, y, xs.start, &self.taps, out) };
            return;
        }
        // Each band reads every tap: packed once per row.
        self.packed.clear();
        self.packed.extend((0..n).map(|i| self.taps.get(i)));
        for (b, out) in out.chunks_exact_mut(n.max(1)).enumerate() {
            reflect_row(img.band(b), w, h, y, xs.start, &self.packed, out);
        }
    }
}

/// The mirror residual's interpolation with AVX's 8-wide vectors, one
/// lane per band.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Taps;
    use std::arch::x86_64::*;

    /// The pixels of `planes` (1 to 8 bands of equal length) with each
    /// pixel's bands side by side, padded with zeros to 8 values: eight
    /// pixels at a time as an 8 × 8 transpose of the bands' runs (moves
    /// only, so every value keeps its bits), written once, never zeroed
    /// first (copying value by value, or zeroing first, took half as long
    /// as the interpolation itself).
    ///
    /// # Safety
    /// The CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn interleave(planes: &[&[f32]]) -> Vec<f32> {
        let len = planes.first().map_or(0, |p| p.len());
        assert!((1..=8).contains(&planes.len()) && planes.iter().all(|p| p.len() == len), "1 to 8 equal bands");
        let mut out: Vec<f32> = Vec::with_capacity(len * 8);
        let dst = out.as_mut_ptr();
        let whole = len / 8 * 8;
        for start in (0..whole).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (r, plane) in r.iter_mut().zip(planes) {
                *r = _mm256_loadu_ps(plane[start..start + 8].as_ptr());
            }
            let t = |a: usize, b: usize| (_mm256_unpacklo_ps(r[a], r[b]), _mm256_unpackhi_ps(r[a], r[b]));
            let ((t0, t1), (t2, t3), (t4, t5), (t6, t7)) = (t(0, 1), t(2, 3), t(4, 5), t(6, 7));
            let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
            let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
            let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
            let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
            let pixels = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (k, v) in pixels.iter().enumerate() {
                // SAFETY: pixel start + k < len: inside the capacity.
                unsafe { _mm256_storeu_ps(dst.add((start + k) * 8), *v) };
            }
        }
        for i in whole..len {
            let mut pixel = [0f32; 8];
            for (p, plane) in pixel.iter_mut().zip(planes) {
                *p = plane[i];
            }
            // SAFETY: pixel i < len: inside the capacity.
            unsafe { std::ptr::copy_nonoverlapping(pixel.as_ptr(), dst.add(i * 8), 8) };
        }
        // SAFETY: every one of the len × 8 values was written above.
        unsafe { out.set_len(len * 8) };
        out
    }

    /// [`super::reflect_row`] for up to 8 bands at once, from `pixels`
    /// (each pixel's bands side by side, padded to 8) with 8-wide vectors:
    /// the same products and sums, in the same order, per band, so the
    /// same bits. Band `b`'s columns go to `out[b * n..(b + 1) * n]`, `n`
    /// the taps' number, for the `out.len() / n` bands.
    ///
    /// # Safety
    /// The CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn reflect_pixels(
        pixels: &[f32],
        w: usize,
        h: usize,
        y: usize,
        x0: usize,
        taps: &Taps,
        out: &mut [f32],
    ) {
        let (wi, hi, n) = (w as i64, h as i64, taps.len());
        let bands = out.len() / n.max(1);
        assert!(pixels.len() == h * w * 8 && bands <= 8, "8 values per pixel");
        let centres = &pixels[(y * w + x0) * 8..][..taps.len() * 8];
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (inf, nan) = (_mm256_set1_ps(f32::INFINITY), _mm256_set1_ps(f32::NAN));
        let at = pixels.as_ptr();
        let [wy0, wy1, wy2, wy3] = &taps.wy;
        let (wy0, wy1, wy2, wy3) = (&wy0[..n], &wy1[..n], &wy2[..n], &wy3[..n]);
        let [wx0, wx1, wx2, wx3] = &taps.wx;
        let (wx0, wx1, wx2, wx3) = (&wx0[..n], &wx1[..n], &wx2[..n], &wx3[..n]);
        let start = &taps.start[..n];
        for (i, centre) in centres.chunks_exact(8).enumerate() {
            let zero = _mm256_setzero_ps();
            let mut a = [zero; 4];
            let wy = [wy0[i], wy1[i], wy2[i], wy3[i]];
            if start[i] >= 0 {
                // The 16 pixels sampled: 4 runs of 4 neighbours from
                // `start`, all inside the image (`Taps::start`).
                let first = start[i] as usize;
                assert!((first + 3 * w + 3) * 8 + 8 <= pixels.len(), "the taps of this image");
                for (j, &wy) in wy.iter().enumerate() {
                    let wy = _mm256_set1_ps(wy);
                    for (c, a) in a.iter_mut().enumerate() {
                        // SAFETY: inside the block checked just above.
                        let p = unsafe { _mm256_loadu_ps(at.add((first + j * w + c) * 8)) };
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(wy, p));
                    }
                }
            } else {
                // Each pixel clamped into the image: every offset below is
                // of a pixel of the image, inside `pixels`. (Written so
                // that no corner, however far out, overflows.)
                let t = taps.get(i);
                let mut xs = [0usize; 4];
                for (c, x) in xs.iter_mut().enumerate() {
                    *x = (t.x0 - 1 + c as i64).clamp(0, wi - 1) as usize;
                }
                for (j, &wy) in wy.iter().enumerate() {
                    let wy = _mm256_set1_ps(wy);
                    let row = (t.y0 - 1 + j as i64).clamp(0, hi - 1) as usize;
                    for (a, x) in a.iter_mut().zip(xs) {
                        // SAFETY: row < h and x < w, so the 8 values are in `pixels`.
                        let p = unsafe { _mm256_loadu_ps(at.add((row * w + x) * 8)) };
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(wy, p));
                    }
                }
            }
            let wxs = [wx0[i], wx1[i], wx2[i], wx3[i]];
            let wx = |c: usize| _mm256_set1_ps(wxs[c]);
            let mut sampled = _mm256_mul_ps(a[0], wx(0));
            for (c, a) in a.iter().enumerate().skip(1) {
                sampled = _mm256_add_ps(sampled, _mm256_mul_ps(*a, wx(c)));
            }
            let v = _mm256_sub_ps(_mm256_loadu_ps(centre.as_ptr()), sampled);
            let finite = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(v, abs), inf);
            let mut d = [0f32; 8];
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_blendv_ps(nan, v, finite));
            for (b, d) in d.iter().take(bands).enumerate() {
                out[b * n + i] = *d;
            }
        }
    }
}

/// Columns `x0..` of row `y` of one band's mirror residual, its pixels
/// sampling at `taps`. A sum of finite taps is finite, and one non-finite
/// tap makes it non-finite (a weight of 0 times ±inf is NaN), so one test
/// on the difference applies the non-finite rule.
#[inline(always)]
fn reflect_row(band: &[f32], w: usize, h: usize, y: usize, x0: usize, taps: &[Tap], out: &mut [f32]) {
    let (wi, hi) = (w as i64, h as i64);
    let row = &band[y * w + x0..][..taps.len()];
    for ((t, centre), out) in taps.iter().zip(row).zip(out.iter_mut()) {
        let mut acc = [0f32; 4];
        if t.x0 >= 1 && t.y0 >= 1 && t.x0 <= wi - 3 && t.y0 <= hi - 3 {
            // Cubic convolution (Keys 1981, a = −½) over the 4×4 pixels
            // around the mirror point: the rows weighted, then the columns.
            let start = (t.y0 - 1) as usize * w + (t.x0 - 1) as usize;
            for (j, wy) in t.wy.iter().enumerate() {
                let row = &band[start + j * w..][..4];
                for (a, p) in acc.iter_mut().zip(row) {
                    *a += wy * p;
                }
            }
        } else {
            // Outside (or on the edge): each pixel clamped into the cutout.
            for (j, wy) in t.wy.iter().enumerate() {
                let row = (t.y0 - 1 + j as i64).clamp(0, hi - 1) as usize * w;
                for (i, a) in acc.iter_mut().enumerate() {
                    *a += wy * band[row + (t.x0 - 1 + i as i64).clamp(0, wi - 1) as usize];
                }
            }
        }
        let sampled = acc[0] * t.wx[0] + acc[1] * t.wx[1] + acc[2] * t.wx[2] + acc[3] * t.wx[3];
        let d = centre - sampled;
        *out = if d.is_finite() { d } else { f32::NAN };
    }
}

/// Whether the CPU has AVX (8-wide vectors), which the interleaved
/// reflection uses.
fn avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The four weights of cubic convolution (Keys 1981, a = −½) for a point
/// `t` in [0, 1) past the second of four equally spaced samples.
#[inline(always)]
fn keys(t: f32) -> [f32; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2]
}

/// Each band of `img` minus its copy turned by 180° about [`centre`],
/// kept as finely as `centring` says.
pub fn residual(img: &Cutout, centring: Centring) -> Cutout {
    whole_image(img, Turn::of(img, centring))
}

/// The 180° turn about an image's half-pixel [`centre`]: pixel (x, y) lands on
/// (mx − x, my − y), integers since the centre is a half pixel. Lets the
/// residual be made row by row, where a caller (binning) wants a few rows
/// at a time rather than the whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mirror {
    mx: isize,
    my: isize,
}

impl Mirror {
    /// The turn about `img`'s half-pixel [`centre`].
    pub(crate) fn of(img: &Cutout) -> Self {
        Self::about(centre(img, Centring::HalfPixel))
    }

    /// The turn about `(cx, cy)`, a half-pixel [`centre`].
    fn about((cx, cy): (f64, f64)) -> Self {
        Self { mx: (2.0 * cx).round() as isize, my: (2.0 * cy).round() as isize }
    }

    /// Columns `xs` of row `y` of the residual of `band` (`w` pixels
    /// wide) into `out` (`xs.len()` values): the row minus its mirror, 0
    /// where the mirror falls outside.
    #[inline(always)]
    fn row(self, band: &[f32], w: usize, y: usize, xs: Range<usize>, out: &mut [f32]) {
        let h = band.len() / w.max(1);
        let ym = self.my - y as isize;
        out[..xs.len()].fill(0.0);
        if !(0..h as isize).contains(&ym) {
            return;
        }
        let (row, mirror) = (&band[y * w..(y + 1) * w], &band[ym as usize * w..(ym as usize + 1) * w]);
        // Columns whose mirror lies inside: mx − x in 0..w.
        let lo = ((self.mx - w as isize + 1).max(0) as usize).max(xs.start);
        let hi = ((self.mx + 1).max(0) as usize).min(w).min(xs.end);
        if lo >= hi {
            return;
        }
        // Column x's mirror is mx − x: the columns lo..hi meet the mirror's
        // mx − hi + 1 ..= mx − lo read backwards. As slices, so that the
        // loop compiles to vectors (indexed, it ran one pixel at a time
        // with a bounds check each).
        let m0 = (self.mx - hi as isize + 1) as usize;
        let mirrored = mirror[m0..m0 + (hi - lo)].iter().rev();
        for ((o, r), m) in out[lo - xs.start..hi - xs.start].iter_mut().zip(&row[lo..hi]).zip(mirrored) {
            *o = r - m;
        }
    }
}

impl RowResidual for Mirror {
    #[inline(always)]
    fn rows(&mut self, img: &Cutout, y: usize, xs: Range<usize>, out: &mut [f32]) {
        let w = img.width();
        for (b, out) in out.chunks_exact_mut(xs.len().max(1)).take(img.bands()).enumerate() {
            self.row(img.band(b), w, y, xs.clone(), out);
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

    /// `centre(img, Centring::HalfPixel)`.
    fn half(img: &Cutout) -> (f64, f64) {
        centre(img, Centring::HalfPixel)
    }

    /// Whether `got` is within `tol` of `want` on both axes.
    fn near(got: (f64, f64), want: (f64, f64), tol: f64) -> bool {
        (got.0 - want.0).abs() < tol && (got.1 - want.1).abs() < tol
    }

    #[test]
    fn the_centre_follows_the_galaxy_to_the_nearest_half_pixel_or_finer() {
        let mut img = Cutout::zeros(2, 64, 64);
        blob(&mut img, 32.3, 30.8, 3.0, 100.0);
        assert_eq!(half(&img), (32.5, 31.0));
        let fine = centre(&img, Centring::Subpixel);
        assert!(near(fine, (32.3, 30.8), 1e-3), "{fine:?}");
        // A bright neighbour far from the centre does not pull it.
        blob(&mut img, 55.0, 10.0, 2.0, 500.0);
        assert_eq!(half(&img), (32.5, 31.0));
        let fine = centre(&img, Centring::Subpixel);
        assert!(near(fine, (32.3, 30.8), 0.02), "{fine:?}");
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
        assert_eq!(half(&masked), (32.5, 31.0));
        // Empty images have no pixel to weigh: the geometric centre, no panic.
        for centring in [Centring::HalfPixel, Centring::Subpixel] {
            assert_eq!(centre(&Cutout::zeros(2, 0, 0), centring), (-0.5, -0.5));
            assert_eq!(residual(&Cutout::zeros(1, 0, 7), centring).shape(), [1, 0, 7]);
        }
        // A centre far off is kept within 1/40 of the side (1.6 px) of the
        // middle (then rounded: up to ¼ pixel further).
        let mut off = Cutout::zeros(1, 64, 64);
        blob(&mut off, 40.0, 31.5, 3.0, 100.0);
        assert_eq!(half(&off), (33.0, 31.5));
        assert!(near(centre(&off, Centring::Subpixel), (33.1, 31.5), 1e-9));
    }

    #[test]
    fn a_point_symmetric_galaxy_leaves_no_residual_and_a_tail_remains() {
        let mut img = Cutout::zeros(3, 48, 48);
        // Elongated symmetric host: two blobs mirrored about (24, 23.5).
        blob(&mut img, 21.0, 22.5, 2.5, 50.0);
        blob(&mut img, 27.0, 24.5, 2.5, 50.0);
        let r = residual(&img, Centring::HalfPixel);
        let peak = r.data().iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(peak < 1e-4, "a point-symmetric image has residual {peak}");
        // A faint tail on one side shows as itself, and negative on the other.
        blob(&mut img, 36.0, 23.5, 1.5, 1.0);
        let r = residual(&img, Centring::HalfPixel);
        let at = |x: usize, y: usize| r.band(1)[y * 48 + x];
        let tail = (-0.25f32 / 4.5).exp();
        assert!((at(36, 23) - tail).abs() < 1e-3 && (at(36, 24) - tail).abs() < 1e-3, "tail {}", at(36, 23));
        assert!((at(12, 23) + at(36, 24)).abs() < 1e-4, "its mirror is its negative");
    }

    /// The largest |value| of `img`'s pixels more than `margin` from its edges.
    fn inner_peak(img: &Cutout, margin: usize) -> f32 {
        let (h, w) = (img.height(), img.width());
        let mut peak = 0f32;
        for b in 0..img.bands() {
            for y in margin..h - margin {
                for x in margin..w - margin {
                    peak = peak.max(img.band(b)[y * w + x].abs());
                }
            }
        }
        peak
    }

    #[test]
    fn a_centre_between_half_pixels_cancels_only_when_kept_finely() {
        // A round host of peak 50 centred a quarter pixel off the half-pixel
        // grid on both axes: rounded, its core leaves a residual of its
        // gradient over half a pixel; kept, only the interpolation's error.
        let mut img = Cutout::zeros(2, 48, 48);
        blob(&mut img, 24.25, 23.75, 2.5, 50.0);
        let rounded = inner_peak(&residual(&img, Centring::HalfPixel), 3);
        let fine = inner_peak(&residual(&img, Centring::Subpixel), 3);
        assert!(rounded > 5.0, "rounded: {rounded}");
        assert!(fine < 0.02 * rounded, "subpixel: {fine} against {rounded} rounded");
        // A faint tail still shows as itself, negative at its mirror.
        blob(&mut img, 36.0, 23.75, 1.5, 1.0);
        let r = residual(&img, Centring::Subpixel);
        let at = |x: usize, y: usize| r.band(1)[y * 48 + x];
        let tail = (-(0.0625f32 + 0.0625) / 4.5).exp();
        assert!((at(36, 24) - tail).abs() < 0.05, "tail {}", at(36, 24));
        assert!(at(13, 24) < -0.5 * tail, "its mirror {}", at(13, 24));
        // A centre on the half-pixel grid samples the pixels themselves:
        // the same bits as the exact turn wherever its mirror is inside.
        let mut rng = tidalscope_core::Rng::new(5);
        let mut grid = Cutout::zeros(2, 48, 48);
        grid.data_mut().iter_mut().for_each(|v| *v = rng.normal() as f32);
        let c = (24.5, 23.0);
        let turned = Resample {
            cx: c.0,
            cy: c.1,
            m: HALF_TURN,
            centring: Centring::Subpixel,
            taps: Taps::default(),
            packed: Vec::new(),
            pixels: Arc::new(Vec::new()),
            shape: grid.shape(),
        };
        let (exact, fine) = (whole_image(&grid, Mirror::about(c)), whole_image(&grid, turned));
        // The mirrors of row 47 and of columns 0 and 1 are outside.
        for y in 0..47 {
            for x in 2..48 {
                let i = y * 48 + x;
                for b in 0..2 {
                    assert_eq!(fine.band(b)[i].to_bits(), exact.band(b)[i].to_bits(), "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn non_finite_pixels_and_their_mirrors_are_nan_and_outside_mirrors_are_zero() {
        let mut img = Cutout::zeros(1, 40, 40);
        for (i, v) in img.band_mut(0).iter_mut().enumerate() {
            *v = (i % 7) as f32 * 0.01;
        }
        blob(&mut img, 20.5, 20.5, 2.0, 100.0);
        img.band_mut(0)[12 * 40 + 10] = f32::NAN;
        assert_eq!(half(&img), (20.5, 20.5));
        let r = residual(&img, Centring::HalfPixel);
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

    /// An elliptical Gaussian of `flux` at `(x0, y0)`, major axis at
    /// `theta`, axis ratio `q`, added to every band.
    fn ellipse(img: &mut Cutout, (x0, y0): (f64, f64), sigma: f64, q: f64, theta: f64, flux: f32) {
        let w = img.width();
        let (c, s) = (theta.cos(), theta.sin());
        for b in 0..img.bands() {
            for (i, v) in img.band_mut(b).iter_mut().enumerate() {
                let (dx, dy) = ((i % w) as f64 - x0, (i / w) as f64 - y0);
                let (u, t) = (c * dx + s * dy, -s * dx + c * dy);
                *v += flux * (-(u * u + t * t / (q * q)) / (2.0 * sigma * sigma)).exp() as f32;
            }
        }
    }

    #[test]
    fn the_mirror_residual_cancels_an_elliptical_host_and_keeps_an_s_shaped_tail_pair() {
        let theta = 0.5;
        let mut host = Cutout::zeros(2, 64, 64);
        ellipse(&mut host, (31.5, 31.5), 5.0, 0.5, theta, 100.0);
        let found = axis(&host, half(&host));
        assert!((found - theta).abs() < 0.01, "axis {found} for a host at {theta}");
        // The host cancels to the interpolation's error, well under 1% of its peak.
        let m = mirror_residual(&host, Centring::Subpixel);
        let peak = m.data().iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(peak < 0.3, "an elliptical host leaves {peak} of its 100");
        // Two faint arms, point-symmetric about the centre and off the axis
        // (an S): the rotational residual cancels them, the mirror keeps them.
        let mut tails = host.clone();
        let (u, t) = (12.0, 6.0);
        let arm = |sign: f64| {
            (31.5 + sign * (u * theta.cos() - t * theta.sin()), 31.5 + sign * (u * theta.sin() + t * theta.cos()))
        };
        for sign in [1.0, -1.0] {
            let (x, y) = arm(sign);
            blob(&mut tails, x, y, 1.5, 5.0);
        }
        let (x, y) = arm(1.0);
        let at = |img: &Cutout| img.band(0)[y.round() as usize * 64 + x.round() as usize];
        assert!(at(&residual(&tails, Centring::Subpixel)).abs() < 1e-3, "the S cancels in the rotational residual");
        assert!(
            at(&mirror_residual(&tails, Centring::Subpixel)) > 3.5,
            "the S remains in the mirror residual: {}",
            at(&mirror_residual(&tails, Centring::Subpixel))
        );
    }

    #[test]
    fn the_bands_interleaved_by_transposes_keep_every_bit_and_pad_with_zeros() {
        if !avx() {
            return;
        }
        let mut rng = tidalscope_core::Rng::new(3);
        for bands in 1..=8 {
            for len in [0, 1, 7, 8, 9, 23, 64] {
                let planes: Vec<Vec<f32>> = (0..bands)
                    .map(|b| {
                        (0..len)
                            .map(|i| match (i + b) % 7 {
                                0 => f32::from_bits(0x7fc0_1234 + i as u32), // a NaN with a payload
                                1 => -0.0,
                                2 => f32::NEG_INFINITY,
                                _ => rng.normal() as f32,
                            })
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f32]> = planes.iter().map(|p| &p[..]).collect();
                // SAFETY: the CPU has AVX (checked above).
                let out = unsafe { x86::interleave(&refs) };
                let want: Vec<u32> =
                    (0..len * 8).map(|k| if k % 8 < bands { planes[k % 8][k / 8].to_bits() } else { 0 }).collect();
                assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{bands} bands, {len} pixels");
            }
        }
    }

    #[test]
    fn every_band_interpolated_at_once_gives_the_bits_of_one_band_at_a_time() {
        // 1 to 9 bands (5 to 8 take the vector path where the CPU has AVX),
        // odd sizes, NaN and ±inf pixels, a bright source off the middle
        // so that mirror points fall outside the image, whole rows and a
        // window's columns.
        let (h, w) = (37, 41);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for bands in 1..=9 {
            let mut data: Vec<f32> = (0..bands * h * w).map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.01).collect();
            for i in (0..data.len()).step_by(31) {
                data[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
            }
            let mut img = Cutout::from_chw(bands, h, w, data).unwrap();
            ellipse(&mut img, (24.0, 15.5), 3.0, 0.5, 0.7, 300.0);
            // The vector path wherever the CPU has it (whatever cap another
            // test has set meanwhile), against the plane-by-plane one.
            let vector = (5..=8).contains(&bands) && avx();
            let fast = Resample::with_interleaved(&img, Centring::Subpixel, vector);
            assert_eq!(fast.pixels.is_empty(), !vector, "{bands} bands: the vector path where the CPU has it");
            let plain = Resample::with_interleaved(&img, Centring::Subpixel, false);
            assert!(fast.m[0].abs() > 0.1 && fast.m[1].abs() > 0.1, "an axis off the pixel grid");
            let (cx, cy) = (fast.cx, fast.cy);
            assert!((cx * 2.0).fract() != 0.0 && (cy * 2.0).fract() != 0.0, "a centre off the half pixels");
            // The reflection, and the turn about the same subpixel centre.
            let pairs =
                [(Turn::Interpolated(fast.clone()), Turn::Interpolated(plain.clone())), (fast.turn(), plain.turn())];
            for (mut fast, mut plain) in pairs {
                for xs in [0..w, 5..30] {
                    let (mut a, mut b) = (vec![0f32; bands * xs.len()], vec![0f32; bands * xs.len()]);
                    for y in 0..h {
                        fast.rows(&img, y, xs.clone(), &mut a);
                        plain.rows(&img, y, xs.clone(), &mut b);
                        assert_eq!(bits(&a), bits(&b), "{bands} bands, row {y}, columns {xs:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_mirror_residual_is_nan_at_non_finite_pixels_and_sky_noise_where_the_mirror_is_outside() {
        let mut img = Cutout::zeros(1, 32, 32);
        ellipse(&mut img, (15.5, 15.5), 3.0, 0.6, 0.3, 50.0);
        img.band_mut(0)[10 * 32 + 20] = f32::NAN;
        let m = mirror_residual(&img, Centring::Subpixel);
        assert!(m.band(0)[10 * 32 + 20].is_nan());
        // The mirror points whose 4×4 pixels hold it are NaN too, no others.
        let nan = m.data().iter().filter(|v| v.is_nan()).count();
        assert!((2..=17).contains(&nan), "{nan} NaN pixels");
        assert_eq!(mirror_residual(&Cutout::zeros(2, 0, 5), Centring::Subpixel).shape(), [2, 0, 5]);
        assert!(mirror_residual(&Cutout::zeros(1, 1, 1), Centring::Subpixel).data()[0] == 0.0);

        // Sky noise of σ 1 under a host at 0.4 rad: the corners' mirror
        // points fall outside and take the nearest edge's sky, so the outer
        // frame (where `--sigma sky` measures the noise) holds no zeros and
        // the same noise as the mirror residual inside it.
        let n = 96;
        let mut rng = tidalscope_core::Rng::new(7);
        let mut sky = Cutout::zeros(1, n, n);
        sky.band_mut(0).iter_mut().for_each(|v| *v = rng.normal() as f32);
        ellipse(&mut sky, (47.5, 47.5), 4.0, 0.5, 0.4, 400.0);
        let m = mirror_residual(&sky, Centring::Subpixel);
        let (mut frame, mut inner) = (Vec::new(), Vec::new());
        for (i, v) in m.band(0).iter().enumerate() {
            let (x, y) = (i % n, i / n);
            let edge = x.min(y).min(n - 1 - x).min(n - 1 - y);
            let r = ((x as f64 - 47.5).powi(2) + (y as f64 - 47.5).powi(2)).sqrt();
            if edge < n / 8 {
                frame.push(*v);
            } else if r > 20.0 {
                inner.push(*v);
            }
        }
        assert!(frame.iter().all(|v| *v != 0.0), "no zeros in the frame");
        let mad = |v: &mut Vec<f32>| {
            v.sort_by(f32::total_cmp);
            let med = v[v.len() / 2];
            let mut dev: Vec<f32> = v.iter().map(|x| (x - med).abs()).collect();
            dev.sort_by(f32::total_cmp);
            dev[dev.len() / 2]
        };
        let (outer, inside) = (mad(&mut frame), mad(&mut inner));
        assert!((outer / inside - 1.0).abs() < 0.15, "frame MAD {outer} against {inside} inside");
    }

    #[test]
    fn both_stacks_the_bands_then_their_residuals_and_names_them() {
        let mut img = Cutout::zeros(2, 16, 16);
        blob(&mut img, 7.0, 9.0, 1.5, 10.0);
        img.band_mut(1)[3] = 4.0;
        for centring in [Centring::HalfPixel, Centring::Subpixel] {
            let both = Channels::Both.apply(&img, centring);
            assert_eq!(both.shape(), [4, 16, 16]);
            assert_eq!(&both.data()[..img.data().len()], img.data());
            assert_eq!(&both.data()[img.data().len()..], residual(&img, centring).data());
            assert_eq!(Channels::Image.apply(&img, centring).data(), img.data());
            assert_eq!(Channels::Residual.apply(&img, centring).data(), residual(&img, centring).data());
            let all = Channels::All.apply(&img, centring);
            assert_eq!(all.shape(), [6, 16, 16]);
            assert_eq!(&all.data()[..2 * img.data().len()], both.data());
            assert_eq!(&all.data()[2 * img.data().len()..], mirror_residual(&img, centring).data());
        }
        let names = ["g".to_string(), "r".to_string()];
        assert_eq!(Channels::Both.names(&names), ["g", "r", "g_residual", "r_residual"]);
        assert_eq!(Channels::Residual.names(&names), ["g_residual", "r_residual"]);
        assert_eq!((Channels::Image.factor(), Channels::Residual.factor(), Channels::Both.factor()), (1, 1, 2));
        assert_eq!(Channels::All.names(&names), ["g", "r", "g_residual", "r_residual", "g_mirror", "r_mirror"]);
        assert!(Channels::Residual.describe().starts_with("only") && Channels::Both.describe().contains("bands and"));
    }
}
