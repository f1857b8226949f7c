//! Pictures of one cutout for people to judge: the Lupton colour composite,
//! one band, and a binned and smoothed view that brings out faint
//! structure. Non-finite pixels show black and are left out of every sum
//! and noise estimate.

use serde::Deserialize;
use tidalscope_core::Cutout;
use tidalscope_eval::rgb::{lupton_rgb, rgb_noise, rgb_planes, sky_noise};

/// Which picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Lupton et al. (2004) asinh colours from bands (i, r, g).
    #[default]
    Rgb,
    /// One band in grey.
    Band,
    /// The mean of the colour bands, binned 2×2 and smoothed with a 3×3
    /// box: each output pixel averages 36 input pixels, so the noise falls
    /// ≈ 6× and surface brightness ≈ 2 mag fainter shows.
    Faint,
}

/// How to draw it (the page's controls).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Look {
    /// The picture.
    pub view: View,
    /// Band index for [`View::Band`].
    pub band: usize,
    /// Lupton's softening Q.
    pub q: f64,
    /// Linear range in units of the image's sky noise (σ, the sigma-clipped
    /// MAD of its outer frame; see `tidalscope_eval::rgb`): a larger
    /// stretch shows brighter structure unsaturated.
    pub stretch: f64,
}

impl Default for Look {
    fn default() -> Self {
        Self { view: View::Rgb, band: 2, q: 8.0, stretch: 10.0 }
    }
}

/// Renders `img` as RGB8 (top row first): `(width, height, pixels)`.
pub fn render(img: &Cutout, look: &Look) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    anyhow::ensure!(look.q.is_finite() && look.q > 0.0, "q must be positive, not {}", look.q);
    anyhow::ensure!(look.stretch.is_finite() && look.stretch > 0.0, "stretch must be positive, not {}", look.stretch);
    let (w, h) = (img.width(), img.height());
    Ok(match look.view {
        View::Rgb => {
            let [r, g, b] = rgb_planes(img);
            let stretch = look.stretch * nonzero(rgb_noise(img));
            (w, h, lupton_rgb(r, g, b, w, h, stretch, look.q))
        }
        View::Band => {
            anyhow::ensure!(look.band < img.bands(), "band {} of a {}-band image", look.band, img.bands());
            let p = img.band(look.band);
            let stretch = look.stretch * nonzero(sky_noise(p, w, h));
            (w, h, lupton_rgb(p, p, p, w, h, stretch, look.q))
        }
        View::Faint => {
            let (p, bw, bh) = faint(img);
            // The smoothed noise is small against the sky: stretch a third as far.
            let stretch = look.stretch / 3.0 * nonzero(sky_noise(&p, bw, bh));
            (bw, bh, lupton_rgb(&p, &p, &p, bw, bh, stretch, look.q))
        }
    })
}

fn nonzero(sigma: f64) -> f64 {
    if sigma > 0.0 && sigma.is_finite() {
        sigma
    } else {
        1.0
    }
}

/// The mean of the colour planes, binned 2×2 and box-smoothed 3×3 (means
/// of the finite pixels; NaN where none is).
fn faint(img: &Cutout) -> (Vec<f32>, usize, usize) {
    let (w, h) = (img.width(), img.height());
    let planes = rgb_planes(img);
    let (bw, bh) = ((w / 2).max(1), (h / 2).max(1));
    let mut sum = vec![0f32; bw * bh];
    let mut cnt = vec![0u32; bw * bh];
    for y in 0..h.min(bh * 2) {
        for x in 0..w.min(bw * 2) {
            let o = (y / 2) * bw + x / 2;
            for p in &planes {
                let v = p[y * w + x];
                if v.is_finite() {
                    sum[o] += v;
                    cnt[o] += 1;
                }
            }
        }
    }
    let mut out = vec![f32::NAN; bw * bh];
    for y in 0..bh {
        for x in 0..bw {
            let (mut s, mut c) = (0f32, 0u32);
            for yy in y.saturating_sub(1)..(y + 2).min(bh) {
                for xx in x.saturating_sub(1)..(x + 2).min(bw) {
                    s += sum[yy * bw + xx];
                    c += cnt[yy * bw + xx];
                }
            }
            if c > 0 {
                out[y * bw + x] = s / c as f32;
            }
        }
    }
    (out, bw, bh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faint_view_averages_and_ignores_nan() {
        let mut img = Cutout::zeros(1, 4, 4);
        img.band_mut(0).fill(2.0);
        img.band_mut(0)[0] = f32::NAN;
        let (p, w, h) = faint(&img);
        assert_eq!((w, h), (2, 2));
        assert!(p.iter().all(|&v| (v - 2.0).abs() < 1e-6), "{p:?}");
        let (w, h, rgb) = render(&img, &Look { view: View::Faint, ..Look::default() }).unwrap();
        assert_eq!(rgb.len(), w * h * 3);
        assert!(render(&img, &Look { view: View::Band, band: 3, ..Look::default() }).is_err());
        assert!(render(&img, &Look { q: 0.0, ..Look::default() }).is_err());
    }
}
