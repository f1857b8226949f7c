//! Elementary functions written so that loops over pixels vectorise.
//!
//! The asinh stretch runs on every pixel of every image a model sees. The
//! standard library's `f32::asinh` calls the C library's `hypotf` and
//! `log1pf` one value at a time, and for a quick-preset `predict` that cost
//! more than the network. [`asinh`] uses only arithmetic, square roots,
//! bit operations and selects, so the compiler turns a loop over a slice
//! into vector code, and it stays within a few units in the last place of
//! the exact value (the tests measure it against `f64::asinh`). [`sinh`],
//! its inverse, is written the same way: the augmentations work on the
//! flux `sinh v` of stretched pixels `v`, and with the C library's `sinhf`
//! one value at a time those loops were a fifth of a quick-preset
//! pretraining run.

/// ln 2 split in two: the high part times any exponent of a float is
/// exact, the low part carries the rest (Cody and Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// Natural logarithm of a positive, finite, normal `x` (Cephes' `logf`
/// polynomial on a mantissa reduced to [√½, √2)).
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    // The mantissa as a float in [1, 2), halved when above √2 so that the
    // polynomial's argument stays small on both sides of 1.
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > std::f32::consts::SQRT_2;
    let f = if high { 0.5 * m } else { m } - 1.0;
    let e = (exponent + i32::from(high)) as f32;
    let z = f * f;
    let p = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f - 1.242_014_1e-1) * f
        + 1.424_932_3e-1)
        * f
        - 1.666_805_8e-1)
        * f
        + 2.000_071_4e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333e-1)
        * f
        * z;
    let y = p + LN2_LO * e - 0.5 * z;
    f + y + LN2_HI * e
}

/// Inverse hyperbolic sine, within 3 units in the last place of the exact
/// value for every finite input; ±∞ and NaN come back unchanged.
///
/// For |x| below 2¹² it is log1p(u) with u = |x| + x²/(1 + √(1 + x²)),
/// the logarithm taken of w = 1 + u and scaled by u/(w − 1), which undoes
/// the rounding of 1 + u (Goldberg 1991); above, √(1 + x²) rounds to |x|
/// and asinh is ln|x| + ln 2.
#[inline(always)]
pub fn asinh(x: f32) -> f32 {
    let t = x.abs();
    let large = t > 4096.0;
    // Both branches are computed and one is selected: that keeps the code
    // free of jumps. The large branch's x² may overflow; it is not used.
    let t2 = if large { 0.0 } else { t * t };
    let u = t + t2 / (1.0 + (1.0 + t2).sqrt());
    let w = 1.0 + u;
    let l = ln_normal(if large { t } else { w });
    let small = if w == 1.0 { u } else { l * (u / (w - 1.0)) };
    let r = if large { l + std::f32::consts::LN_2 } else { small };
    // ∞ and NaN: the reduction above would give a finite number.
    let r = if t.is_finite() { r } else { t };
    r.copysign(x)
}

/// ½e^t for 0 ≤ t ≤ 89.5 (Cephes' `expf` polynomial p on t − n·ln 2,
/// times 2ⁿ⁻¹ built from the exponent bits; +∞ past the largest float).
#[inline(always)]
fn half_exp(t: f32) -> f32 {
    // Round to nearest by the 1.5·2²³ trick: `f32::round` is a library
    // call without SSE4.1, which would keep the loops scalar.
    const SHIFT: f32 = 12_582_912.0;
    let n = (t * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = t - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    // n ≤ 129 here. Scaled by 2ⁿ⁻² and then by 2, so that p (up to √2)
    // times 2¹²⁷ stays finite where the result is; doubling is exact.
    let bits = (n as i32 - 2 + 127) as u32;
    p * f32::from_bits(bits << 23) * 2.0
}

/// Hyperbolic sine, within 4 units in the last place of the exact value
/// (measured on every 61st float of either sign up to past the overflow,
/// and at the branch points); ±∞ and NaN come back unchanged.
///
/// Below |x| = ½ it is its odd Taylor series to x⁹ (where e^x − e^−x
/// cancels), above h − ¼/h with h = ½e^|x|, and past 80 h alone.
#[inline(always)]
pub fn sinh(x: f32) -> f32 {
    let t = x.abs();
    // NaN fails the test too; both branches below are computed on a safe
    // argument and one is selected.
    let finite = t <= 89.5;
    let tc = if finite { t } else { 0.0 };
    let z = tc * tc;
    let series = tc + tc * z * (1.0 / 6.0 + z * (1.0 / 120.0 + z * (1.0 / 5040.0 + z * (1.0 / 362_880.0))));
    let h = half_exp(tc);
    let exponential = if tc > 80.0 { h } else { h - 0.25 / h };
    let r = if tc < 0.5 { series } else { exponential };
    // Past the range: ∞ stays ∞, a large finite value overflows to it, NaN stays NaN.
    let r = if finite { r } else { t * f32::INFINITY };
    r.copysign(x)
}

crate::multiversion! {
    /// `v ← sinh(v)` for every value: stretched pixels back to flux.
    pub fn sinh_all(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = sinh(*v);
        }
    }
}

crate::multiversion! {
    /// `v ← asinh(k·v)` for every value: flux to stretched pixels, scaled.
    pub fn asinh_scaled_all(values: &mut [f32], k: f32) {
        for v in values.iter_mut() {
            *v = asinh(k * *v);
        }
    }
}

crate::multiversion! {
    /// `v ← asinh(k·sinh(v))` for every value: a stretched pixel's flux
    /// multiplied by `k`, stretched again.
    pub fn rescale_stretched(values: &mut [f32], k: f32) {
        for v in values.iter_mut() {
            *v = asinh(k * sinh(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance between two floats in units in the last place.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 {
                i32::MIN - i
            } else {
                i
            }
        };
        key(a).abs_diff(key(b))
    }

    /// The largest distance in ulps of `f` from `exact` (rounded to f32)
    /// over every `step`th float from the smallest subnormal up to the bit
    /// pattern `end`, of both signs, and where it is.
    fn worst_ulps(end: u32, step: usize, f: impl Fn(f32) -> f32, exact: impl Fn(f64) -> f64) -> (u32, f32) {
        let mut worst = (0, 0.0f32);
        for bits in (1u32..end).step_by(step) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let d = ulps(f(x), exact(x as f64) as f32);
                if d > worst.0 {
                    worst = (d, x);
                }
            }
        }
        worst
    }

    #[test]
    fn asinh_is_within_three_ulps_of_the_exact_value_everywhere() {
        // Every 257th float from the smallest subnormal to the largest
        // finite value, of both signs: 16 million inputs.
        let worst = worst_ulps(0x7f80_0000, 257, asinh, f64::asinh);
        assert!(worst.0 <= 3, "{} ulps at x = {:e}", worst.0, worst.1);
    }

    #[test]
    fn sinh_is_within_four_ulps_of_the_exact_value_everywhere() {
        // Every 61st float up to past where sinh overflows, of both signs.
        let worst = worst_ulps(0x42b4_0000, 61, sinh, f64::sinh);
        assert!(worst.0 <= 4, "{} ulps at x = {:e}", worst.0, worst.1);
        for x in [0.5f32, 0.499_999_97, 80.0, 80.000_01, 88.72, 89.41, 89.42, 89.5, 89.6, 1e30] {
            let exact = (x as f64).sinh() as f32;
            assert!(ulps(sinh(x), exact) <= 4, "x = {x}: {} against {exact}", sinh(x));
        }
    }

    #[test]
    fn sinh_keeps_zero_infinity_and_nan_and_the_slices_match_it() {
        assert_eq!(sinh(0.0).to_bits(), 0f32.to_bits());
        assert_eq!(sinh(-0.0).to_bits(), (-0f32).to_bits());
        assert_eq!(sinh(f32::INFINITY), f32::INFINITY);
        assert_eq!(sinh(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(sinh(f32::NAN).is_nan());
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.731).sin() * 12.0).chain([f32::NAN, 1e3]).collect();
        for level in [2, 1, 0] {
            crate::dispatch::with_ceiling(level, || {
                let mut a = values.clone();
                sinh_all(&mut a);
                let mut b = values.clone();
                asinh_scaled_all(&mut b, 1.7);
                let mut c = values.clone();
                rescale_stretched(&mut c, 1.7);
                for (i, v) in values.iter().enumerate() {
                    let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
                    assert!(same(a[i], sinh(*v)), "level {level}: sinh_all at {v}");
                    assert!(same(b[i], asinh(1.7 * v)), "level {level}: asinh_scaled_all at {v}");
                    assert!(same(c[i], asinh(1.7 * sinh(*v))), "level {level}: rescale_stretched at {v}");
                }
            });
        }
    }

    #[test]
    fn asinh_keeps_zero_infinity_and_nan() {
        assert_eq!(asinh(0.0).to_bits(), 0f32.to_bits());
        assert_eq!(asinh(-0.0).to_bits(), (-0f32).to_bits());
        assert_eq!(asinh(f32::INFINITY), f32::INFINITY);
        assert_eq!(asinh(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(asinh(f32::NAN).is_nan());
        assert_eq!(asinh(f32::MAX), (f32::MAX as f64).asinh() as f32);
    }

    #[test]
    fn asinh_near_the_branch_points() {
        for x in [4095.9f32, 4096.0, 4096.001, 1.0, 1e-4, 1e-20, 0.5, 0.41421357] {
            let exact = (x as f64).asinh() as f32;
            assert!(ulps(asinh(x), exact) <= 3, "x = {x}: {} against {exact}", asinh(x));
        }
    }
}
