//! The project's seeded random generator.
//!
//! tidalscope promises that the same seed gives the same bytes, whatever the
//! thread count. It therefore owns its generator (xoshiro256++, seeded through
//! SplitMix64) and its distributions instead of depending on a crate whose
//! algorithms may change between releases. Parallel work derives one
//! independent stream per object with [`Rng::for_stream`], so object `i` gets
//! the same numbers whichever thread draws it.

/// xoshiro256++ (Blackman & Vigna 2019): fast, 256-bit state, passes BigCrush.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
    /// The second value of the last Box–Muller pair, if unused.
    spare_normal: Option<f64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from one 64-bit seed.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Self { s, spare_normal: None }
    }

    /// An independent generator for stream `stream` (e.g. object index) of
    /// run `seed`. Streams of one seed, and equal streams of different seeds,
    /// do not share state.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let mut sm = seed ^ 0x5DEE_CE66_D1CE_4E5B;
        let a = splitmix64(&mut sm);
        let mut sm2 = stream.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ a;
        Self::new(splitmix64(&mut sm2) ^ splitmix64(&mut sm))
    }

    /// Next raw 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `[0, n)` (Lemire's unbiased multiply-shift). `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// True with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal deviate (Marsaglia's polar method, which needs no
    /// trigonometry; the pair's second value is kept for the next call).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(v * f);
                return u * f;
            }
        }
    }

    /// Normal deviate with mean `mu` and standard deviation `sigma`.
    pub fn gaussian(&mut self, mu: f64, sigma: f64) -> f64 {
        mu + sigma * self.normal()
    }

    /// Poisson deviate. Exact (Knuth's product method) for `lambda < 30`, a
    /// rounded normal approximation above, where the difference is negligible
    /// for the object counts tidalscope draws.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda >= 30.0 {
            return self.gaussian(lambda, lambda.sqrt()).round().max(0.0) as u64;
        }
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    /// Index drawn with probability proportional to `weights` (non-negative,
    /// not all zero).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut u = self.uniform() * total;
        for (i, &w) in weights.iter().enumerate() {
            if u < w {
                return i;
            }
            u -= w;
        }
        weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The named random streams of a run. Each use of randomness draws from a
/// stream of its own (of the run's seed), so adding a use never shifts
/// another's numbers; the values are fixed, since changing one changes what
/// a seed produces. Streams that take an index (object, epoch, class) add
/// it to their base.
pub mod streams {
    /// Simulation: object `id`'s scene is stream `id` itself (ids start at
    /// 0 and stay below every base here).
    pub const SIM_OBJECT: u64 = 0;
    /// Simulation: which objects are tidal (one shuffle per run).
    pub const SIM_LABELS: u64 = u64::MAX;
    /// Splits: the reference layout's pick of each class (+ class index).
    pub const SPLIT_PICK: u64 = 0x5EED_0000;
    /// Splits: a stratified split's shuffle of each class (+ label).
    pub const SPLIT_SHUFFLE: u64 = 0x5EED_1000;
    /// Splits: the balanced draw of N training labels (+ label).
    pub const SPLIT_LIMIT: u64 = 0x5EED_2000;
    /// The training loader's shuffle buffer (of the epoch's seed).
    pub const LOADER_SHUFFLE: u64 = 0x10AD;
    /// Pretraining: each epoch's loader seed (+ epoch).
    pub const PRETRAIN_EPOCH: u64 = 0xE90C_0000;
    /// Pretraining: the views of each step; the run's seed is XORed with
    /// this and the stream is (epoch << 32 | step).
    pub const PRETRAIN_VIEWS: u64 = 0xA06;
    /// Pretraining: the local views of each step (multi-crop), drawn
    /// apart from the global ones so that adding them leaves those as
    /// they were; used like [`PRETRAIN_VIEWS`].
    pub const PRETRAIN_LOCAL_VIEWS: u64 = 0x10CA1;
    /// Crowding's draws (donors, places, orientations), in `convert
    /// --crowd` and `pretrain --crowd` alike, so that for one dataset (and
    /// the same pool) the one writes the images the other trains on: the
    /// seed is XORed with this and the stream is (source << 40 | object).
    pub const CROWD: u64 = 0xC20D;
    /// The support queue's random start.
    pub const QUEUE_INIT: u64 = 0x0EE0E;
    /// Fine-tuning: each epoch's order and views (+ epoch).
    pub const FINETUNE_EPOCH: u64 = 0xF17E;
    /// Fine-tuning's cross-validation: each fold's epochs' order and views
    /// (+ fold << 24 + epoch).
    pub const FINETUNE_FOLD: u64 = 0xF01D_0000_0000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(1);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(Rng::for_stream(1, 0).next_u64(), Rng::for_stream(1, 1).next_u64());
        assert_ne!(Rng::for_stream(1, 0).next_u64(), Rng::for_stream(2, 0).next_u64());
    }

    #[test]
    fn distributions_have_the_right_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let z = r.normal();
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "normal mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "normal variance {var}");

        let lam = 3.5;
        let m: f64 = (0..n).map(|_| r.poisson(lam) as f64).sum::<f64>() / n as f64;
        assert!((m - lam).abs() < 0.03, "poisson mean {m}");

        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[r.weighted(&[1.0, 0.0, 3.0])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((counts[2] as f64 / n as f64 - 0.75).abs() < 0.01);

        let mut hits = [0usize; 7];
        for _ in 0..70_000 {
            hits[r.below(7) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (h as f64 - 10_000.0).abs() < 500.0), "{hits:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..100).collect();
        Rng::new(3).shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
