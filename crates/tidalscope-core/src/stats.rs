//! Robust statistics used across the project.

/// Median of the finite values (consumes their order); None if none.
pub fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    Some(*values.select_nth_unstable_by(mid, f32::total_cmp).1)
}

/// Robust standard deviation: 1.4826 × the median absolute deviation from
/// the median (σ for Gaussian noise). Reorders and overwrites `values`;
/// None for an empty slice. Callers drop non-finite values first.
pub fn mad_sigma(values: &mut [f32]) -> Option<f32> {
    let m = median(values)?;
    for v in values.iter_mut() {
        *v = (*v - m).abs();
    }
    median(values).map(|d| 1.4826 * d)
}

/// Sigma-clipped robust σ (1.4826 × MAD) of `values`: values further than
/// 3σ from the median are dropped and σ re-measured, up to 5 rounds.
/// Reorders `values`; None when empty.
pub fn clipped_sigma(values: &mut Vec<f32>) -> Option<f32> {
    let mut scratch = Vec::with_capacity(values.len());
    for _ in 0..5 {
        scratch.clear();
        scratch.extend_from_slice(values);
        let m = median(&mut scratch)?;
        let s = mad_sigma(&mut scratch)?;
        let before = values.len();
        values.retain(|v| (v - m).abs() <= 3.0 * s);
        if values.len() == before || s == 0.0 {
            return Some(s);
        }
    }
    mad_sigma(&mut values.clone())
}

/// The finite pixels of `band` in the outer frame of a `w`×`h` image, a
/// `max(1, min(w, h) / 8)`-pixel-wide border, into `out`.
pub fn frame(band: &[f32], w: usize, h: usize, out: &mut Vec<f32>) {
    let k = (w.min(h) / 8).max(1);
    out.clear();
    for y in 0..h {
        let row = &band[y * w..(y + 1) * w];
        if y < k || y + k >= h {
            out.extend(row.iter().copied().filter(|v| v.is_finite()));
        } else {
            out.extend(row[..k.min(w)].iter().chain(&row[w.saturating_sub(k)..]).copied().filter(|v| v.is_finite()));
        }
    }
}

/// The sky noise of one `w`×`h` band: the [`clipped_sigma`] of its outer
/// [`frame`], where the galaxy's light is faintest. None when the frame
/// holds no finite pixel or has no spread (masked or zero-padded edges say
/// nothing about the sky). `scratch` is reused between calls.
pub fn sky_sigma(band: &[f32], w: usize, h: usize, scratch: &mut Vec<f32>) -> Option<f32> {
    frame(band, w, h, scratch);
    clipped_sigma(scratch).filter(|s| *s > 0.0 && s.is_finite())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mad_of_a_known_sample() {
        // median 3, absolute deviations 2,1,0,1,2 → MAD 1
        assert!((super::mad_sigma(&mut [1.0, 2.0, 3.0, 4.0, 5.0]).unwrap() - 1.4826).abs() < 1e-6);
        assert_eq!(super::median(&mut []), None);
    }

    #[test]
    fn sky_sigma_ignores_the_galaxy_and_whole_image_mad_does_not() {
        // Sky noise σ = 2 everywhere, plus a bright galaxy filling the centre
        // and a star in the frame: the sky rule finds 2, the image's MAD more.
        let mut rng = crate::Rng::new(5);
        let (w, h) = (64, 64);
        let mut imgs = Vec::new();
        for _ in 0..20 {
            let mut v = vec![0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    let r2 = ((x as f32 - 32.0).powi(2) + (y as f32 - 32.0).powi(2)) / 100.0;
                    v[y * w + x] = 200.0 * (-r2).exp() + 2.0 * rng.normal() as f32;
                }
            }
            v[2 * w + 3] = 5000.0;
            v[w + 1] = f32::NAN;
            imgs.push(v);
        }
        let mut est = Vec::new();
        let mut sky = Vec::new();
        for v in &imgs {
            super::frame(v, w, h, &mut sky);
            assert_eq!(sky.len(), w * h - 48 * 48 - 1, "frame of 8 px, NaN dropped");
            est.push(super::sky_sigma(v, w, h, &mut sky).unwrap());
        }
        let s = super::median(&mut est).unwrap();
        assert!((s / 2.0 - 1.0).abs() < 0.05, "sky σ {s}");
        let mut all: Vec<f32> = imgs.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        assert!(super::mad_sigma(&mut all).unwrap() > 3.0);
        // A frame without spread says nothing.
        assert_eq!(super::sky_sigma(&vec![0.0; w * h], w, h, &mut sky), None);
        assert_eq!(super::sky_sigma(&vec![f32::NAN; w * h], w, h, &mut sky), None);
    }
}
