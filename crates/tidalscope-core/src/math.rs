//! Elementary functions written so that loops over pixels vectorise.
//!
//! The asinh stretch runs on every pixel of every image a model sees. The
//! standard library's `f32::asinh` calls the C library's `hypotf` and
//! `log1pf` one value at a time, and for a quick-preset `predict` that cost
//! more than the network. [`asinh`] uses only arithmetic, square roots,
//! bit operations and selects, so the compiler turns a loop over a slice
//! into vector code, and it stays within a few units in the last place of
//! the exact value (the tests measure it against `f64::asinh`).

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

    #[test]
    fn asinh_is_within_three_ulps_of_the_exact_value_everywhere() {
        // Every 257th float from the smallest subnormal to the largest
        // finite value, of both signs: 16 million inputs.
        let mut worst = (0, 0.0f32);
        for bits in (1u32..0x7f80_0000).step_by(257) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = (x as f64).asinh() as f32;
                let d = ulps(asinh(x), exact);
                if d > worst.0 {
                    worst = (d, x);
                }
            }
        }
        assert!(worst.0 <= 3, "{} ulps at x = {:e}", worst.0, worst.1);
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
