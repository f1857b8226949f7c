//! Noise of a deep coadd: Gaussian sky noise, correlated between neighbouring
//! pixels as resampling makes it, plus faint large-scale sky-subtraction
//! residuals. Each is a value applied with an explicit [`Rng`].

use tidalscope_core::Rng;

/// Gaussian noise of per-pixel standard deviation `sigma`, correlated by a
/// separable `[a, 1, a]` kernel and renormalised so the per-pixel RMS is
/// still `sigma` (the depth formula's number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoaddNoise {
    /// Per-pixel σ (flux units).
    pub sigma: f64,
    /// Neighbour weight `a` of the kernel.
    pub correlation: f64,
}

impl CoaddNoise {
    /// Adds noise to a `w × h` row-major image. `scratch` is reused between
    /// calls to avoid allocation.
    pub fn add(&self, image: &mut [f32], w: usize, h: usize, rng: &mut Rng, scratch: &mut Vec<f32>) {
        let a = self.correlation as f32;
        let (pw, ph) = (w + 2, h + 2);
        scratch.clear();
        scratch.resize(pw * ph + w * ph, 0.0);
        let (white, horiz) = scratch.split_at_mut(pw * ph);
        for v in white.iter_mut() {
            *v = rng.normal() as f32;
        }
        // Horizontal pass: [ph rows] × [w cols].
        for y in 0..ph {
            let src = &white[y * pw..(y + 1) * pw];
            let dst = &mut horiz[y * w..(y + 1) * w];
            for x in 0..w {
                dst[x] = a * src[x] + src[x + 1] + a * src[x + 2];
            }
        }
        // Vertical pass, scaled: the kernel multiplies the variance by (1+2a²)².
        let scale = (self.sigma / (1.0 + 2.0 * self.correlation * self.correlation)) as f32;
        for y in 0..h {
            let (r0, r1, r2) =
                (&horiz[y * w..(y + 1) * w], &horiz[(y + 1) * w..(y + 2) * w], &horiz[(y + 2) * w..(y + 3) * w]);
            let out = &mut image[y * w..(y + 1) * w];
            for x in 0..w {
                out[x] += scale * (a * r0[x] + r1[x] + a * r2[x]);
            }
        }
    }
}

/// Residuals of sky subtraction: a few long-wavelength plane waves whose
/// summed RMS is `amplitude` (flux units) — gentle gradients and bumps across
/// a cutout, at a fraction of the pixel noise.
#[derive(Debug, Clone, PartialEq)]
pub struct SkyResidual {
    waves: Vec<[f64; 4]>, // kx, ky (radians per pixel), phase, amplitude
}

impl SkyResidual {
    /// Draws residual waves with wavelengths between `min_wavelength` and
    /// `max_wavelength` pixels and total RMS `amplitude`.
    pub fn random(rng: &mut Rng, amplitude: f64, min_wavelength: f64, max_wavelength: f64) -> Self {
        let n = 3;
        // Each cosine has RMS amp/√2; n of them with amp a have RMS a √(n/2).
        let a = amplitude / (n as f64 / 2.0).sqrt();
        let waves = (0..n)
            .map(|_| {
                let lambda = rng.range(min_wavelength, max_wavelength);
                let theta = rng.range(0.0, std::f64::consts::TAU);
                let k = std::f64::consts::TAU / lambda;
                [k * theta.cos(), k * theta.sin(), rng.range(0.0, std::f64::consts::TAU), a]
            })
            .collect();
        Self { waves }
    }

    /// Adds the residual to a `w × h` image. Each wave is separable
    /// (cos(a+b) = cos a cos b − sin a sin b), so this costs two multiplies per
    /// pixel and wave.
    pub fn add(&self, image: &mut [f32], w: usize, h: usize) {
        let mut cx = vec![0f32; w];
        let mut sx = vec![0f32; w];
        for &[kx, ky, phase, amp] in &self.waves {
            for (x, (c, s)) in cx.iter_mut().zip(sx.iter_mut()).enumerate() {
                let (sn, cs) = (kx * x as f64 + phase).sin_cos();
                *c = (amp * cs) as f32;
                *s = (amp * sn) as f32;
            }
            for y in 0..h {
                let (sy, cy) = (ky * y as f64).sin_cos();
                let (sy, cy) = (sy as f32, cy as f32);
                for (x, v) in image[y * w..(y + 1) * w].iter_mut().enumerate() {
                    *v += cx[x] * cy - sx[x] * sy;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation_at(img: &[f32], w: usize, h: usize, dx: usize) -> f64 {
        let (mut s, mut s0) = (0.0, 0.0);
        for y in 0..h {
            for x in 0..w - dx {
                s += img[y * w + x] as f64 * img[y * w + x + dx] as f64;
                s0 += (img[y * w + x] as f64).powi(2);
            }
        }
        s / s0
    }

    #[test]
    fn noise_has_requested_rms_and_neighbour_correlation() {
        let (w, h) = (256, 256);
        let mut img = vec![0f32; w * h];
        let noise = CoaddNoise { sigma: 0.01, correlation: 0.2 };
        noise.add(&mut img, w, h, &mut Rng::new(5), &mut Vec::new());
        let rms = (img.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / (w * h) as f64).sqrt();
        assert!((rms / 0.01 - 1.0).abs() < 0.02, "rms {rms}");
        let c1 = correlation_at(&img, w, h, 1);
        let want = 2.0 * 0.2 / (1.0 + 2.0 * 0.04);
        assert!((c1 - want).abs() < 0.02, "adjacent correlation {c1}, want {want}");
        assert!(correlation_at(&img, w, h, 3).abs() < 0.02);
    }

    #[test]
    fn sky_residual_has_requested_rms_and_is_smooth() {
        let (w, h) = (128, 128);
        let mut img = vec![0f32; w * h];
        let mut rng = Rng::new(1);
        // Average over many draws: one draw's RMS depends on its phases.
        let mut ms = 0.0;
        for _ in 0..200 {
            img.iter_mut().for_each(|v| *v = 0.0);
            SkyResidual::random(&mut rng, 1.0, 20.0, 40.0).add(&mut img, w, h);
            ms += img.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / (w * h) as f64;
        }
        assert!(((ms / 200.0).sqrt() - 1.0).abs() < 0.1);
        let step = (img[64 * w + 64] - img[64 * w + 65]).abs();
        assert!(step < 0.5, "neighbouring pixels differ by {step}");
    }
}
