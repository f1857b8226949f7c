//! Per-object cost of preparing a cutout for inference (`predict`'s
//! preparing, without reading): the quick preset's channels made, binned,
//! cut to the view and stretched, for the bands alone, with their
//! rotational residuals and with their mirror residuals too. Ignored by
//! default, it measures, not checks; run it in a release build:
//! `cargo test --release -p tidalscope-data --test prepare_timing -- --ignored --nocapture`

use std::time::Instant;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::normalise::Normaliser;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::residual::Channels;

/// A 128 × 128 × 5 galaxy: an inclined exponential disc off the centre
/// with a faint plume on one side, on sky noise.
fn galaxy(rng: &mut Rng) -> Cutout {
    let (h, w, bands) = (128usize, 128usize, 5usize);
    let (cx, cy) = (63.5 + rng.uniform() - 0.5, 63.5 + rng.uniform() - 0.5);
    let (theta, q) = (rng.uniform() * std::f64::consts::PI, 0.4 + 0.5 * rng.uniform());
    let (c, s) = (theta.cos(), theta.sin());
    let mut values = Vec::with_capacity(bands * h * w);
    for b in 0..bands {
        let flux = 0.5 + 0.2 * b as f64;
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                let (u, v) = (c * dx + s * dy, (-s * dx + c * dy) / q);
                let disc = flux * (-(u * u + v * v).sqrt() / 6.0).exp();
                let plume = 0.02 * flux * (-((u - 25.0).powi(2) + (v - 8.0).powi(2)) / 60.0).exp();
                values.push((disc + plume + 0.01 * rng.normal()) as f32);
            }
        }
    }
    Cutout::from_chw(bands, h, w, values).expect("the shape")
}

/// The median over 7 timed runs, after one untimed, of the seconds per
/// image of `f` over `images`.
fn per_image(images: &[Cutout], f: impl Fn(&Cutout)) -> f64 {
    let run = || {
        let t = Instant::now();
        images.iter().for_each(&f);
        t.elapsed().as_secs_f64() / images.len() as f64
    };
    run();
    let mut t: Vec<f64> = (0..7).map(|_| run()).collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

/// `apply_view` at the quick preset's binning and view for each kind of
/// input channel, on one thread: µs per object.
#[test]
#[ignore]
fn preparing_per_object() {
    let mut rng = Rng::new(3);
    let images: Vec<Cutout> = (0..64).map(|_| galaxy(&mut rng)).collect();
    let bands: Vec<String> = ["g", "r", "i", "z", "y"].iter().map(|s| s.to_string()).collect();
    for channels in [Channels::Image, Channels::Both, Channels::All] {
        let n = bands.len() * channels.factor();
        let pre = Preprocess {
            bin: 4,
            crop: 24,
            normalisation: Normaliser::new(channels.names(&bands), vec![0.01; n], "timing"),
            channels,
            centring: Default::default(),
        };
        let secs = per_image(&images, |img| {
            std::hint::black_box(pre.apply_view(img).expect("a good image"));
        });
        println!("prepare {channels:?}: {:.1} µs per object, one thread", secs * 1e6);
    }
}
