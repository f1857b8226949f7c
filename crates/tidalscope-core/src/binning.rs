//! k×k binning straight from pixel-major values (`[height, width, bands]`,
//! the layout of the published arrays and most `.npy` files), so that a
//! reader can bin while it decodes instead of first reordering the whole
//! image into band planes and then reading it again.
//!
//! The rule is `tidalscope_data::preprocess::bin`'s, to the bit: each
//! block's finite pixels are added row by row, left to right, into one
//! accumulator and divided by their count; a block with none finite is NaN;
//! a trailing partial block is dropped (its pixels still count towards
//! each band's finite pixels).

use crate::{multiversion, Cutout};

/// An image averaged in k×k blocks, with each band's finite pixels in the
/// whole unbinned image (dropped partial blocks included).
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// The binned image, band planes.
    pub image: Cutout,
    /// Finite pixels per band before binning.
    pub finite: Vec<usize>,
}

/// Bins pixel-major `values` (`height × width × bands`) by `k`, or None
/// when no fast path covers the shape (blocks of 2 to 4 pixels, 3 to 5
/// bands and an image of at least one block each way have one); the
/// caller then reorders and bins the planes.
///
/// # Panics
/// If `values` is not `height × width × bands` long.
pub fn bin_pixel_major(values: &[f32], height: usize, width: usize, bands: usize, k: usize) -> Option<Binned> {
    assert_eq!(values.len(), height * width * bands, "pixel-major values of {height}×{width}×{bands}");
    if !(2..=4).contains(&k) || !(3..=5).contains(&bands) || height < k || width < k {
        return None;
    }
    Some(bin_dispatched(values, height, width, bands, k))
}

multiversion! {
    /// [`bin_pixel_major`]'s fast paths, compiled for the widest vectors
    /// the CPU has.
    fn bin_dispatched(values: &[f32], height: usize, width: usize, bands: usize, k: usize) -> Binned {
        match (k, bands) {
            (2, 3) => bin_by::<2, 3>(values, height, width),
            (2, 4) => bin_by::<2, 4>(values, height, width),
            (2, 5) => bin_by::<2, 5>(values, height, width),
            (3, 3) => bin_by::<3, 3>(values, height, width),
            (3, 4) => bin_by::<3, 4>(values, height, width),
            (3, 5) => bin_by::<3, 5>(values, height, width),
            (4, 3) => bin_by::<4, 3>(values, height, width),
            (4, 4) => bin_by::<4, 4>(values, height, width),
            (4, 5) => bin_by::<4, 5>(values, height, width),
            _ => unreachable!("no fast path for blocks of {k} and {bands} bands"),
        }
    }
}

/// Blocks of `K` pixels, `B` bands. For each output row, the K source
/// rows are first split into band planes in a small buffer that stays in
/// the L1 cache (pixel-major values leave each band's pixels `B` apart,
/// which no vector loop adds well); each band's blocks are then added as
/// the plane binning adds them, row by row, left to right, so the bits
/// are the same.
#[inline(always)]
fn bin_by<const K: usize, const B: usize>(values: &[f32], height: usize, width: usize) -> Binned {
    let (h, w) = (height / K, width / K);
    let mut image = Cutout::zeros(B, h, w);
    let mut finite = [0usize; B];
    let row_len = width * B;
    let used = w * K;
    // K rows of `used` pixels per band.
    let mut tile = vec![0f32; B * K * used];
    let mut count = vec![0u32; w];
    for y in 0..h {
        for dy in 0..K {
            let row = &values[(y * K + dy) * row_len..][..used * B];
            for (x, px) in row.chunks_exact(B).enumerate() {
                for b in 0..B {
                    tile[(b * K + dy) * used + x] = px[b];
                }
            }
        }
        for (b, finite) in finite.iter_mut().enumerate() {
            let rows = |dy: usize| &tile[(b * K + dy) * used..][..used];
            *finite += block_means::<K>(rows, &mut image.band_mut(b)[y * w..][..w], &mut count);
        }
    }
    // Pixels of the partial blocks: the right-hand columns of the binned
    // rows, then the rows below them.
    let count_finite = |pixels: &[f32], finite: &mut [usize; B]| {
        for px in pixels.chunks_exact(B) {
            for b in 0..B {
                finite[b] += usize::from(px[b].is_finite());
            }
        }
    };
    if used < width {
        for y in 0..h * K {
            count_finite(&values[y * row_len + used * B..(y + 1) * row_len], &mut finite);
        }
    }
    count_finite(&values[h * K * row_len..], &mut finite);
    Binned { image, finite: finite.to_vec() }
}

/// One output row of one band: the means of the finite pixels of each
/// `K`×`K` block whose K source rows `rows(0..K)` gives (each at least
/// `K` × the output's width), added row by row, left to right, into `out`
/// (which starts at zero); NaN for a block with none finite. `count` is
/// scratch of the output's width. Returns the finite pixels added. The
/// plane binning of `tidalscope_data::preprocess` calls this too, so both
/// add in one order; with `K` fixed, the loop over blocks vectorises.
#[inline(always)]
pub fn block_means<'a, const K: usize>(rows: impl Fn(usize) -> &'a [f32], out: &mut [f32], count: &mut [u32]) -> usize {
    let w = out.len();
    let count = &mut count[..w];
    count.fill(0);
    for dy in 0..K {
        let row = &rows(dy)[..w * K];
        for ((s, n), block) in out.iter_mut().zip(count.iter_mut()).zip(row.chunks_exact(K)) {
            for &v in block {
                let ok = v.is_finite();
                *s += if ok { v } else { 0.0 };
                *n += u32::from(ok);
            }
        }
    }
    for (s, &n) in out.iter_mut().zip(count.iter()) {
        *s = if n > 0 { *s / n as f32 } else { f32::NAN };
    }
    count.iter().map(|&n| n as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// Plane binning written the plain way, as the preprocessing crate
    /// does it (block by block, rows in order, pixels left to right).
    fn plain(img: &Cutout, k: usize) -> Binned {
        let (h, w) = (img.height() / k, img.width() / k);
        let mut image = Cutout::zeros(img.bands(), h, w);
        let mut finite = vec![0; img.bands()];
        for (b, f) in finite.iter_mut().enumerate() {
            let src = img.band(b);
            *f = src.iter().filter(|v| v.is_finite()).count();
            for y in 0..h {
                for x in 0..w {
                    let (mut s, mut n) = (0f32, 0u32);
                    for dy in 0..k {
                        for dx in 0..k {
                            let v = src[(y * k + dy) * img.width() + x * k + dx];
                            if v.is_finite() {
                                s += v;
                                n += 1;
                            }
                        }
                    }
                    image.band_mut(b)[y * w + x] = if n > 0 { s / n as f32 } else { f32::NAN };
                }
            }
        }
        Binned { image, finite }
    }

    fn same(a: &Binned, b: &Binned) -> bool {
        a.finite == b.finite
            && a.image.shape() == b.image.shape()
            && a.image.data().iter().zip(b.image.data()).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// Every fast path gives the plain binning's bits, NaN and infinite
    /// pixels and partial blocks included, at every vector width the
    /// machine has.
    #[test]
    fn binning_pixel_major_values_gives_the_plane_binning_bit_for_bit() {
        let mut rng = Rng::new(3);
        for (h, w) in [(32, 32), (13, 17), (4, 9)] {
            for bands in 3..=5 {
                let mut img = Cutout::zeros(bands, h, w);
                for v in img.data_mut() {
                    *v = match rng.uniform() {
                        u if u < 0.05 => f32::NAN,
                        u if u < 0.07 => f32::INFINITY,
                        _ => (rng.normal() * 1e3) as f32,
                    };
                }
                // A block with nothing finite.
                for b in 0..bands {
                    for y in 0..2 {
                        img.band_mut(b)[y * w..y * w + 2].fill(f32::NAN);
                    }
                }
                let mut hwc = vec![0f32; h * w * bands];
                img.write_hwc(&mut hwc);
                for k in 2..=4 {
                    let want = plain(&img, k);
                    // 2 AVX-512, 1 AVX2, 0 the baseline (levels the CPU
                    // lacks run the next one down).
                    for level in [2, 1, 0] {
                        let got = crate::dispatch::with_ceiling(level, || bin_pixel_major(&hwc, h, w, bands, k))
                            .expect("a fast path");
                        assert!(same(&got, &want), "{h}×{w}×{bands} by {k} at level {level}");
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_without_a_fast_path_are_left_to_the_caller() {
        let v = vec![1f32; 8 * 8 * 2];
        assert!(bin_pixel_major(&v, 8, 8, 2, 2).is_none(), "2 bands");
        let v = vec![1f32; 8 * 8 * 5];
        assert!(bin_pixel_major(&v, 8, 8, 5, 5).is_none(), "blocks of 5");
        assert!(bin_pixel_major(&v, 8, 8, 5, 1).is_none(), "no binning");
    }
}
