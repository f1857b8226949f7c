//! Scene → pixels: draw every component once, scale it into each band,
//! convolve each band with its PSF, crop the cutout, add stars and noise.

use crate::convolve::{padded_size, Convolver};
use crate::draw::{draw, DrawParams, Grid};
use crate::noise::{CoaddNoise, SkyResidual};
use crate::profile::Psf;
use crate::scene::{Scene, Star};
use crate::survey::Survey;
use tidalscope_core::{Cutout, Rng};

/// Radius (pixels) out to which PSFs are drawn, and so the padding of the
/// drawing grid around the cutout: 32 px is 5.4″ at HSC's scale, where the
/// wing holds well under 1% of the light.
pub const PSF_RADIUS_PX: usize = 32;

/// Turns scenes into cutouts. Holds FFT plans and buffers: make one per
/// thread and reuse it.
pub struct Renderer {
    survey: Survey,
    size: usize,
    grid: Grid,
    conv: Convolver,
    bands: Vec<Vec<f32>>,
    scratch: Vec<f32>,
    params: DrawParams,
}

impl Renderer {
    /// A renderer for `size × size` cutouts of `survey`.
    pub fn new(survey: &Survey, size: usize) -> Self {
        let n = padded_size(size, PSF_RADIUS_PX);
        // Outskirts fainter than 1% of the quietest band's pixel noise (per
        // arcsec²) are not drawn: even averaged over a thousand pixels such a
        // step stays 3× below the noise, and it halves the drawing work.
        let s2 = survey.pixel_scale * survey.pixel_scale;
        let min_sigma = survey.bands.iter().map(|b| b.noise_sigma).fold(f64::MAX, f64::min);
        Self {
            survey: survey.clone(),
            size,
            grid: Grid::centred(n, survey.pixel_scale),
            conv: Convolver::new(n),
            bands: vec![vec![0.0; n * n]; 5],
            scratch: Vec::new(),
            params: DrawParams { floor: 1e-2 * min_sigma / s2, ..DrawParams::default() },
        }
    }

    /// Side of the padded drawing grid.
    pub fn grid_size(&self) -> usize {
        self.grid.nx
    }

    /// The scene without noise or sky residuals: what a perfect, infinitely
    /// deep coadd would show.
    pub fn render_clean(&mut self, scene: &Scene) -> Cutout {
        let n = self.grid.nx;
        for b in &mut self.bands {
            b.iter_mut().for_each(|v| *v = 0.0);
        }
        for comp in &scene.components {
            let params = DrawParams { accuracy: comp.accuracy, ..self.params };
            let stamp = draw(comp.shape.profile(), &self.grid, &params);
            for (b, img) in self.bands.iter_mut().enumerate() {
                stamp.add_to(img, n, comp.band_factors[b] as f32);
            }
        }
        let m = (n - self.size) / 2;
        let mut out = Cutout::zeros(5, self.size, self.size);
        for b in 0..5 {
            let psf = Psf::new(scene.psf_fwhm[b], self.survey.psf_wing_fraction);
            let spec = self.conv.psf_spectrum(&psf, self.survey.pixel_scale, PSF_RADIUS_PX);
            self.conv.convolve(&mut self.bands[b], &spec);
            let dst = out.band_mut(b);
            for y in 0..self.size {
                dst[y * self.size..(y + 1) * self.size]
                    .copy_from_slice(&self.bands[b][(y + m) * n + m..(y + m) * n + m + self.size]);
            }
            for star in &scene.stars {
                self.add_star(dst, star, star.flux[b], &psf, m);
            }
        }
        out
    }

    /// The scene as observed: [`Renderer::render_clean`] plus correlated
    /// Gaussian noise at the scene's depth and sky-subtraction residuals.
    pub fn render(&mut self, scene: &Scene, rng: &mut Rng) -> Cutout {
        let mut out = self.render_clean(scene);
        let (w, h) = (self.size, self.size);
        // Residual wavelengths of 2–6 cutout widths: gradients, not blobs.
        let (lo, hi) = (2.0 * w as f64, 6.0 * w as f64);
        for b in 0..5 {
            let sigma = scene.noise_sigma[b];
            let noise = CoaddNoise { sigma, correlation: self.survey.noise_correlation };
            noise.add(out.band_mut(b), w, h, rng, &mut self.scratch);
            SkyResidual::random(rng, scene.sky_residual * sigma, lo, hi).add(out.band_mut(b), w, h);
        }
        out
    }

    /// Adds a point source: the PSF sampled at pixel centres (as the drawing
    /// grid's PSF is), normalised over its full disc so its flux is exact
    /// even when part of it falls outside the cutout.
    fn add_star(&self, band: &mut [f32], star: &Star, flux: f64, psf: &Psf, m: usize) {
        let (px, py) = self.grid.to_pixel(star.x, star.y);
        let (cx, cy) = (px - m as f64, py - m as f64); // in cutout pixels
        let r = PSF_RADIUS_PX as isize;
        let (ix, iy) = (cx.round() as isize, cy.round() as isize);
        let s = self.survey.pixel_scale;
        let mut total = 0.0;
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r {
                    total += psf.value((ix + dx) as f64 * s - cx * s, (iy + dy) as f64 * s - cy * s);
                }
            }
        }
        let norm = flux / total;
        let size = self.size as isize;
        for dy in -r..=r {
            let y = iy + dy;
            if y < 0 || y >= size {
                continue;
            }
            for dx in -r..=r {
                let x = ix + dx;
                if x < 0 || x >= size || dx * dx + dy * dy > r * r {
                    continue;
                }
                let v = psf.value(x as f64 * s - cx * s, y as f64 * s - cy * s);
                band[(y * size + x) as usize] += (norm * v) as f32;
            }
        }
    }
}
