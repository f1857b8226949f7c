//! PSF convolution by FFT on a square grid.
//!
//! Scenes are drawn on a grid padded beyond the cutout by more than the PSF
//! radius, so the circular convolution's wrap-around only touches pixels that
//! are cropped away, and sources just outside the cutout still spill their
//! light into it.

use crate::profile::Psf;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Reusable 2-D FFT convolution for one grid size; keeps its plans and
/// buffers, so per-image work allocates nothing.
pub struct Convolver {
    n: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
    row_in: Vec<f32>,
    row_out: Vec<Complex32>,
    spec: Vec<Complex32>,
    scratch: Vec<Complex32>,
    kernel: Vec<f32>,
}

/// The Fourier transform of a PSF image, ready for [`Convolver::convolve`].
#[derive(Debug, Clone)]
pub struct KernelSpectrum(Vec<Complex32>);

impl Convolver {
    /// Plans for `n × n` images.
    pub fn new(n: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let r2c = planner.plan_fft_forward(n);
        let c2r = planner.plan_fft_inverse(n);
        let mut cplanner = FftPlanner::<f32>::new();
        let col_fwd = cplanner.plan_fft_forward(n);
        let col_inv = cplanner.plan_fft_inverse(n);
        let scratch_len = col_fwd
            .get_inplace_scratch_len()
            .max(col_inv.get_inplace_scratch_len())
            .max(r2c.get_scratch_len().max(c2r.get_scratch_len()));
        let half = n / 2 + 1;
        Self {
            n,
            r2c,
            c2r,
            col_fwd,
            col_inv,
            row_in: vec![0.0; n],
            row_out: vec![Complex32::default(); half],
            spec: vec![Complex32::default(); half * n],
            scratch: vec![Complex32::default(); scratch_len],
            kernel: vec![0.0; n * n],
        }
    }

    /// Side of the grid this convolver was planned for.
    pub fn size(&self) -> usize {
        self.n
    }

    /// Forward transform of `image` into `self.spec`, laid out column-major
    /// (`[kx][y]`) so that the column transforms are contiguous.
    fn forward(&mut self, image: &[f32]) {
        let n = self.n;
        for y in 0..n {
            self.row_in.copy_from_slice(&image[y * n..(y + 1) * n]);
            self.r2c
                .process_with_scratch(&mut self.row_in, &mut self.row_out, &mut self.scratch)
                .expect("FFT buffer sizes are fixed at planning time");
            for (kx, v) in self.row_out.iter().enumerate() {
                self.spec[kx * n + y] = *v;
            }
        }
        self.col_fwd.process_with_scratch(&mut self.spec, &mut self.scratch);
    }

    /// The spectrum of a PSF sampled at pixel centres on `grid` (side `n`),
    /// truncated at `radius_px` and normalised to unit sum.
    pub fn psf_spectrum(&mut self, psf: &Psf, scale: f64, radius_px: usize) -> KernelSpectrum {
        let n = self.n;
        let r = radius_px.min(n / 2 - 1);
        self.kernel.iter_mut().for_each(|v| *v = 0.0);
        let mut total = 0.0f64;
        // The PSF is round: evaluate one quadrant and mirror it.
        for dy in 0..=r {
            for dx in 0..=r {
                if dx * dx + dy * dy > r * r {
                    continue;
                }
                let v = psf.value(dx as f64 * scale, dy as f64 * scale);
                let copies = if dx == 0 { 1 } else { 2 } * if dy == 0 { 1 } else { 2 };
                total += v * copies as f64;
                for (ix, iy) in [(dx, dy), (n - dx, dy), (dx, n - dy), (n - dx, n - dy)] {
                    self.kernel[(iy % n) * n + ix % n] = v as f32;
                }
            }
        }
        let inv = (1.0 / total) as f32;
        self.kernel.iter_mut().for_each(|v| *v *= inv);
        let kernel = std::mem::take(&mut self.kernel);
        self.forward(&kernel);
        self.kernel = kernel;
        KernelSpectrum(self.spec.clone())
    }

    /// Convolves `image` (`n × n`, row-major) with a kernel, in place.
    pub fn convolve(&mut self, image: &mut [f32], kernel: &KernelSpectrum) {
        let n = self.n;
        assert_eq!(image.len(), n * n, "Convolver: image is not {n}×{n}");
        self.forward(image);
        let norm = 1.0 / (n * n) as f32;
        for (a, b) in self.spec.iter_mut().zip(&kernel.0) {
            *a = *a * *b * norm;
        }
        self.col_inv.process_with_scratch(&mut self.spec, &mut self.scratch);
        let half = n / 2 + 1;
        for y in 0..n {
            for kx in 0..half {
                self.row_out[kx] = self.spec[kx * n + y];
            }
            // A real image has real DC and Nyquist terms; clear round-off.
            self.row_out[0].im = 0.0;
            if n.is_multiple_of(2) {
                self.row_out[half - 1].im = 0.0;
            }
            self.c2r
                .process_with_scratch(&mut self.row_out, &mut self.row_in, &mut self.scratch)
                .expect("FFT buffer sizes are fixed at planning time");
            image[y * n..(y + 1) * n].copy_from_slice(&self.row_in);
        }
    }
}

/// Grid side used for a cutout of `size` pixels: padded by at least
/// `margin` pixels on each side, with the same parity as `size` (so the
/// cutout sits exactly in the middle) and only prime factors 2, 3 and 5,
/// which FFTs handle fastest.
pub fn padded_size(size: usize, margin: usize) -> usize {
    let mut n = size + 2 * margin;
    loop {
        let mut m = n;
        for p in [2, 3, 5] {
            while m.is_multiple_of(p) {
                m /= p;
            }
        }
        if m == 1 && n % 2 == size % 2 {
            return n;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolving_a_point_gives_the_normalised_psf() {
        let n = 64;
        let mut c = Convolver::new(n);
        let psf = Psf::new(0.8, 0.1);
        let spec = c.psf_spectrum(&psf, 0.168, 20);
        let mut img = vec![0f32; n * n];
        img[32 * n + 32] = 10.0;
        c.convolve(&mut img, &spec);
        let total: f32 = img.iter().sum();
        assert!((total - 10.0).abs() < 1e-3, "flux {total}");
        // symmetric about the point, peak at the point
        assert!((img[32 * n + 33] - img[32 * n + 31]).abs() < 1e-5);
        assert!((img[33 * n + 32] - img[31 * n + 32]).abs() < 1e-5);
        let peak = img.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(peak, img[32 * n + 32]);
    }

    #[test]
    fn padded_sizes_are_fft_friendly() {
        assert_eq!(padded_size(128, 32), 192);
        assert_eq!(padded_size(100, 32), 180);
        let odd = padded_size(97, 1);
        assert!(odd >= 99 && odd % 2 == 1);
    }
}
