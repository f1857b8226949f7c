//! Non-parametric morphology — the classical way to flag disturbed
//! galaxies, used as the baseline the learned classifiers must beat.
//!
//! On one (background-subtracted) image: rotational asymmetry A (Conselice
//! 2000) within 1.5 r80, the same in the outskirts only (beyond twice the
//! half-light radius, where tidal features live, over the segmented light),
//! shape asymmetry of the smoothed, connected 1σ segmentation map (Pawlik
//! et al. 2016, made for faint tidal structure),
//! concentration C, Gini and M20 (Lotz et al. 2004), smoothness S and the
//! fraction of the segmented flux beyond 2 r50. All are computed about the
//! light-weighted centre of the central region; no fits, no PSF. The
//! asymmetries have the expected noise term (2σ/√π per pixel pair)
//! removed, as Conselice's background correction does, and smoothness its
//! noise term (≈ 0.39σ per pixel).

/// Names of the features, in the order [`features`] returns them.
pub const FEATURE_NAMES: [&str; 8] =
    ["asymmetry", "outer_asymmetry", "shape_asymmetry", "concentration", "gini", "m20", "smoothness", "outer_flux"];

/// Median of a copy (NaN-free input).
fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    v.select_nth_unstable_by(m, |a, b| a.total_cmp(b));
    v[m]
}

/// The features of a `w`×`h` image (row-major; non-finite pixels count as
/// background). The sky level and noise σ are measured on the outer border
/// (median and 1.4826·MAD of the outermost 10% of rows and columns).
///
/// # Panics
/// If `img` holds fewer than `w·h` values or `w` or `h` is 0.
pub fn features(img: &[f32], w: usize, h: usize) -> [f64; 8] {
    assert!(
        w > 0 && h > 0 && img.len() >= w * h,
        "morphology: a {w}×{h} image needs {} values, got {}",
        w * h,
        img.len()
    );
    let border = (w.min(h) / 10).max(1);
    let mut edge: Vec<f32> = Vec::with_capacity(4 * border * w.max(h));
    for y in 0..h {
        for x in 0..w {
            let v = img[y * w + x];
            if v.is_finite() && (x < border || y < border || x >= w - border || y >= h - border) {
                edge.push(v);
            }
        }
    }
    let sky = median(&mut edge.clone());
    let mut dev: Vec<f32> = edge.iter().map(|v| (v - sky).abs()).collect();
    let sigma = (1.4826 * median(&mut dev)).max(1e-12) as f64;
    let im: Vec<f64> = img.iter().map(|&v| if v.is_finite() { (v - sky) as f64 } else { 0.0 }).collect();
    // Centre: light-weighted centroid of positive pixels within the central third.
    let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
    for y in h / 3..(2 * h / 3).max(h / 3 + 1) {
        for x in w / 3..(2 * w / 3).max(w / 3 + 1) {
            let v = im[y * w + x].max(0.0);
            sx += v * x as f64;
            sy += v * y as f64;
            sw += v;
        }
    }
    let (cx, cy) = if sw > 0.0 { (sx / sw, sy / sw) } else { ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0) };
    let rmax = (w.min(h) as f64) / 2.0 - border as f64;
    // Rotation by 180° about the centre rounded to the nearest half pixel.
    let (tcx, tcy) = ((2.0 * cx).round() as isize, (2.0 * cy).round() as isize);
    let rot = |x: usize, y: usize| -> Option<f64> {
        let (rx, ry) = (tcx - x as isize, tcy - y as isize);
        (rx >= 0 && ry >= 0 && (rx as usize) < w && (ry as usize) < h).then(|| im[ry as usize * w + rx as usize])
    };
    let radius = |x: usize, y: usize| ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
    // Segmentation (Pawlik et al. 2016): the 3×3-mean-smoothed image above
    // 1σ (of the unsmoothed noise), keeping only the 8-connected region that
    // holds the centre, so sky pixels that happen to be high stay out.
    let smooth3: Vec<f64> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            let (mut s, mut n) = (0.0, 0.0);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                        s += im[yy as usize * w + xx as usize];
                        n += 1.0;
                    }
                }
            }
            s / n
        })
        .collect();
    let mut seg = vec![false; w * h];
    let start = (cy.round() as usize).min(h - 1) * w + (cx.round() as usize).min(w - 1);
    if smooth3[start] > sigma {
        let mut stack = vec![start];
        seg[start] = true;
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx < 0 || yy < 0 || xx as usize >= w || yy as usize >= h {
                        continue;
                    }
                    let j = yy as usize * w + xx as usize;
                    if !seg[j] && smooth3[j] > sigma && radius(xx as usize, yy as usize) <= rmax {
                        seg[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
    }
    let rot_index = |x: usize, y: usize| -> Option<usize> {
        let (rx, ry) = (tcx - x as isize, tcy - y as isize);
        (rx >= 0 && ry >= 0 && (rx as usize) < w && (ry as usize) < h).then(|| ry as usize * w + rx as usize)
    };
    // Growth curve within rmax for r20, r50, r80.
    let mut by_r: Vec<(f64, f64)> =
        (0..w * h).filter(|&i| radius(i % w, i / w) <= rmax).map(|i| (radius(i % w, i / w), im[i].max(0.0))).collect();
    by_r.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = by_r.iter().map(|p| p.1).sum::<f64>().max(1e-12);
    let r_at = |f: f64| {
        let mut acc = 0.0;
        for &(r, v) in &by_r {
            acc += v;
            if acc >= f * total {
                return r.max(0.5);
            }
        }
        rmax
    };
    let (r20, r50, r80) = (r_at(0.2), r_at(0.5), r_at(0.8));
    let concentration = 5.0 * (r80 / r20).log10();
    // Asymmetries.
    let (mut a_num, mut a_den, mut o_num, mut o_den, mut s_num, mut s_den) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut outer, mut inside) = (0.0, 0.0);
    // Pixels compared, for the noise term E|n − n'| = 2σ/√π of two noisy pixels.
    let (mut a_pix, mut o_pix) = (0.0, 0.0);
    // Apertures: A within 1.5 r80 (about Conselice's 1.5 Petrosian radii),
    // the outer asymmetry beyond 2 r50 over the segmented light and its
    // rotation only, so that sky does not dilute either ratio.
    let r_a = (1.5 * r80).min(rmax);
    for y in 0..h {
        for x in 0..w {
            let r = radius(x, y);
            if r > rmax {
                continue;
            }
            let v = im[y * w + x];
            if let (Some(v180), Some(j)) = (rot(x, y), rot_index(x, y)) {
                if r <= r_a {
                    a_num += (v - v180).abs();
                    a_den += v.abs();
                    a_pix += 1.0;
                }
                if r > 2.0 * r50 && (seg[y * w + x] || seg[j]) {
                    o_num += (v - v180).abs();
                    o_den += v.abs();
                    o_pix += 1.0;
                }
                let (m, m180) = (seg[y * w + x], seg[j]);
                s_num += (m != m180) as u8 as f64;
                s_den += m as u8 as f64;
            }
            if seg[y * w + x] {
                inside += v;
                if r > 2.0 * r50 {
                    outer += v;
                }
            }
        }
    }
    // Smoothness: residual from a 5×5 box-smoothed copy, between 0.25 r80
    // and 1.5 r80, less the expected noise term E[max(n, 0)] ≈ 0.39σ.
    let k = 2isize;
    let (mut sm_num, mut sm_den, mut sm_pix) = (0.0, 0.0, 0.0);
    for y in 0..h {
        for x in 0..w {
            let r = radius(x, y);
            if r > r_a || r < 0.25 * r80 {
                continue;
            }
            sm_pix += 1.0;
            let (mut s, mut n) = (0.0, 0.0);
            for dy in -k..=k {
                for dx in -k..=k {
                    let (xx, yy) = (x as isize + dx, y as isize + dy);
                    if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                        s += im[yy as usize * w + xx as usize];
                        n += 1.0;
                    }
                }
            }
            let v = im[y * w + x];
            sm_num += (v - s / n).max(0.0);
            sm_den += v.abs();
        }
    }
    // Gini and M20 on the segmented pixels.
    let mut vals: Vec<(f64, usize)> = (0..w * h).filter(|&i| seg[i]).map(|i| (im[i].abs(), i)).collect();
    vals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = vals.len() as f64;
    let mean = vals.iter().map(|v| v.0).sum::<f64>() / n.max(1.0);
    let gini = if n > 1.0 && mean > 0.0 {
        vals.iter().enumerate().map(|(i, v)| (2.0 * (i as f64 + 1.0) - n - 1.0) * v.0).sum::<f64>()
            / (mean * n * (n - 1.0))
    } else {
        0.0
    };
    let m_i = |i: usize| im[i].abs() * ((((i % w) as f64) - cx).powi(2) + (((i / w) as f64) - cy).powi(2));
    let m_tot: f64 = vals.iter().map(|v| m_i(v.1)).sum();
    let f_tot: f64 = vals.iter().map(|v| v.0).sum();
    let (mut f_acc, mut m_acc) = (0.0, 0.0);
    for v in vals.iter().rev() {
        if f_acc >= 0.2 * f_tot {
            break;
        }
        f_acc += v.0;
        m_acc += m_i(v.1);
    }
    let m20 = if m_tot > 0.0 && m_acc > 0.0 { (m_acc / m_tot).log10() } else { 0.0 };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let noise = 2.0 / std::f64::consts::PI.sqrt() * sigma;
    [
        ratio(a_num - a_pix * noise, a_den),
        ratio(o_num - o_pix * noise, o_den),
        ratio(s_num, s_den),
        concentration,
        gini,
        m20,
        ratio(sm_num - sm_pix * 0.39 * sigma, sm_den),
        ratio(outer, inside),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(w: usize, extra: Option<(f64, f64)>) -> Vec<f32> {
        let mut rng = tidalscope_core::Rng::new(4);
        let c = (w as f64 - 1.0) / 2.0;
        (0..w * w)
            .map(|i| {
                let (x, y) = ((i % w) as f64 - c, (i / w) as f64 - c);
                let mut v = 100.0 * (-(x * x + y * y).sqrt() / 3.0).exp();
                if let Some((ex, ey)) = extra {
                    // A faint one-sided plume.
                    v += 4.0 * (-((x - ex).powi(2) + (y - ey).powi(2)) / 40.0).exp();
                }
                (v + 0.3 * rng.normal()) as f32
            })
            .collect()
    }

    #[test]
    fn a_symmetric_galaxy_is_symmetric_and_a_plume_is_not() {
        let w = 64;
        let plain = features(&blob(w, None), w, w);
        let plume = features(&blob(w, Some((14.0, 6.0))), w, w);
        assert!(plain[0] < 0.02, "asymmetry of a symmetric blob: {}", plain[0]);
        assert!(plume[0] > plain[0] && plume[1] > 3.0 * plain[1].max(0.01), "plume: {plume:?}, plain: {plain:?}");
        assert!(plume[2] > plain[2], "shape asymmetry sees the faint plume");
        assert!(plain[3] > 2.0 && plain[3] < 5.0, "concentration of an exponential disc: {}", plain[3]);
        assert!(plain[4] > 0.3 && plain[4] < 1.0, "Gini {}", plain[4]);
        assert!(plain[5] < -1.0, "M20 of a concentrated galaxy: {}", plain[5]);
    }

    #[test]
    fn nan_pixels_are_background() {
        let w = 48;
        let mut img = blob(w, None);
        img[5] = f32::NAN;
        img[w * 30 + 2] = f32::INFINITY;
        let f = features(&img, w, w);
        assert!(f.iter().all(|v| v.is_finite()), "{f:?}");
    }
}
