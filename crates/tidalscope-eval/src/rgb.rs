//! Colour composites of multi-band cutouts.
//!
//! Stretches are given in units of the **sky noise** σ of each picture (the
//! sigma-clipped MAD of its outer frame, as the normaliser measures it), so
//! one σ of sky looks the same on every tile of a mosaic and faint structure
//! is as visible beside a large bright host as beside a small one. The MAD
//! of the whole image, which a host filling the cutout inflates many times
//! (12× on a 96-pixel HSC-UD mock with a bright plume), is the fallback
//! where the frame says nothing (no finite pixel or no spread).

/// Robust noise estimate of a plane: 1.4826 × the median absolute deviation
/// from the median, ignoring non-finite pixels (0 if none are finite).
pub fn mad_sigma(values: &[f32]) -> f64 {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    tidalscope_core::stats::mad_sigma(&mut v).unwrap_or(0.0) as f64
}

/// Lupton et al. (2004) asinh colour composite, as astropy's
/// `make_lupton_rgb`: with I the mean of the three planes,
/// f(I) = asinh(Q·I/stretch)/Q and each channel is x·f(I)/I, scaled so no
/// channel exceeds 1 (preserving colour in saturated cores).
///
/// Planes are `w × h` row-major with row 0 at the bottom (FITS order); the
/// output is RGB8 with the top row first, so north is up.
pub fn lupton_rgb(red: &[f32], green: &[f32], blue: &[f32], w: usize, h: usize, stretch: f64, q: f64) -> Vec<u8> {
    let mut out = vec![0u8; w * h * 3];
    let stretch = if stretch > 0.0 { stretch } else { 1.0 };
    for y in 0..h {
        let dst_row = h - 1 - y;
        for x in 0..w {
            let i = y * w + x;
            let px = [red[i], green[i], blue[i]].map(|v| if v.is_finite() { v.max(0.0) as f64 } else { 0.0 });
            let mean = (px[0] + px[1] + px[2]) / 3.0;
            let rgb = if mean > 0.0 {
                let f = (q * mean / stretch).asinh() / q;
                let mut c = px.map(|v| v * f / mean);
                let max = c.iter().cloned().fold(0.0, f64::max);
                if max > 1.0 {
                    c = c.map(|v| v / max);
                }
                c
            } else {
                [0.0; 3]
            };
            let o = (dst_row * w + x) * 3;
            for k in 0..3 {
                out[o + k] = (rgb[k] * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// The noise against which a `w`×`h` plane is stretched: its sky σ
/// ([`tidalscope_core::stats::sky_sigma`]), else the [`mad_sigma`] of all
/// its pixels (0 if none are finite).
pub fn sky_noise(plane: &[f32], w: usize, h: usize) -> f64 {
    match tidalscope_core::stats::sky_sigma(plane, w, h, &mut Vec::new()) {
        Some(s) => s as f64,
        None => mad_sigma(plane),
    }
}

/// An RGB thumbnail of a cutout for people to look at: Lupton asinh
/// colours from bands (i, r, g) of a 5-band g,r,i,z,y image (the first three
/// bands, reversed, otherwise; one band gives grey), stretched relative to the
/// image's sky noise so faint structure shows. Returns RGB8, top row first.
pub fn thumbnail(img: &tidalscope_core::Cutout) -> Vec<u8> {
    composite(img, None, 10.0)
}

/// [`thumbnail`]'s colour composite with a chosen `stretch` (`None`: 8 ×
/// the mean noise of the three planes) and softening `q`.
pub fn composite(img: &tidalscope_core::Cutout, stretch: Option<f64>, q: f64) -> Vec<u8> {
    let [r, g, b] = rgb_planes(img);
    let stretch = stretch.unwrap_or_else(|| 8.0 * rgb_noise(img));
    lupton_rgb(r, g, b, img.width(), img.height(), stretch, q)
}

/// The planes [`composite`] shows as red, green and blue: bands (i, r, g)
/// of a 5-band g,r,i,z,y image, the first three otherwise (clamped to the
/// last band, so one band gives grey).
pub fn rgb_planes(img: &tidalscope_core::Cutout) -> [&[f32]; 3] {
    let pick = |b: usize| img.band(b.min(img.bands() - 1));
    match img.bands() {
        5 => [pick(2), pick(1), pick(0)],
        1 => [pick(0), pick(0), pick(0)],
        _ => [pick(0), pick(1), pick(2)],
    }
}

/// The mean [`sky_noise`] of the three [`rgb_planes`]: the unit in which
/// stretches are given to people.
pub fn rgb_noise(img: &tidalscope_core::Cutout) -> f64 {
    rgb_planes(img).iter().map(|p| sky_noise(p, img.width(), img.height())).sum::<f64>() / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mad_sigma_of_a_known_sample() {
        // median 3, absolute deviations 2,1,0,1,2 → MAD 1
        assert!((mad_sigma(&[1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN]) - 1.4826).abs() < 1e-6);
    }

    #[test]
    fn the_stretch_unit_is_the_sky_not_the_host() {
        // Sky σ = 1 under a flat host filling the middle 46×46 of a 64×64
        // cutout: the 8-pixel frame is sky alone; half the pixels are host.
        let (w, h) = (64, 64);
        let mut rng = tidalscope_core::Rng::new(3);
        let plane: Vec<f32> = (0..w * h)
            .map(|i| {
                let host = (9..55).contains(&(i % w)) && (9..55).contains(&(i / w));
                (rng.normal() + if host { 20.0 } else { 0.0 }) as f32
            })
            .collect();
        let sky = sky_noise(&plane, w, h);
        assert!((sky - 1.0).abs() < 0.08, "sky σ {sky}");
        assert!(mad_sigma(&plane) > 5.0 * sky, "whole-image MAD {}", mad_sigma(&plane));
        let img = tidalscope_core::Cutout::from_chw(3, h, w, [plane.clone(), plane.clone(), plane].concat()).unwrap();
        assert!((rgb_noise(&img) - sky).abs() < 1e-9);
        // A frame without finite pixels falls back to the whole image's MAD.
        let mut masked = vec![f32::NAN; w * h];
        for y in 16..48 {
            for x in 16..48 {
                masked[y * w + x] = (x * 7 + y * 3) as f32 % 5.0;
            }
        }
        assert!(mad_sigma(&masked) > 0.0);
        assert_eq!(sky_noise(&masked, w, h), mad_sigma(&masked));
    }

    #[test]
    fn composite_keeps_colour_and_flips_rows() {
        // 1×2 image: bottom pixel red-only, top pixel empty.
        let rgb = lupton_rgb(&[1.0, 0.0], &[0.0, 0.0], &[0.0, 0.0], 1, 2, 1.0, 8.0);
        assert_eq!(&rgb[..3], &[0, 0, 0]); // top row first
        assert!(rgb[3] > 0 && rgb[4] == 0 && rgb[5] == 0);
    }
}
