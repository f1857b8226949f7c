//! Crowding: a copy of a cutout with the compact sources of other cutouts
//! pasted in, as if the galaxy lay in a denser field.
//!
//! Why: an encoder pretrained on mocks with three times the background
//! galaxies and stars was better at few labels on *uncrowded* validation
//! mocks too (README, "Crowded fields and larger hosts"). A survey cannot
//! re-simulate its fields, but it can make them denser from its own
//! cutouts: [`Stamp::find`] cuts the compact sources out of one cutout and
//! [`paste`] adds them to another, in raw flux, before any preprocessing
//! (so residuals, binning and normalisation see a crowded field made of
//! real sources with their real colours, noise and PSF).
//!
//! **Finding sources** (in each cutout's own units, so any survey's): each
//! band's sky σ is the sigma-clipped MAD of the cutout's outer frame (as
//! the normaliser's sky rule); the detection map is Σ_b x_b/σ_b/√B,
//! summed over 3×3 pixels and scaled to unit noise, less the median at
//! each distance from the centre (so that a source on the host's halo
//! stands out of it). A source is an 8-connected group ≥ [`DETECT`]`.0`
//! peaking at ≥ [`DETECT`]`.1`, of at most 1/16 of the cutout, with no
//! pixel within [`CLEAR`] of the side from the centre, nor where the
//! median itself is above the peak threshold (that is the target). Its
//! stamp is the group grown by one pixel, all bands, raw values. A source
//! at or above the peak threshold on the cutout's edge (cut by it), or
//! touching a pixel that is not finite in some band, is skipped.
//!
//! The cutouts are taken to be sky-subtracted: a stamp carries the raw
//! values under its footprint, so a source found on a host's halo brings
//! that halo's light with it (below the detection threshold, a faint
//! plateau), and a cutout whose sky sits ≳ 2σ above zero yields no
//! sources at all (every ring's median is above the threshold).
//!
//! **Pasting**: each stamp in one of the 8 square symmetries, at a uniform
//! position inside the cutout that keeps it clear of the centre by
//! [`CLEAR`] of the side (up to [`TRIES`] draws, else left out). Values
//! add; NaN pixels of the target stay NaN. A pasted stamp carries its own
//! noise, so inside it the noise is √2 of the sky's — as where two real
//! exposures' sources overlap, and small.

use tidalscope_core::stats::sky_sigma;
use tidalscope_core::{Cutout, Rng};

use crate::augment::{around, compact_sources, subtract_ring_median};

/// Detection thresholds (footprint, peak) on the smoothed S/N map: at 2σ
/// the footprint reaches into a source's wings; a 5σ peak of the 3×3 mean
/// is a chance of 3·10⁻⁷ per pixel in pure noise.
pub const DETECT: (f32, f32) = (2.0, 5.0);

/// Radius, as a fraction of the cutout's side, around the centre that no
/// found source touches and no pasted one reaches: the target's own light.
pub const CLEAR: f64 = 1.0 / 16.0;

/// Positions drawn for a stamp before it is left out.
pub const TRIES: usize = 8;

/// A source cut out of a cutout: its footprint and every band's raw
/// values in a bounding box.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    /// Bands.
    bands: usize,
    /// Box height.
    height: usize,
    /// Box width.
    width: usize,
    /// Which box pixels belong to the source (`height`×`width`).
    mask: Vec<bool>,
    /// Raw values, `[bands, height, width]`, 0 outside the mask.
    flux: Vec<f32>,
}

impl Stamp {
    /// The compact sources of `img` other than its central target (see the
    /// module docs). Bands whose frame has no finite spread are left out
    /// of the detection; with none left, there are no sources.
    pub fn find(img: &Cutout) -> Vec<Stamp> {
        let (bands, h, w) = (img.bands(), img.height(), img.width());
        let mut border = Vec::new();
        let sigma: Vec<Option<f32>> = (0..bands).map(|b| sky_sigma(img.band(b), w, h, &mut border)).collect();
        let used = sigma.iter().flatten().count();
        if used == 0 || h < 3 || w < 3 {
            return Vec::new();
        }
        // S/N per pixel, summed over bands; NaN marks a pixel not finite
        // in some band, which never joins a source.
        let mut snr = vec![0f32; h * w];
        for (b, s) in sigma.iter().enumerate() {
            if let Some(s) = s {
                let k = 1.0 / (s * (used as f32).sqrt());
                snr.iter_mut().zip(img.band(b)).for_each(|(o, v)| *o += v * k);
            }
        }
        // The sum over the 3×3 box (cut by the edges) of k unit-noise
        // pixels has σ √k: dividing by it keeps the map in σ. A box with a
        // pixel not finite is NaN.
        let mut level = vec![f32::NAN; h * w];
        for y in 0..h {
            for x in 0..w {
                let (mut acc, mut k) = (0f32, 0f32);
                for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for v in &snr[yy * w + x.saturating_sub(1)..=yy * w + (x + 1).min(w - 1)] {
                        acc += v;
                        k += 1.0;
                    }
                }
                level[y * w + x] = acc / k.sqrt();
            }
        }
        let centre = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        let floor = subtract_ring_median(&mut level, h, w, centre);
        // Out to the last ring where the target's own light is above the
        // peak threshold, the steep profile varies across a ring by more
        // than the threshold: no source is looked for there.
        let bright = floor.iter().rposition(|f| *f >= DETECT.1).map_or(0.0, |r| r as f64 + 1.0);
        let clear = (CLEAR * h.min(w) as f64).max(bright);
        let groups = compact_sources(&level, (h, w), (centre, clear), DETECT.0, DETECT.1, h * w / 16);
        let mut grown = vec![false; h * w];
        groups
            .into_iter()
            // A source next to missing data, or bright (≥ the peak
            // threshold) on the cutout's edge, is not whole: pasted, it
            // would show a straight edge. Faint wings reach the edge through
            // the noise, unseen.
            .filter(|group| {
                let edge = |i: usize| i < w || i >= (h - 1) * w || i.is_multiple_of(w) || i % w == w - 1;
                !group.iter().any(|&i| edge(i) && level[i] >= DETECT.1)
                    && !group.iter().flat_map(|&i| around(i, h, w)).any(|i| level[i].is_nan())
            })
            .filter_map(|group| {
                // Each pixel once per stamp; two sources' rims may overlap.
                let pixels: Vec<usize> = group
                    .iter()
                    .flat_map(|&i| around(i, h, w))
                    .filter(|&i| !std::mem::replace(&mut grown[i], true))
                    .collect();
                pixels.iter().for_each(|&i| grown[i] = false);
                Self::cut(img, &pixels)
            })
            .collect()
    }

    /// The stamp of `pixels` (indices into `img`'s bands), or `None` if one
    /// of them is not finite in some band.
    fn cut(img: &Cutout, pixels: &[usize]) -> Option<Stamp> {
        let w = img.width();
        let (y0, y1) = pixels.iter().map(|i| i / w).fold((usize::MAX, 0), |(a, b), y| (a.min(y), b.max(y)));
        let (x0, x1) = pixels.iter().map(|i| i % w).fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
        let (sh, sw) = (y1 - y0 + 1, x1 - x0 + 1);
        let mut stamp = Stamp {
            bands: img.bands(),
            height: sh,
            width: sw,
            mask: vec![false; sh * sw],
            flux: vec![0.0; img.bands() * sh * sw],
        };
        for &i in pixels {
            let j = (i / w - y0) * sw + (i % w - x0);
            stamp.mask[j] = true;
            for b in 0..img.bands() {
                let v = img.band(b)[i];
                if !v.is_finite() {
                    return None;
                }
                stamp.flux[b * sh * sw + j] = v;
            }
        }
        Some(stamp)
    }
}

/// Cutouts whose sources a [`Crowd`] pastes into the others: enough for
/// thousands of distinct sources, few enough to hold in memory.
pub const POOL: usize = 512;

/// Checks a crowding factor (donor cutouts per cutout, on average) given
/// by a user: finite and in [0, 100].
///
/// # Errors
/// What is wrong, for the caller to prefix with the option's name and to
/// follow with the value.
pub fn check_factor(factor: f64) -> Result<(), &'static str> {
    if factor.is_finite() && (0.0..=100.0).contains(&factor) {
        Ok(())
    } else {
        Err("must lie in [0, 100] (other images per image)")
    }
}

/// The sources of a pool of cutouts, and how many cutouts' worth to paste
/// into each cutout.
#[derive(Debug, Clone)]
pub struct Crowd {
    /// Each pool cutout's sources, in the order the cutouts came.
    pub pool: Vec<Vec<Stamp>>,
    /// Donor cutouts per cutout, on average (a fractional part is a chance
    /// of one more; drawn with replacement). Not finite or below 0: none.
    pub factor: f64,
    /// Seed of the draws (`convert` and `pretrain` use the run's seed
    /// XORed with `tidalscope_core::streams::CROWD`).
    pub seed: u64,
}

impl Crowd {
    /// A crowd from the sources of the cutouts `pool`.
    pub fn new<'a>(pool: impl IntoIterator<Item = &'a Cutout>, factor: f64, seed: u64) -> Self {
        Self { pool: pool.into_iter().map(Stamp::find).collect(), factor, seed }
    }

    /// A crowd from the sources of the images `refs` of `sources`, in
    /// `refs`' order, each source read once from its start up to the last
    /// image wanted; `progress` is called after each image is searched.
    ///
    /// # Errors
    /// Reading a source or loading an image.
    pub fn read(
        sources: &[&dyn tidalscope_io::source::Source],
        refs: &[crate::split::ObjectRef],
        factor: f64,
        seed: u64,
        progress: &mut dyn FnMut(),
    ) -> tidalscope_io::Result<Self> {
        let order: std::collections::HashMap<(usize, usize), usize> =
            refs.iter().enumerate().map(|(k, r)| ((r.source, r.index), k)).collect();
        let mut pool = vec![Vec::new(); refs.len()];
        for (s, src) in sources.iter().enumerate() {
            let Some(last) = refs.iter().filter(|r| r.source == s).map(|r| r.index).max() else { continue };
            for rec in src.records(0)?.take(last + 1) {
                let rec = rec?;
                if let Some(&k) = order.get(&(s, rec.index)) {
                    pool[k] = Stamp::find(&rec.pixels.load()?);
                    progress();
                }
            }
        }
        Ok(Self { pool, factor, seed })
    }

    /// Sources in the pool.
    pub fn sources(&self) -> usize {
        self.pool.iter().map(Vec::len).sum()
    }

    /// Pastes into `img` the sources of [`Crowd::factor`] donors on average
    /// (with replacement), never those of pool cutout `own` (the image
    /// itself, when it is one of them). `key` picks the random stream: the same key, the same
    /// donors, places and orientations. Returns how many were pasted.
    pub fn apply(&self, img: &mut Cutout, own: Option<usize>, key: u64) -> Result<usize, BandsDiffer> {
        let own = own.filter(|&i| i < self.pool.len());
        let others = self.pool.len() - usize::from(own.is_some());
        if others == 0 {
            return Ok(0);
        }
        let mut rng = Rng::for_stream(self.seed, key);
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Ok(0);
        }
        let donors = self.factor.floor() as usize + usize::from(rng.bernoulli(self.factor.fract()));
        let mut pasted = 0;
        for _ in 0..donors {
            let mut d = rng.below(others as u64) as usize;
            if own.is_some_and(|o| d >= o) {
                d += 1;
            }
            pasted += paste(img, &self.pool[d], &mut rng)?;
        }
        Ok(pasted)
    }
}

/// A stamp and a cutout of different bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a source with {stamp} bands cannot be pasted into a cutout with {cutout}")]
pub struct BandsDiffer {
    /// The stamp's bands.
    pub stamp: usize,
    /// The cutout's bands.
    pub cutout: usize,
}

/// Adds each of `stamps` to `img` (see the module docs); returns how many
/// were pasted (a stamp too large for the cutout, or that found no place
/// clear of the centre in [`TRIES`] draws, is left out).
pub fn paste<'a>(
    img: &mut Cutout,
    stamps: impl IntoIterator<Item = &'a Stamp>,
    rng: &mut Rng,
) -> Result<usize, BandsDiffer> {
    let (h, w) = (img.height(), img.width());
    let centre = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let clear = CLEAR * h.min(w) as f64;
    let mut pasted = 0;
    for s in stamps {
        if s.bands != img.bands() {
            return Err(BandsDiffer { stamp: s.bands, cutout: img.bands() });
        }
        let (flip_y, flip_x, transpose) = (rng.bernoulli(0.5), rng.bernoulli(0.5), rng.bernoulli(0.5));
        let (ph, pw) = if transpose { (s.width, s.height) } else { (s.height, s.width) };
        if ph > h || pw > w {
            continue;
        }
        // Stamp pixel (y, x) lands at box pixel `at(y, x)` of the pasted box.
        let at = |y: usize, x: usize| {
            let y = if flip_y { s.height - 1 - y } else { y };
            let x = if flip_x { s.width - 1 - x } else { x };
            if transpose {
                (x, y)
            } else {
                (y, x)
            }
        };
        let place = (0..TRIES).find_map(|_| {
            let (oy, ox) = (rng.below((h - ph + 1) as u64) as usize, rng.below((w - pw + 1) as u64) as usize);
            let clear_of_centre = (0..s.height * s.width).filter(|&j| s.mask[j]).all(|j| {
                let (py, px) = at(j / s.width, j % s.width);
                ((oy + py) as f64 - centre.0).hypot((ox + px) as f64 - centre.1) > clear
            });
            clear_of_centre.then_some((oy, ox))
        });
        let Some((oy, ox)) = place else { continue };
        for b in 0..s.bands {
            let src = &s.flux[b * s.height * s.width..(b + 1) * s.height * s.width];
            let dst = img.band_mut(b);
            for j in (0..s.height * s.width).filter(|&j| s.mask[j]) {
                let (py, px) = at(j / s.width, j % s.width);
                dst[(oy + py) * w + ox + px] += src[j];
            }
        }
        pasted += 1;
    }
    Ok(pasted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `bands`×`n`×`n` cutout of unit Gaussian noise with Gaussian
    /// blobs of (amplitude, σ) at (y, x).
    fn field(n: usize, bands: usize, blobs: &[(f64, f64, f32, f64)], seed: u64) -> Cutout {
        let mut rng = Rng::new(seed);
        let mut img = Cutout::zeros(bands, n, n);
        for b in 0..bands {
            let band = img.band_mut(b);
            for (i, v) in band.iter_mut().enumerate() {
                let (y, x) = ((i / n) as f64, (i % n) as f64);
                *v = rng.normal() as f32
                    + blobs
                        .iter()
                        .map(|&(by, bx, a, s)| {
                            a * (-((y - by).powi(2) + (x - bx).powi(2)) / (2.0 * s * s)).exp() as f32
                        })
                        .sum::<f32>();
            }
        }
        img
    }

    /// Reading a pool from several sources, wanted in any order, gives the
    /// sources of exactly those images in that order, each read once.
    #[test]
    fn a_pool_read_from_sources_holds_the_wanted_images_in_the_order_asked() {
        use crate::split::ObjectRef;
        use tidalscope_io::source::{open, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<Vec<Cutout>> = (0..2)
            .map(|s| {
                (0..4)
                    .map(|i| {
                        let at = 8.0 + 6.0 * i as f64;
                        field(48, 2, &[(at, 40.0 - at, 30.0, 1.5), (40.0, at, 20.0 + 10.0 * s as f32, 1.2)], 10 * s + i)
                    })
                    .collect()
            })
            .collect();
        let sources: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(s, imgs)| {
                let path = dir.path().join(format!("s{s}.npy"));
                let mut w = tidalscope_io::npy::NpyWriter::create(&path, &[imgs.len(), 48, 48, 2]).unwrap();
                let mut hwc = vec![0f32; 48 * 48 * 2];
                for img in imgs {
                    img.write_hwc(&mut hwc);
                    w.write(&hwc).unwrap();
                }
                w.finish().unwrap();
                open(&path, &OpenOptions::default()).unwrap()
            })
            .collect();
        let sources: Vec<&dyn tidalscope_io::source::Source> = sources.iter().map(|s| s.as_ref()).collect();
        let want = [(1, 2), (0, 3), (0, 0), (1, 0)];
        let refs: Vec<ObjectRef> = want.iter().map(|&(source, index)| ObjectRef { source, index, label: 0 }).collect();
        let mut calls = 0;
        let crowd = Crowd::read(&sources, &refs, 2.0, 7, &mut || calls += 1).unwrap();
        let expect = Crowd::new(want.iter().map(|&(s, i)| &images[s][i]), 2.0, 7);
        assert_eq!(crowd.pool, expect.pool);
        assert!(crowd.sources() >= 4, "{}", crowd.sources());
        assert_eq!(calls, want.len(), "one call per image searched");
    }

    #[test]
    fn finds_the_neighbours_and_not_the_target_or_the_noise() {
        let c = 31.5;
        let img = field(64, 3, &[(c, c, 400.0, 6.0), (10.0, 12.0, 30.0, 1.5), (54.0, 50.0, 20.0, 1.2)], 1);
        let stamps = Stamp::find(&img);
        assert_eq!(stamps.len(), 2, "two neighbours, no target, no noise peak: {stamps:?}");
        for s in &stamps {
            // Most of a blob's flux (the fainter's: 20·2π·1.2² ≈ 181) lies
            // in its stamp.
            let inside: f32 = s.flux[..s.height * s.width].iter().sum();
            assert!(inside > 0.6 * 181.0, "{inside}");
            assert!(s.mask.iter().filter(|m| **m).count() < 64 * 64 / 16);
        }
        assert!(Stamp::find(&field(64, 3, &[], 2)).is_empty(), "pure noise has no sources");
        let cut = field(64, 3, &[(c, c, 400.0, 6.0), (0.0, 12.0, 30.0, 1.5)], 1);
        assert!(Stamp::find(&cut).is_empty(), "a source cut by the edge is not whole");
    }

    #[test]
    fn a_crowd_never_pastes_an_images_own_sources() {
        let (a, b) = (field(48, 2, &[(8.0, 9.0, 40.0, 1.5)], 6), field(48, 2, &[(40.0, 38.0, 25.0, 1.3)], 7));
        let crowd = Crowd::new([&a, &b], 3.0, 1);
        assert_eq!(crowd.pool.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
        let other: f32 = crowd.pool[1][0].flux.iter().sum();
        let target = field(48, 2, &[], 8);
        for key in 0..4 {
            let mut img = target.clone();
            // Pool image 0 gets only image 1's source, three times.
            assert_eq!(crowd.apply(&mut img, Some(0), key).unwrap(), 3);
            let added: f32 = img.data().iter().zip(target.data()).map(|(x, y)| x - y).sum();
            assert!((added - 3.0 * other).abs() < 1e-3 * other.abs(), "{added} vs 3 × {other}");
        }
        let lone = Crowd { pool: vec![crowd.pool[0].clone()], ..crowd.clone() };
        assert_eq!(lone.apply(&mut target.clone(), Some(0), 0).unwrap(), 0, "no other image: nothing pasted");
        let off = Crowd { factor: f64::NAN, ..crowd };
        assert_eq!(off.apply(&mut target.clone(), None, 0).unwrap(), 0);
    }

    #[test]
    fn a_source_with_a_nan_pixel_is_skipped() {
        let mut img = field(64, 2, &[(10.0, 12.0, 30.0, 1.5)], 3);
        assert_eq!(Stamp::find(&img).len(), 1);
        img.band_mut(1)[10 * 64 + 12] = f32::NAN;
        assert!(Stamp::find(&img).is_empty());
    }

    #[test]
    fn pasting_adds_each_stamps_flux_once_away_from_the_centre_and_repeats_for_a_seed() {
        let donor = field(48, 2, &[(8.0, 9.0, 40.0, 1.5), (40.0, 38.0, 25.0, 1.3), (24.0, 6.0, 30.0, 1.0)], 4);
        let stamps = Stamp::find(&donor);
        assert_eq!(stamps.len(), 3);
        let target = field(48, 2, &[(23.5, 23.5, 300.0, 5.0)], 5);
        let mut a = target.clone();
        let n = paste(&mut a, &stamps, &mut Rng::new(9)).unwrap();
        assert_eq!(n, 3);
        for b in 0..2 {
            let added: f64 = a.band(b).iter().zip(target.band(b)).map(|(x, y)| (x - y) as f64).sum();
            let want: f64 = stamps
                .iter()
                .map(|s| s.flux[b * s.height * s.width..(b + 1) * s.height * s.width].iter().sum::<f32>() as f64)
                .sum();
            assert!((added - want).abs() < 1e-3 * want.abs().max(1.0), "band {b}: {added} vs {want}");
        }
        // Nothing lands within the clear radius of the centre.
        let clear = CLEAR * 48.0;
        for (i, (x, y)) in a.band(0).iter().zip(target.band(0)).enumerate() {
            if ((i / 48) as f64 - 23.5).hypot((i % 48) as f64 - 23.5) <= clear {
                assert_eq!(x, y, "pixel {i} near the centre changed");
            }
        }
        let mut again = target.clone();
        paste(&mut again, &stamps, &mut Rng::new(9)).unwrap();
        assert_eq!(a, again, "same seed, same pixels");
        let mut other = target.clone();
        paste(&mut other, &stamps, &mut Rng::new(10)).unwrap();
        assert_ne!(a, other);
        let mut wrong = Cutout::zeros(3, 48, 48);
        assert_eq!(paste(&mut wrong, &stamps, &mut Rng::new(9)), Err(BandsDiffer { stamp: 2, cutout: 3 }));
    }
}
