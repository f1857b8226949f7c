//! Multi-band images.

/// A multi-band image, float32, stored band-major: pixel `(b, y, x)` lives at
/// `data[(b * height + y) * width + x]`.
///
/// Band-major storage makes per-band work (PSF convolution, noise, statistics)
/// contiguous; [`Cutout::write_hwc`] converts to the reference's `[H, W, C]`
/// layout at the edge, when writing `.npy` or tf.data files.
#[derive(Debug, Clone, PartialEq)]
pub struct Cutout {
    bands: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

/// A buffer whose length does not match the shape it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {got} values does not match shape {shape:?} ({expected} values)")]
pub struct ShapeError {
    /// The requested `[bands, height, width]`.
    pub shape: [usize; 3],
    /// Number of values that shape needs.
    pub expected: usize,
    /// Number of values supplied.
    pub got: usize,
}

impl Cutout {
    /// A cutout of zeros.
    pub fn zeros(bands: usize, height: usize, width: usize) -> Self {
        Self { bands, height, width, data: vec![0.0; bands * height * width] }
    }

    /// Wraps a band-major `[bands, height, width]` buffer.
    pub fn from_chw(bands: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Self, ShapeError> {
        let expected = bands * height * width;
        if data.len() != expected {
            return Err(ShapeError { shape: [bands, height, width], expected, got: data.len() });
        }
        Ok(Self { bands, height, width, data })
    }

    /// Builds a cutout from a pixel-major `[height, width, bands]` buffer (the
    /// reference's HWC layout).
    pub fn from_hwc(height: usize, width: usize, bands: usize, hwc: &[f32]) -> Result<Self, ShapeError> {
        let expected = bands * height * width;
        if hwc.len() != expected {
            return Err(ShapeError { shape: [bands, height, width], expected, got: hwc.len() });
        }
        let mut out = Self::zeros(bands, height, width);
        if out.data.is_empty() {
            return Ok(out);
        }
        // One band plane at a time: its writes are sequential, and the
        // strided reads come from an image small enough to stay in cache.
        for (b, plane) in out.data.chunks_exact_mut(height * width).enumerate() {
            for (o, px) in plane.iter_mut().zip(hwc.chunks_exact(bands)) {
                *o = px[b];
            }
        }
        Ok(out)
    }

    /// Number of bands.
    pub fn bands(&self) -> usize {
        self.bands
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[bands, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.bands, self.height, self.width]
    }

    /// All pixels, band-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// All pixels, band-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the cutout and returns its band-major buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// One band as a row-major `[height, width]` plane.
    pub fn band(&self, b: usize) -> &[f32] {
        let plane = self.height * self.width;
        &self.data[b * plane..(b + 1) * plane]
    }

    /// One band, mutable.
    pub fn band_mut(&mut self, b: usize) -> &mut [f32] {
        let plane = self.height * self.width;
        &mut self.data[b * plane..(b + 1) * plane]
    }

    /// The cutout with its bands in another order: band `k` of the result
    /// is band `order[k]` of this one.
    ///
    /// # Panics
    /// If `order` does not name each band once.
    pub fn reordered(&self, order: &[usize]) -> Cutout {
        let mut seen = order.to_vec();
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..self.bands), "band order {order:?} for {} bands", self.bands);
        let data = order.iter().flat_map(|&k| self.band(k).iter().copied()).collect();
        Cutout { data, ..*self }
    }

    /// Writes the pixels in `[height, width, bands]` order into `out`, which
    /// must hold exactly `bands * height * width` values.
    pub fn write_hwc(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.data.len(), "write_hwc: output buffer has the wrong length");
        let plane = self.height * self.width;
        for (p, px) in out.chunks_exact_mut(self.bands).enumerate() {
            for (b, v) in px.iter_mut().enumerate() {
                *v = self.data[b * plane + p];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordered_moves_whole_planes() {
        let c = Cutout::from_chw(3, 1, 2, vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).unwrap();
        assert_eq!(c.reordered(&[2, 0, 1]).data(), &[20.0, 21.0, 0.0, 1.0, 10.0, 11.0]);
        assert_eq!(c.reordered(&[0, 1, 2]), c);
    }

    #[test]
    fn hwc_round_trip_keeps_every_pixel() {
        let hwc: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32).collect();
        let c = Cutout::from_hwc(3, 4, 2, &hwc).unwrap();
        // pixel (y=1, x=2), band 1 is at HWC offset (1*4+2)*2+1 = 13
        assert_eq!(c.band(1)[4 + 2], 13.0);
        let mut back = vec![0.0; hwc.len()];
        c.write_hwc(&mut back);
        assert_eq!(back, hwc);
    }

    #[test]
    fn wrong_length_is_an_error_not_a_panic() {
        let err = Cutout::from_chw(5, 2, 2, vec![0.0; 3]).unwrap_err();
        assert_eq!(err.expected, 20);
        assert!(err.to_string().contains("20 values"));
    }
}
