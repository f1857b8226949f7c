//! Augmentations: two random views of an image for self-supervised
//! training, and the deterministic view used at inference.
//!
//! The reference (Desmons et al. 2023) makes each view by a random
//! horizontal and vertical flip, additive Gaussian noise, and a centre crop
//! followed by a random crop to 96 px, without resizing. Its centre crop is
//! nominally 96 + 13 = 109 px, but TensorFlow's `central_crop(109/128)`
//! rounds the start down (9 px), so the crop is really 110 px: the view's
//! offset is 9 + U{0..14}. tidalscope reproduces that exactly, for any
//! image and crop size (the margin scales as 13/96 of the crop).
//!
//! **Noise scale (the reference's flaw 2).** The reference measures σ_b on
//! raw flux but adds noise of σ = U(1,3)·σ_b *after* the asinh
//! normalisation x ← asinh(x/σ_b/3), where one raw σ_b is worth only 1/3 —
//! so its noise was 1/(3σ_b) times weaker than intended (for HSC coadds,
//! σ_b ≈ 0.01: a hundred times too weak, i.e. practically none).
//! [`NoiseScale::Physical`] adds what the paper describes: noise of
//! U(1,3)·σ_b in raw flux, which after normalisation has σ = U(1,3)/3
//! (asinh is linear at sky level). Since σ_b (a MAD over whole cutouts,
//! galaxies included) exceeds the sky noise — by ×1.5 at HSC resolution,
//! ×5 after 4×4 binning — this buries features at a few σ per pixel, the
//! very ones a tidal-feature classifier must see. [`NoiseScale::Reference`]
//! reproduces the reference exactly: σ = U(1,3)·σ_b added to normalised
//! pixels (0.1–0.7 of the sky noise): tidalscope's presets use it. One
//! factor is drawn per batch, as in the reference.
//!
//! **Beyond the reference** ([`ViewJitter`]). The reference's views share
//! the host, the field and the noise pattern and differ only by flips, a
//! few pixels of shift and weak noise, so the contrastive task is solved
//! from the host's appearance. [`ViewJitter::strong`] adds, each drawn per
//! view: the full group of 8 square symmetries (90° rotations with the
//! flips: the sky has no preferred orientation), a wider crop window, and a
//! brightness and colour jitter. The brightness jitter multiplies band b's
//! flux by k·c_b (k log-uniform in [1/(1+f), 1+f], c_b in [1/(1+c), 1+c]),
//! applied exactly to normalised pixels as v ← asinh(k c_b sinh v), since
//! v = asinh(x/3σ_b). A core mask ([`ViewJitter::core_mask`], on in the
//! strong views) lays sky over a random disc around the cutout's centre,
//! where the target galaxy is, so views cannot be matched by the host's
//! bright core alone, and a sky jitter ([`ViewJitter::sky`], on in the
//! strong views) gives each view its own smooth sky, so views cannot be
//! matched by the sky-subtraction residuals they share. Optional, off in
//! both presets: a seeing jitter
//! ([`ViewJitter::blur`]) convolves each view's flux with a Gaussian of
//! random width; a neighbour mask ([`ViewJitter::neighbours`]) lays sky over
//! compact bright sources other than the target, each with a probability;
//! a zoom ([`ViewJitter::zoom`]) resamples each view from a larger or
//! smaller square of the image. Every one of
//! these works on images as they arrive from a survey (cutouts are centred
//! on their target): none needs a noise-free render.
//!
//! Inference uses [`Augment::inference`]: the centre crop, no flips, no
//! noise — a different value, not a mode flag, so predictions are
//! deterministic (the reference's flaw 1).

use serde::{Deserialize, Serialize};
use tidalscope_core::math;
use tidalscope_core::{Cutout, Rng};

/// How the augmentation noise relates to the normalised images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseScale {
    /// σ = U(1,3)·σ_b in raw flux, i.e. U(1,3)/3 in normalised units.
    Physical,
    /// The reference's exact behaviour: σ = U(1,3)·σ_b (raw units) added
    /// to normalised pixels.
    Reference,
    /// No noise.
    None,
}

/// How far training views differ from each other beyond the reference's
/// flips, shift and noise (see the module docs). Stored in run configs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ViewJitter {
    /// Also rotate by 90° (with the flips: all 8 square symmetries).
    pub rotations: bool,
    /// Margin of the window random crops are taken from, as a fraction of
    /// the crop (reference: 13/96; capped by the image).
    pub margin: f64,
    /// Brightness jitter f: flux × k, k log-uniform in [1/(1+f), 1+f].
    pub flux: f64,
    /// Colour jitter c: band b's flux × c_b, c_b log-uniform in [1/(1+c), 1+c].
    pub colour: f64,
    /// Core mask m: each view replaces a disc around the cutout's centre
    /// (the target galaxy) of radius U(0, m)·crop by sky (0 before the
    /// view's noise), so that views must be matched by what lies outside
    /// the host's core. 0: off.
    #[serde(default)]
    pub core_mask: f64,
    /// Seeing jitter s: each view is convolved, in linear flux, with a
    /// circular Gaussian of σ drawn U(0, s) view pixels, as if seen through
    /// a broader PSF. Flux is kept away from the view's edges (at the edges
    /// the kernel is cut to the view and renormalised); the image's own
    /// noise is smoothed with it, the augmentation noise is added after.
    /// 0: off.
    #[serde(default)]
    pub blur: f64,
    /// Neighbour mask p: each compact bright source in the view other than
    /// the target is laid over with sky, one pixel wider than its
    /// footprint, with probability p, drawn per source and per view — so
    /// views cannot be matched by the field around the target. A source is
    /// an 8-connected group of at most 1/16 of the view whose level (the
    /// brightest band, less the median at its distance from the cutout's
    /// centre) is ≥ 3σ_b, peaking at ≥ 10σ_b, with no pixel within 2 view
    /// pixels of the centre. Sources are found before the seeing jitter,
    /// so with both on a blurred halo can reach past the masked border.
    /// 0: off.
    #[serde(default)]
    pub neighbours: f64,
    /// Zoom z: each view is resampled (bilinearly, in linear flux) from a
    /// square of side c·k of the image, k log-uniform in [1/(1+z), 1+z]
    /// (capped by the image), onto the c-pixel view: the target seen at
    /// another distance, surface brightness kept. 0: off.
    #[serde(default)]
    pub zoom: f64,
    /// Sky jitter a: each channel of each view gets its own smooth sky
    /// pattern, in linear flux — one plane wave of wavelength 2 to 6 view
    /// widths, random direction and phase, amplitude U(0, a)·3σ_b —
    /// as sky-subtraction residuals add, so that views cannot be matched
    /// by the sky pattern they share (the masks then lay their 0 over the
    /// wave). 0: off.
    #[serde(default)]
    pub sky: f64,
}

impl ViewJitter {
    /// The reference: flips, a 13/96 margin, nothing else.
    pub const REFERENCE: Self = Self {
        rotations: false,
        margin: 13.0 / 96.0,
        flux: 0.0,
        colour: 0.0,
        core_mask: 0.0,
        blur: 0.0,
        neighbours: 0.0,
        zoom: 0.0,
        sky: 0.0,
    };

    /// Views that differ in orientation, position, brightness and colour,
    /// with the target's core masked out to a radius of up to an eighth of
    /// the view (chosen on validation splits of HSC-UD and LSST-y10 mocks
    /// over several pretraining seeds, against a quarter and none; see the
    /// README) and a sky jitter of amplitude up to 0.5·3σ_b (chosen on
    /// validation mocks with and without strong sky residuals and crowded
    /// fields, against 1 and none, over two pretraining seeds).
    pub fn strong() -> Self {
        Self {
            rotations: true,
            margin: 0.5,
            flux: 0.5,
            colour: 0.15,
            core_mask: 0.125,
            blur: 0.0,
            neighbours: 0.0,
            zoom: 0.0,
            sky: 0.5,
        }
    }

    /// Whether [`Augment::view`] has per-pixel flux work to do.
    fn rescales(&self) -> bool {
        self.flux > 0.0 || self.colour > 0.0
    }
}

/// Adds to the stretched `c`×`c` channel `v` (v = asinh(x / 3σ_b)) a plane
/// wave of sky of amplitude `amplitude` (units of 3σ_b), wavelength 2 to 6
/// view widths, random direction and phase, in linear flux: v ←
/// asinh(sinh v + S).
fn add_sky_wave(v: &mut [f32], c: usize, amplitude: f32, rng: &mut Rng) {
    let k = std::f64::consts::TAU / (c as f64 * rng.range(2.0, 6.0));
    let theta = rng.range(0.0, std::f64::consts::TAU);
    let phase = rng.range(0.0, std::f64::consts::TAU);
    let (kx, ky) = (k * theta.cos(), k * theta.sin());
    // cos(a + b) = cos a cos b − sin a sin b: one sin_cos per row and column.
    let along = |k: f64, p: f64| -> Vec<(f32, f32)> {
        (0..c).map(|i| (k * i as f64 + p).sin_cos()).map(|(s, co)| (s as f32, co as f32)).collect()
    };
    let (xs, ys) = (along(kx, phase), along(ky, 0.0));
    math::sinh_all(v);
    for (row, &(sy, cy)) in v.chunks_exact_mut(c).zip(&ys) {
        for (p, &(sx, cx)) in row.iter_mut().zip(&xs) {
            *p += amplitude * (cx * cy - sx * sy);
        }
    }
    math::asinh_scaled_all(v, 1.0);
}

/// Footprint and peak of a neighbour, in σ_b (see [`ViewJitter::neighbours`]):
/// 3σ_b reaches into a source's wings without joining noise peaks into
/// groups (0.1% of sky pixels per band); 10σ_b leaves out faint diffuse
/// light such as most tidal debris, which must stay in both views.
const NEIGHBOUR_SIGMA: (f64, f64) = (3.0, 10.0);

/// A group reaching this close to the cutout's centre (view pixels) is the
/// target, never a neighbour: with the median at each distance subtracted,
/// an elongated host leaves lobes that start next to its centre, not on it.
const TARGET_RADIUS: f64 = 2.0;

/// Pixel `i` of an `h`×`w` image and its (up to) 8 neighbours, row by row.
pub(crate) fn around(i: usize, h: usize, w: usize) -> impl Iterator<Item = usize> {
    let (y, x) = (i / w, i % w);
    (y.saturating_sub(1)..=(y + 1).min(h - 1))
        .flat_map(move |ny| (x.saturating_sub(1)..=(x + 1).min(w - 1)).map(move |nx| ny * w + nx))
}

/// Subtracts from each pixel of the `h`×`w` map `level` the median of the
/// finite pixels at its (rounded) distance from `centre`, so that a
/// galaxy's own smooth light does not join everything around it into one
/// source. Pixels that are not finite, or `f32::MIN` (no data), stay out of
/// the medians. Returns the medians, ring by ring (ring k: distance k).
pub(crate) fn subtract_ring_median(level: &mut [f32], h: usize, w: usize, centre: (f64, f64)) -> Vec<f32> {
    let ring = |i: usize| ((i / w) as f64 - centre.0).hypot((i % w) as f64 - centre.1).round() as usize;
    let corners = [0, w - 1, (h - 1) * w, h * w - 1];
    let mut rings: Vec<Vec<f32>> = vec![Vec::new(); corners.iter().map(|&i| ring(i)).max().unwrap_or(0) + 1];
    for (i, v) in level.iter().enumerate() {
        if v.is_finite() && *v > f32::MIN {
            rings[ring(i)].push(*v);
        }
    }
    let floor: Vec<f32> = rings.iter_mut().map(|r| tidalscope_core::stats::median(r).unwrap_or(0.0)).collect();
    level.iter_mut().enumerate().for_each(|(i, v)| *v -= floor[ring(i)]);
    floor
}

/// The compact bright sources of an `h`×`w` map other than its target:
/// 8-connected groups of at most `max_area` pixels with `level` ≥ `lo`
/// whose brightest pixel reaches `hi`, leaving out any group with a pixel
/// within `radius` of `centre` (the target, its lobes and whatever
/// touches them). Returns each source's pixel indices.
pub(crate) fn compact_sources(
    level: &[f32],
    (h, w): (usize, usize),
    (centre, radius): ((f64, f64), f64),
    lo: f32,
    hi: f32,
    max_area: usize,
) -> Vec<Vec<usize>> {
    let mut seen = vec![false; h * w];
    let (mut sources, mut stack) = (Vec::new(), Vec::new());
    for start in 0..h * w {
        // NaN never reaches a threshold.
        if seen[start] || level[start].is_nan() || level[start] < lo {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut group, mut peak, mut target) = (Vec::new(), f32::MIN, false);
        while let Some(i) = stack.pop() {
            group.push(i);
            peak = peak.max(level[i]);
            target |= ((i / w) as f64 - centre.0).hypot((i % w) as f64 - centre.1) <= radius;
            for j in around(i, h, w) {
                if !seen[j] && level[j] >= lo {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if !target && peak >= hi && group.len() <= max_area {
            sources.push(group);
        }
    }
    sources
}

/// Convolves the `c`×`c` image `img` in place with the Gaussian taps `k`
/// (odd length, any scale: each output is divided by the sum of the taps it
/// used) along rows, then columns, using `tmp` (`c`×`c`) as scratch. Near
/// the edges the taps that fall outside are dropped, so a flat image stays
/// flat there.
fn blur_separable(img: &mut [f32], tmp: &mut [f32], c: usize, k: &[f32]) {
    let r = k.len() / 2;
    let pass = |src: &[f32], dst: &mut [f32], stride: usize, step: usize| {
        for line in 0..c {
            for i in 0..c {
                let (lo, hi) = (i.saturating_sub(r), (i + r).min(c - 1));
                let (mut acc, mut wsum) = (0f32, 0f32);
                for j in lo..=hi {
                    let w = k[j + r - i];
                    acc += w * src[line * stride + j * step];
                    wsum += w;
                }
                dst[line * stride + i * step] = acc / wsum;
            }
        }
    };
    pass(img, tmp, c, 1);
    pass(tmp, img, 1, c);
}

impl Default for ViewJitter {
    fn default() -> Self {
        Self::REFERENCE
    }
}

/// An image smaller than the view asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("image of {width}×{height} pixels is smaller than the {crop}×{crop} crop")]
pub struct TooSmall {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// The crop's side.
    pub crop: usize,
}

/// A view transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Output side (pixels).
    pub crop: usize,
    /// Random flips and crop offsets (false: centre crop, no flips).
    pub random: bool,
    /// Noise.
    pub noise: NoiseScale,
    /// Range of the per-batch noise factor (reference: 1 to 3).
    pub noise_factor: (f32, f32),
    /// Rotations, crop window, brightness and colour.
    pub jitter: ViewJitter,
}

impl Augment {
    /// The training transform of the reference, cropping to `crop` pixels.
    pub fn training(crop: usize, noise: NoiseScale) -> Self {
        Self { crop, random: true, noise, noise_factor: (1.0, 3.0), jitter: ViewJitter::REFERENCE }
    }

    /// A training transform with more jitter than the reference's.
    pub fn with_jitter(self, jitter: ViewJitter) -> Self {
        Self { jitter, ..self }
    }

    /// The inference transform: centre crop to `crop` pixels, nothing else.
    pub fn inference(crop: usize) -> Self {
        Self { crop, random: false, noise: NoiseScale::None, noise_factor: (0.0, 0.0), jitter: ViewJitter::REFERENCE }
    }

    /// `(y0, x0)`, the top-left pixel of the inference view (the centre
    /// `crop` × `crop`) of an image `h` × `w`, at least `crop` each way.
    pub fn inference_origin(h: usize, w: usize, crop: usize) -> (usize, usize) {
        ((h - crop) / 2, (w - crop) / 2)
    }

    /// `(start, size)` of the centre crop that random crops are taken from,
    /// for an image side `s` (TensorFlow's `central_crop` rounding).
    pub fn centre_window(&self, s: usize) -> (usize, usize) {
        let margin = ((self.crop as f64) * self.jitter.margin).round() as usize;
        let wanted = (self.crop + margin).min(s);
        let start = (s - wanted) / 2;
        (start, s - 2 * start)
    }

    /// Per-band noise σ in normalised units for a batch, given the
    /// normaliser's σ_b (raw units).
    pub fn batch_noise(&self, sigma_b: &[f32], rng: &mut Rng) -> Vec<f32> {
        let f = if self.noise_factor.1 > self.noise_factor.0 {
            rng.range(self.noise_factor.0 as f64, self.noise_factor.1 as f64) as f32
        } else {
            self.noise_factor.0
        };
        match self.noise {
            NoiseScale::None => vec![0.0; sigma_b.len()],
            NoiseScale::Physical => vec![f / 3.0; sigma_b.len()],
            NoiseScale::Reference => sigma_b.iter().map(|s| f * s).collect(),
        }
    }

    /// Writes one view of `img` as `[bands, crop, crop]` into `out`, adding
    /// noise of `noise[b]` per band. Errors if the image is smaller than
    /// the crop.
    pub fn view(&self, img: &Cutout, noise: &[f32], rng: &mut Rng, out: &mut [f32]) -> Result<(), TooSmall> {
        let (h, w, c) = (img.height(), img.width(), self.crop);
        if h < c || w < c {
            return Err(TooSmall { width: w, height: h, crop: c });
        }
        assert_eq!(out.len(), img.bands() * c * c, "view buffer has the wrong size");
        let j = &self.jitter;
        // With the zoom, the view is cut from a resampled copy (c×c, the
        // crop already made), and the cutout's centre moves with the scale.
        let zoomed = (self.random && j.zoom > 0.0).then(|| {
            let l = j.zoom.ln_1p();
            let side = (c as f64 * rng.range(-l, l).exp()).min(h.min(w) as f64);
            // The view's centre moves as far from the image's, in view
            // pixels, as without the zoom (so the target stays in view),
            // and the square stays inside the image.
            let origin = |rng: &mut Rng, n: usize| {
                let (_, size) = self.centre_window(n);
                let half = ((size - c) as f64 / 2.0 * side / c as f64).min((n as f64 - side) / 2.0).max(0.0);
                (n as f64 - side) / 2.0 + rng.range(-half, half)
            };
            let (oy, ox) = (origin(rng, h), origin(rng, w));
            let k = side / c as f64;
            // Pixel centres of the view in image coordinates, and the two
            // image pixels (with weights) each falls between.
            let taps = |o: f64, n: usize| -> Vec<(usize, f32)> {
                (0..c)
                    .map(|i| {
                        let p = (o + (i as f64 + 0.5) * k - 0.5).clamp(0.0, (n - 1) as f64);
                        let i0 = (p.floor() as usize).min(n.saturating_sub(2));
                        (i0, (p - i0 as f64).min(1.0) as f32)
                    })
                    .collect()
            };
            let (ty, tx) = (taps(oy, h), taps(ox, w));
            let mut px = vec![0f32; img.bands() * c * c];
            let mut flux = vec![0f32; h * w];
            for b in 0..img.bands() {
                flux.copy_from_slice(img.band(b));
                math::sinh_all(&mut flux);
                let at = |y: usize, x: usize| flux[y.min(h - 1) * w + x.min(w - 1)];
                for (y, &(y1, fy)) in ty.iter().enumerate() {
                    for (x, &(x1, fx)) in tx.iter().enumerate() {
                        let top = at(y1, x1) * (1.0 - fx) + at(y1, x1 + 1) * fx;
                        let bottom = at(y1 + 1, x1) * (1.0 - fx) + at(y1 + 1, x1 + 1) * fx;
                        px[b * c * c + y * c + x] = top * (1.0 - fy) + bottom * fy;
                    }
                }
            }
            math::asinh_scaled_all(&mut px, 1.0);
            let centre = |n: usize, o: f64| ((n as f64 - 1.0) / 2.0 - o + 0.5) / k - 0.5;
            (Cutout::from_chw(img.bands(), c, c, px).expect("a c×c view"), centre(h, oy), centre(w, ox))
        });
        let (img, h, w) = match &zoomed {
            Some((z, _, _)) => (z, c, c),
            None => (img, h, w),
        };
        let (y0, x0, flip_x, flip_y) = if self.random {
            let (sy, ny) = self.centre_window(h);
            let (sx, nx) = self.centre_window(w);
            let y0 = sy + rng.below((ny - c + 1) as u64) as usize;
            let x0 = sx + rng.below((nx - c + 1) as u64) as usize;
            (y0, x0, rng.bernoulli(0.5), rng.bernoulli(0.5))
        } else {
            let (y0, x0) = Self::inference_origin(h, w, c);
            (y0, x0, false, false)
        };
        // Drawn only when asked for, so the reference's random stream is
        // unchanged.
        let transpose = self.random && j.rotations && rng.bernoulli(0.5);
        let log_uniform = |rng: &mut Rng, f: f64| if f > 0.0 { rng.range(-1.0, 1.0) * f.ln_1p() } else { 0.0 };
        let rescale = self.random && j.rescales();
        let gain = if rescale { log_uniform(rng, j.flux) } else { 0.0 };
        // The cutout's centre in view coordinates (after crop, flips and the
        // transpose).
        let (cy, cx) = {
            let (mut cy, mut cx) = match &zoomed {
                Some((_, cy, cx)) => (*cy, *cx),
                None => ((h as f64 - 1.0) / 2.0 - y0 as f64, (w as f64 - 1.0) / 2.0 - x0 as f64),
            };
            if flip_y {
                cy = (c - 1) as f64 - cy;
            }
            if flip_x {
                cx = (c - 1) as f64 - cx;
            }
            if transpose {
                std::mem::swap(&mut cy, &mut cx);
            }
            (cy, cx)
        };
        // The radius of sky laid over the centre.
        let mask = (self.random && j.core_mask > 0.0).then(|| (cy, cx, rng.range(0.0, j.core_mask) * c as f64));
        // The seeing jitter's Gaussian taps, and scratch for its two passes.
        let mut blur =
            (self.random && j.blur > 0.0).then(|| rng.range(0.0, j.blur)).filter(|&sigma| sigma > 1e-3).map(|sigma| {
                let r = (3.0 * sigma).ceil() as isize;
                let taps: Vec<f32> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
                (taps, vec![0f32; c * c])
            });
        // Every band cropped, flipped and rotated into `out`; the per-band
        // work below draws its random numbers after the neighbours'.
        for b in 0..img.bands() {
            let src = img.band(b);
            let dst = &mut out[b * c * c..(b + 1) * c * c];
            for y in 0..c {
                let sy = y0 + if flip_y { c - 1 - y } else { y };
                let row = &src[sy * w + x0..sy * w + x0 + c];
                let d = &mut dst[y * c..(y + 1) * c];
                if flip_x {
                    for (o, v) in d.iter_mut().zip(row.iter().rev()) {
                        *o = *v;
                    }
                } else {
                    d.copy_from_slice(row);
                }
            }
            if transpose {
                // With the flips, a transpose gives the 90° rotations.
                for y in 0..c {
                    for x in y + 1..c {
                        dst.swap(y * c + x, x * c + y);
                    }
                }
            }
        }
        // Sky laid over some of the neighbours, found in the brightest band
        // of each view pixel (in σ_b: x / σ_b = 3 sinh v) above the median
        // at its distance from the target, so that the host's own light
        // does not join everything around it into one source.
        let hidden = (self.random && j.neighbours > 0.0).then(|| {
            let mut level = vec![f32::MIN; c * c];
            let mut flux = vec![0f32; c * c];
            for band in out.chunks_exact(c * c) {
                flux.copy_from_slice(band);
                math::sinh_all(&mut flux);
                for (l, v) in level.iter_mut().zip(&flux) {
                    let v = 3.0 * v;
                    // NaN stays out: it is never a source.
                    if v > *l {
                        *l = v;
                    }
                }
            }
            subtract_ring_median(&mut level, c, c, (cy, cx));
            let mut hidden = vec![false; c * c];
            let (lo, hi) = (NEIGHBOUR_SIGMA.0 as f32, NEIGHBOUR_SIGMA.1 as f32);
            for source in compact_sources(&level, (c, c), ((cy, cx), TARGET_RADIUS), lo, hi, c * c / 16) {
                if rng.bernoulli(j.neighbours) {
                    source.iter().flat_map(|&i| around(i, c, c)).for_each(|k| hidden[k] = true);
                }
            }
            hidden
        });
        for (b, dst) in out.chunks_exact_mut(c * c).enumerate() {
            if rescale || blur.is_some() {
                let k = if rescale { (gain + log_uniform(rng, j.colour)).exp() as f32 } else { 1.0 };
                // v = asinh(x / 3σ_b): scaling and convolving the flux x
                // are exact here, through x = sinh v.
                if let Some((taps, tmp)) = blur.as_mut() {
                    math::sinh_all(dst);
                    blur_separable(dst, tmp, c, taps);
                    math::asinh_scaled_all(dst, k);
                } else {
                    math::rescale_stretched(dst, k);
                }
            }
            if self.random && j.sky > 0.0 {
                add_sky_wave(dst, c, rng.range(0.0, j.sky) as f32, rng);
            }
            if let Some((cy, cx, r)) = mask {
                for y in 0..c {
                    for x in 0..c {
                        if (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r {
                            dst[y * c + x] = 0.0;
                        }
                    }
                }
            }
            if let Some(hidden) = &hidden {
                dst.iter_mut().zip(hidden).filter(|(_, h)| **h).for_each(|(v, _)| *v = 0.0);
            }
            let s = noise.get(b).copied().unwrap_or(0.0);
            if s > 0.0 {
                for v in dst.iter_mut() {
                    *v += s * rng.normal() as f32;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `n`×`n` two-band image whose pixel (y, x) holds `f(y, x)`.
    fn two_bands(n: usize, f: impl Fn(usize, usize) -> (f32, f32)) -> Cutout {
        let mut px = vec![0f32; 2 * n * n];
        for y in 0..n {
            for x in 0..n {
                (px[y * n + x], px[n * n + y * n + x]) = f(y, x);
            }
        }
        Cutout::from_chw(2, n, n, px).unwrap()
    }

    #[test]
    fn the_core_mask_covers_the_cutout_centre_wherever_the_view_puts_it() {
        // Pixel (y, x) of the 20-px image holds 1 + 20y + x, so a view's
        // pixel tells where it came from. The same seed with a vanishing
        // mask gives the same crop, flips and rotation unmasked.
        let img = Cutout::from_chw(2, 20, 20, (0..800).map(|v| 1.0 + (v % 400) as f32).collect()).unwrap();
        let with = |m: f64| {
            let j = ViewJitter { rotations: true, margin: 1.0, core_mask: m, ..ViewJitter::REFERENCE };
            Augment::training(12, NoiseScale::None).with_jitter(j)
        };
        let (mut masked, mut plain) = (vec![0f32; 288], vec![0f32; 288]);
        let mut total = 0;
        for seed in 0..200 {
            with(0.4).view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut masked).unwrap();
            with(1e-12).view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut plain).unwrap();
            assert!(plain.iter().all(|&v| v > 0.0), "a vanishing mask masks nothing");
            assert_eq!(&masked[..144], &masked[144..], "both bands (alike here) masked alike");
            // Distance of each view pixel's source from the cutout centre.
            let dist = |v: f32| {
                let i = (v - 1.0) as usize;
                (((i / 20) as f64 - 9.5).powi(2) + ((i % 20) as f64 - 9.5).powi(2)).sqrt()
            };
            let inside = (0..144).filter(|&i| masked[i] == 0.0).map(|i| dist(plain[i])).fold(0.0, f64::max);
            let outside = (0..144).filter(|&i| masked[i] != 0.0).map(|i| dist(plain[i])).fold(f64::INFINITY, f64::min);
            assert!(inside < outside, "seed {seed}: masked up to {inside} px from the centre, kept one at {outside}");
            assert!(inside <= 0.4 * 12.0);
            assert!((0..144).all(|i| masked[i] == 0.0 || masked[i] == plain[i]));
            total += masked.iter().filter(|v| **v == 0.0).count();
        }
        assert!(total > 2000, "the mask is drawn: {total} pixels");
        // At inference nothing is masked; a seed repeats its views.
        let mut out = vec![0f32; 288];
        Augment::inference(12).view(&img, &[], &mut Rng::new(3), &mut out).unwrap();
        assert!(out.iter().all(|&v| v > 0.0));
        let (mut x, mut y) = (vec![0f32; 288], vec![0f32; 288]);
        with(0.4).view(&img, &[0.0, 0.0], &mut Rng::new(8), &mut x).unwrap();
        with(0.4).view(&img, &[0.0, 0.0], &mut Rng::new(8), &mut y).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn the_neighbour_mask_hides_compact_bright_sources_only_and_half_the_time() {
        // Band 0, in σ_b: a bright elongated host at the centre, a compact neighbour
        // (3×3 at 40σ), a faint diffuse arc (6σ: below the 10σ peak) and an
        // extended bright patch (80 px at 15σ: not compact). Band 1 (always
        // below band 0, so it never decides) tells each view pixel's source.
        let n = 24;
        let img = two_bands(n, |y, x| {
            // Elongated along x: the median at each distance leaves two
            // bright lobes on either side of the centre, which are the
            // target, not neighbours.
            let r2 = (y as f64 - 11.5).powi(2) / 2.0 + (x as f64 - 11.5).powi(2) / 12.5;
            let mut sigmas = 200.0 * (-r2).exp();
            if (2..5).contains(&y) && (17..20).contains(&x) {
                sigmas = 40.0;
            } else if (19..22).contains(&y) && (2..10).contains(&x) {
                sigmas = 6.0;
            } else if (0..8).contains(&y) && (0..10).contains(&x) {
                sigmas = 15.0;
            }
            ((sigmas / 3.0).asinh() as f32, -((1 + y * n + x) as f32) / 1000.0)
        });
        let j = ViewJitter { rotations: true, margin: 0.0, neighbours: 0.5, ..ViewJitter::REFERENCE };
        let a = Augment::training(n, NoiseScale::None).with_jitter(j);
        let mut out = vec![0f32; 2 * n * n];
        let mut masked_views = 0;
        for seed in 0..400 {
            a.view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut out).unwrap();
            // The same view unmasked tells where each hidden pixel came
            // from: the flips and rotation map the 24-px image onto itself.
            let plain = Augment::training(n, NoiseScale::None).with_jitter(ViewJitter { neighbours: 1e-300, ..j });
            let mut view = vec![0f32; 2 * n * n];
            plain.view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut view).unwrap();
            let hidden: Vec<(usize, usize)> = (0..n * n)
                .filter(|&i| out[n * n + i] == 0.0)
                .map(|i| {
                    let k = (-view[n * n + i] * 1000.0).round() as usize - 1;
                    (k / n, k % n)
                })
                .collect();
            if !hidden.is_empty() {
                masked_views += 1;
                // The neighbour and one pixel around it, nothing else.
                assert_eq!(hidden.len(), 25, "seed {seed}");
                assert!(hidden.iter().all(|&(y, x)| (1..6).contains(&y) && (16..21).contains(&x)), "seed {seed}");
                assert!((0..n * n).all(|i| (out[i] == 0.0) == (out[n * n + i] == 0.0)), "bands masked alike");
            }
        }
        assert!((160..240).contains(&masked_views), "hidden in {masked_views} of 400 views, not about half");
        // A seed repeats its view; inference never masks.
        let mut again = vec![0f32; 2 * n * n];
        a.view(&img, &[0.0, 0.0], &mut Rng::new(7), &mut out).unwrap();
        a.view(&img, &[0.0, 0.0], &mut Rng::new(7), &mut again).unwrap();
        assert_eq!(out, again);
        Augment::inference(n).view(&img, &[], &mut Rng::new(7), &mut out).unwrap();
        assert!(out[n * n..].iter().all(|v| *v != 0.0));
    }

    #[test]
    fn the_zoom_resamples_a_scaled_square_keeps_surface_brightness_and_the_mask_centre() {
        // Flux (in 3σ_b) = 1000 + row in band 0 and 1000 + column in band
        // 1: bilinear sampling is exact on it, so each view pixel tells the
        // image position it was sampled at.
        let n = 40;
        let img = two_bands(n, |y, x| ((1000.0 + y as f32).asinh(), (1000.0 + x as f32).asinh()));
        let c = 24;
        let with = |mask: f64| {
            let j = ViewJitter { rotations: true, margin: 0.5, zoom: 0.4, core_mask: mask, ..ViewJitter::REFERENCE };
            Augment::training(c, NoiseScale::None).with_jitter(j)
        };
        let (mut view, mut masked) = (vec![0f32; 2 * c * c], vec![0f32; 2 * c * c]);
        let (mut smallest, mut largest, mut widest) = (f64::MAX, 0f64, 0f64);
        for seed in 0..300 {
            with(1e-300).view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut view).unwrap();
            let at = |i: usize| ((view[i] as f64).sinh() - 1000.0, (view[c * c + i] as f64).sinh() - 1000.0);
            // A square grid: one step along a view row moves the same
            // distance k everywhere, and so does one step down a column.
            let k = {
                let (a, b) = (at(0), at(1));
                (a.0 - b.0).hypot(a.1 - b.1)
            };
            for y in 0..c {
                for x in 0..c {
                    let p = at(y * c + x);
                    assert!((0.0..=(n - 1) as f64).contains(&p.0) && (0.0..=(n - 1) as f64).contains(&p.1));
                    for (q, what) in [(x + 1 < c).then(|| at(y * c + x + 1)), (y + 1 < c).then(|| at((y + 1) * c + x))]
                        .into_iter()
                        .zip(["row", "column"])
                    {
                        if let Some(q) = q {
                            let d = (p.0 - q.0).hypot(p.1 - q.1);
                            assert!((d - k).abs() < 1e-2, "seed {seed}: step {d} along a {what}, {k} elsewhere");
                        }
                    }
                }
            }
            assert!(k > 1.0 / 1.4 - 1e-6 && k < 1.4 + 1e-6, "seed {seed}: scale {k}");
            (smallest, largest) = (smallest.min(k), largest.max(k));
            // The view's centre moves from the image's by at most the crop
            // window's half margin (6 view pixels, as without the zoom).
            let (a, b) = (at(0), at(c * c - 1));
            for shift in [((a.0 + b.0) / 2.0 - 19.5) / k, ((a.1 + b.1) / 2.0 - 19.5) / k] {
                assert!(shift.abs() <= 6.0 + 1e-6, "seed {seed}: view centre {shift} view pixels off");
                widest = widest.max(shift.abs());
            }
            // The core mask is a disc around the cutout's centre (19.5, 19.5)
            // in the image, whatever the zoom.
            with(0.3).view(&img, &[0.0, 0.0], &mut Rng::new(seed), &mut masked).unwrap();
            let dist = |i: usize| {
                let p = at(i);
                (p.0 - 19.5).hypot(p.1 - 19.5)
            };
            let hidden = (0..c * c).filter(|&i| masked[i] == 0.0).map(dist).fold(0.0, f64::max);
            let kept = (0..c * c).filter(|&i| masked[i] != 0.0).map(dist).fold(f64::MAX, f64::min);
            assert!(hidden < kept, "seed {seed}: masked to {hidden} px from the centre, kept one at {kept}");
            assert!(hidden <= 0.3 * c as f64 * k + 1e-9);
        }
        assert!(smallest < 0.8 && largest > 1.25, "scales from {smallest} to {largest}");
        assert!(widest > 4.0, "views shifted by up to {widest} view pixels only");
        // Surface brightness is kept: a flat image stays flat, at its level.
        let flat = Cutout::from_chw(1, n, n, vec![2f32.asinh(); n * n]).unwrap();
        let mut one = vec![0f32; c * c];
        for seed in 0..20 {
            with(0.0).view(&flat, &[0.0], &mut Rng::new(seed), &mut one).unwrap();
            assert!(one.iter().all(|v| (v - 2f32.asinh()).abs() < 1e-5), "seed {seed}");
        }
        // A seed repeats its view.
        let mut again = vec![0f32; 2 * c * c];
        with(0.3).view(&img, &[0.0, 0.0], &mut Rng::new(9), &mut view).unwrap();
        with(0.3).view(&img, &[0.0, 0.0], &mut Rng::new(9), &mut again).unwrap();
        assert_eq!(view, again);
    }

    #[test]
    fn the_seeing_jitter_keeps_the_flux_and_spreads_a_point_source_symmetrically() {
        // One band, a point source of flux 50 (in units of 3σ_b) at the
        // centre of a 21-px image; views of 21 px with no crop window keep
        // it at the centre, only flipped and rotated.
        let point = |v: f32| {
            let mut px = vec![0f32; 21 * 21];
            px[10 * 21 + 10] = v;
            Cutout::from_chw(1, 21, 21, px).unwrap()
        };
        let img = point(50f32.asinh());
        let j = ViewJitter { rotations: true, margin: 0.0, blur: 2.0, ..ViewJitter::REFERENCE };
        let a = Augment::training(21, NoiseScale::None).with_jitter(j);
        let mut out = vec![0f32; 21 * 21];
        let mut spread = Vec::new();
        for seed in 0..50 {
            a.view(&img, &[0.0], &mut Rng::new(seed), &mut out).unwrap();
            let flux: Vec<f64> = out.iter().map(|v| (*v as f64).sinh()).collect();
            let total: f64 = flux.iter().sum();
            assert!((total - 50.0).abs() < 1e-3 * 50.0, "seed {seed}: flux {total}");
            for y in 0..21 {
                for x in 0..21 {
                    let f = flux[y * 21 + x];
                    for g in [flux[(20 - y) * 21 + x], flux[y * 21 + 20 - x], flux[x * 21 + y]] {
                        assert!((f - g).abs() <= 1e-4 * (1.0 + f.abs()), "seed {seed}: not symmetric at ({y},{x})");
                    }
                }
            }
            spread.push(flux[10 * 21 + 10]);
            // The same seed gives the same view.
            let mut again = vec![0f32; 21 * 21];
            a.view(&img, &[0.0], &mut Rng::new(seed), &mut again).unwrap();
            assert_eq!(out, again);
        }
        // σ is drawn per view: the peak varies, and is lowered by the blur.
        let (lo, hi) = spread.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo < 5.0 && hi > 10.0, "peaks from {lo} to {hi}");
        // A flat image stays flat, edges included.
        let flat = Cutout::from_chw(1, 21, 21, vec![2f32.asinh(); 21 * 21]).unwrap();
        a.view(&flat, &[0.0], &mut Rng::new(5), &mut out).unwrap();
        assert!(out.iter().all(|v| (v - 2f32.asinh()).abs() < 1e-5), "a flat image changed at the edges");
        // Off (the default), the point stays a point.
        let plain = Augment::training(21, NoiseScale::None).with_jitter(ViewJitter { blur: 0.0, ..j });
        plain.view(&img, &[0.0], &mut Rng::new(1), &mut out).unwrap();
        assert_eq!(out.iter().filter(|v| **v != 0.0).count(), 1);
    }

    fn ramp(s: usize) -> Cutout {
        Cutout::from_chw(2, s, s, (0..2 * s * s).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn reference_geometry_is_a_110_pixel_window_then_96() {
        let a = Augment::training(96, NoiseScale::None);
        assert_eq!(a.centre_window(128), (9, 110));
        // offsets 9..=23 in both axes, all reachable
        let img = ramp(128);
        let mut seen = std::collections::HashSet::new();
        let mut out = vec![0f32; 2 * 96 * 96];
        let mut rng = Rng::new(1);
        for _ in 0..4000 {
            a.view(&img, &[0.0, 0.0], &mut rng, &mut out).unwrap();
            // undo a possible flip: the window's minimum is its top-left pixel
            let min = out[..96 * 96].iter().cloned().fold(f32::MAX, f32::min) as usize;
            seen.insert((min / 128, min % 128));
        }
        assert_eq!(seen.iter().map(|p| p.0).min(), Some(9));
        assert_eq!(seen.iter().map(|p| p.0).max(), Some(23));
        assert_eq!(seen.len(), 15 * 15);
    }

    #[test]
    fn inference_view_is_the_exact_centre_crop() {
        let img = ramp(128);
        let mut out = vec![0f32; 2 * 96 * 96];
        Augment::inference(96).view(&img, &[], &mut Rng::new(0), &mut out).unwrap();
        // x[16:112, 16:112], as the keras-paper fixture's expected outputs
        assert_eq!(out[0], (16 * 128 + 16) as f32);
        assert_eq!(out[96 * 96 + 95 * 96 + 95], (128 * 128 + 111 * 128 + 111) as f32);
        let err =
            Augment::inference(96).view(&ramp(64), &[], &mut Rng::new(0), &mut vec![0f32; 2 * 96 * 96]).unwrap_err();
        assert_eq!(err, TooSmall { width: 64, height: 64, crop: 96 });
        let msg = err.to_string();
        assert!(msg.contains("64×64") && msg.contains("96×96"), "{msg}");
    }

    #[test]
    fn flips_are_fair_noise_has_the_stated_sigma_and_seeds_repeat() {
        let a = Augment::training(8, NoiseScale::Physical);
        let img = Cutout::zeros(1, 12, 12);
        let mut out = vec![0f32; 64];
        let mut rng = Rng::new(9);
        let sigma = a.batch_noise(&[0.01], &mut rng);
        assert!(sigma[0] >= 1.0 / 3.0 && sigma[0] <= 1.0, "{sigma:?}");
        let (mut s, mut s2, mut n) = (0.0, 0.0, 0.0);
        for _ in 0..500 {
            a.view(&img, &sigma, &mut rng, &mut out).unwrap();
            for &v in &out {
                s += v as f64;
                s2 += (v as f64).powi(2);
                n += 1.0;
            }
        }
        let sd = (s2 / n - (s / n).powi(2)).sqrt();
        assert!((sd / sigma[0] as f64 - 1.0).abs() < 0.02, "{sd} vs {}", sigma[0]);
        let r = Augment::training(8, NoiseScale::Reference).batch_noise(&[0.01, 0.02], &mut Rng::new(1));
        assert!(r[0] >= 0.01 && r[0] <= 0.03 && (r[1] / r[0] - 2.0).abs() < 1e-5);
        // flips: an asymmetric image shows each orientation about a quarter of the time
        let img = ramp(8);
        let plain = Augment::training(8, NoiseScale::None);
        let mut counts = std::collections::HashMap::new();
        let mut out = vec![0f32; 2 * 64];
        for _ in 0..4000 {
            plain.view(&img, &[0.0, 0.0], &mut rng, &mut out).unwrap();
            *counts.entry(out[0] as usize).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&c| (c as f64 - 1000.0).abs() < 120.0), "{counts:?}");
        // same seed, same view
        let (mut o1, mut o2) = (vec![0f32; 64], vec![0f32; 64]);
        let z = Cutout::from_chw(1, 12, 12, (0..144).map(|v| v as f32).collect()).unwrap();
        a.view(&z, &[0.5], &mut Rng::new(3), &mut o1).unwrap();
        a.view(&z, &[0.5], &mut Rng::new(3), &mut o2).unwrap();
        assert_eq!(o1, o2);
    }

    #[test]
    fn strong_jitter_gives_all_8_symmetries_evenly() {
        // A 2×2 image with four distinct values: each of the 8 square
        // symmetries puts a different ordered pair in the first row.
        let img = Cutout::from_chw(1, 2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let a = Augment::training(2, NoiseScale::None).with_jitter(ViewJitter {
            core_mask: 0.0,
            blur: 0.0,
            neighbours: 0.0,
            zoom: 0.0,
            rotations: true,
            margin: 0.0,
            flux: 0.0,
            colour: 0.0,
            sky: 0.0,
        });
        let mut counts = std::collections::HashMap::new();
        let mut out = vec![0f32; 4];
        let mut rng = Rng::new(21);
        for _ in 0..8000 {
            a.view(&img, &[0.0], &mut rng, &mut out).unwrap();
            // Symmetries keep neighbours adjacent: the view is one of the 8.
            assert_eq!(out.iter().sum::<f32>(), 10.0);
            *counts.entry((out[0] as u8, out[1] as u8)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 8, "{counts:?}");
        assert!(counts.values().all(|&c| (c as f64 - 1000.0).abs() < 130.0), "{counts:?}");
    }

    #[test]
    fn the_sky_jitter_adds_one_smooth_wave_in_flux_per_channel_and_view() {
        // A blank image (v = 0): each view's channel is asinh of the wave
        // alone, so sinh(view) is the added sky, in units of 3σ_b.
        let (c, a) = (24, 0.8);
        let img = Cutout::zeros(3, c, c);
        let j = ViewJitter { rotations: true, margin: 0.0, sky: a, ..ViewJitter::REFERENCE };
        let aug = Augment::training(c, NoiseScale::None).with_jitter(j);
        let mut rng = Rng::new(3);
        let (mut v1, mut v2) = (vec![0f32; 3 * c * c], vec![0f32; 3 * c * c]);
        aug.view(&img, &[0.0; 3], &mut rng, &mut v1).unwrap();
        aug.view(&img, &[0.0; 3], &mut rng, &mut v2).unwrap();
        let k_max = std::f64::consts::TAU / (2.0 * c as f64);
        for v in [&v1, &v2] {
            let s: Vec<f64> = v.iter().map(|v| (*v as f64).sinh()).collect();
            for ch in s.chunks(c * c) {
                let amp = ch.iter().fold(0f64, |m, x| m.max(x.abs()));
                assert!(amp > 1e-3 && amp <= a + 1e-5, "amplitude {amp} within (0, {a}]");
                // A plane wave of wavelength ≥ 2 views: second differences
                // along a row are at most amp·k² (float rounding aside).
                for row in ch.chunks(c) {
                    for w in row.windows(3) {
                        assert!((w[0] - 2.0 * w[1] + w[2]).abs() <= amp * k_max * k_max + 1e-5);
                    }
                }
            }
        }
        // Each channel and each view its own pattern.
        assert_ne!(v1[..c * c], v1[c * c..2 * c * c]);
        assert_ne!(v1, v2);
        // Added in flux: on a pixel of flux x the view holds asinh(x + S).
        let bright = Cutout::from_chw(1, c, c, vec![5f32.asinh(); c * c]).unwrap();
        let one = Augment::training(c, NoiseScale::None).with_jitter(ViewJitter { sky: a, ..ViewJitter::REFERENCE });
        let (mut w, mut blank) = (vec![0f32; c * c], vec![0f32; c * c]);
        one.view(&bright, &[0.0], &mut Rng::new(9), &mut w).unwrap();
        one.view(&Cutout::zeros(1, c, c), &[0.0], &mut Rng::new(9), &mut blank).unwrap();
        for (v, b) in w.iter().zip(&blank) {
            let (got, want) = ((*v as f64).sinh(), 5.0 + (*b as f64).sinh());
            assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
        }
        // Off, the view is the plain one.
        let off = Augment::training(c, NoiseScale::None);
        let mut p = vec![1f32; c * c];
        off.view(&Cutout::zeros(1, c, c), &[0.0], &mut Rng::new(9), &mut p).unwrap();
        assert!(p.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn flux_and_colour_jitter_scale_the_flux_exactly_within_their_range() {
        // Normalised pixels v = asinh(x/3σ): the jitter must multiply x by
        // one factor per band, k·c_b, with ln k ∈ ±ln 1.5 and ln c_b ∈ ±ln 1.15.
        let x: Vec<f32> = (0..2 * 36).map(|i| (i as f32 - 20.0) * 0.7).collect();
        let img = Cutout::from_chw(2, 6, 6, x.iter().map(|v| v.asinh()).collect()).unwrap();
        let j = ViewJitter {
            rotations: false,
            margin: 0.0,
            flux: 0.5,
            colour: 0.15,
            core_mask: 0.0,
            blur: 0.0,
            neighbours: 0.0,
            zoom: 0.0,
            sky: 0.0,
        };
        let a = Augment::training(6, NoiseScale::None).with_jitter(j);
        let mut out = vec![0f32; 72];
        let mut rng = Rng::new(2);
        let mut log_ratios = Vec::new();
        for _ in 0..2000 {
            a.view(&img, &[0.0, 0.0], &mut rng, &mut out).unwrap();
            for b in 0..2 {
                // No crop margin and no rotation: only flips move pixels;
                // compare sorted magnitudes per band.
                let mut got: Vec<f64> = out[b * 36..(b + 1) * 36].iter().map(|v| (*v as f64).sinh()).collect();
                let mut want: Vec<f64> = x[b * 36..(b + 1) * 36].iter().map(|&v| v as f64).collect();
                got.sort_by(f64::total_cmp);
                want.sort_by(f64::total_cmp);
                let k = got[35] / want[35];
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - k * w).abs() < 1e-3 * (1.0 + w.abs() * k), "not one factor per band: {g} vs {k}·{w}");
                }
                log_ratios.push(k.ln());
            }
        }
        let bound = 1.5f64.ln() + 1.15f64.ln() + 1e-4;
        assert!(log_ratios.iter().all(|l| l.abs() <= bound));
        let mean = log_ratios.iter().sum::<f64>() / log_ratios.len() as f64;
        assert!(mean.abs() < 0.02, "the jitter is unbiased in log flux: {mean}");
        assert!(log_ratios.iter().any(|l| l.abs() > 0.35), "the range is used");
        // Seeded: the same stream gives the same view.
        let (mut o1, mut o2) = (vec![0f32; 72], vec![0f32; 72]);
        a.view(&img, &[0.1, 0.1], &mut Rng::new(5), &mut o1).unwrap();
        a.view(&img, &[0.1, 0.1], &mut Rng::new(5), &mut o2).unwrap();
        assert_eq!(o1, o2);
    }

    #[test]
    fn the_reference_jitter_draws_the_same_random_stream_as_before() {
        // Reproducing old runs bit for bit: with ViewJitter::REFERENCE the
        // view consumes exactly offsets, two flips and the noise.
        let img = ramp(12);
        let a = Augment::training(8, NoiseScale::Reference);
        let mut r1 = Rng::new(77);
        let mut out = vec![0f32; 2 * 64];
        a.view(&img, &[0.1, 0.1], &mut r1, &mut out).unwrap();
        let mut r2 = Rng::new(77);
        let (_, n) = a.centre_window(12);
        let _ = (r2.below((n - 8 + 1) as u64), r2.below((n - 8 + 1) as u64), r2.bernoulli(0.5), r2.bernoulli(0.5));
        for _ in 0..2 * 64 {
            r2.normal();
        }
        assert_eq!(r1.next_u64(), r2.next_u64());
    }
}
