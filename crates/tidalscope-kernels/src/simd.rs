//! The element-wise passes (BatchNorm statistics and gradients, affine
//! maps, ReLU, bias, Adam, sums), each compiled three times — AVX-512,
//! AVX2+FMA and the build's baseline — with the widest the CPU supports
//! chosen at run time (`tidalscope_core::multiversion!`).
//!
//! A default x86-64 build targets SSE2, where these loops run four floats
//! at a time or, as measured, scalar; they were half of a training step.
//! Each kernel works on a block of rows (`[rows, c]`, channels last), takes
//! its flags by value and cuts every slice to the row length first, so the
//! inner loops compile without bounds checks and vectorise.

use tidalscope_core::multiversion;

multiversion! {
    /// `acc[ch] += Σ_rows x[row, ch]`.
    pub(crate) fn add_rows(acc: &mut [f32], x: &[f32]) {
        let c = acc.len();
        for row in x.chunks_exact(c) {
            let row = &row[..c];
            for ch in 0..c {
                acc[ch] += row[ch];
            }
        }
    }
}

multiversion! {
    /// `acc[ch] += Σ_rows (x[row, ch] − mean[ch])²`.
    pub(crate) fn add_squared_deviations(acc: &mut [f32], x: &[f32], mean: &[f32]) {
        let c = acc.len();
        let mean = &mean[..c];
        for row in x.chunks_exact(c) {
            let row = &row[..c];
            for ch in 0..c {
                let d = row[ch] - mean[ch];
                acc[ch] += d * d;
            }
        }
    }
}

multiversion! {
    /// `y = x·scale + shift` per channel, then ReLU when `relu`.
    pub(crate) fn affine_rows(y: &mut [f32], x: &[f32], scale: &[f32], shift: &[f32], relu: bool) {
        let c = scale.len();
        let shift = &shift[..c];
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            let (yr, xr) = (&mut yr[..c], &xr[..c]);
            for ch in 0..c {
                let t = xr[ch] * scale[ch] + shift[ch];
                yr[ch] = if relu { t.max(0.0) } else { t };
            }
        }
    }
}

multiversion! {
    /// `y += bias` per channel, then ReLU when `relu`.
    pub(crate) fn bias_rows(y: &mut [f32], bias: &[f32], relu: bool) {
        let c = bias.len();
        for yr in y.chunks_exact_mut(c) {
            let yr = &mut yr[..c];
            for ch in 0..c {
                let t = yr[ch] + bias[ch];
                yr[ch] = if relu { t.max(0.0) } else { t };
            }
        }
    }
}

multiversion! {
    /// `d += s`.
    pub(crate) fn add_into(d: &mut [f32], s: &[f32]) {
        let n = d.len();
        let s = &s[..n];
        for i in 0..n {
            d[i] += s[i];
        }
    }
}

/// x̂ = (x − mean)·inv_std, and the output gradient `dy` zeroed where the
/// forward pass's ReLU was off (its own test: `x·scale + shift > 0`).
#[inline(always)]
fn normalised_and_masked(x: f32, dy: f32, mean: f32, inv_std: f32, scale: f32, shift: f32, relu: bool) -> (f32, f32) {
    let g = if !relu || x * scale + shift > 0.0 { dy } else { 0.0 };
    ((x - mean) * inv_std, g)
}

multiversion! {
    /// BatchNorm-ReLU backward, first pass: with x̂ = (x − mean)·inv_std and
    /// g = dy masked where the ReLU was off, `ag += Σ g`, `agx += Σ g·x̂`.
    /// The mask is the forward pass's own test, `x·scale + shift > 0`.
    pub(crate) fn bn_grad_sums(
        ag: &mut [f32],
        agx: &mut [f32],
        x: &[f32],
        dy: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        scale: &[f32],
        shift: &[f32],
        relu: bool,
    ) {
        let c = ag.len();
        let (agx, m, s, sc, sh) = (&mut agx[..c], &mean[..c], &inv_std[..c], &scale[..c], &shift[..c]);
        for (xr, gr) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
            let (xr, gr) = (&xr[..c], &gr[..c]);
            for ch in 0..c {
                let (xh, g) = normalised_and_masked(xr[ch], gr[ch], m[ch], s[ch], sc[ch], sh[ch], relu);
                ag[ch] += g;
                agx[ch] += g * xh;
            }
        }
    }
}

multiversion! {
    /// BatchNorm-ReLU backward, second pass: `dx (+)= scale·(g − mean_g − x̂·mean_gx)`
    /// with scale = γ·inv_std (g and x̂ as in [`bn_grad_sums`]).
    pub(crate) fn bn_input_grad(
        dx: &mut [f32],
        x: &[f32],
        dy: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        scale: &[f32],
        shift: &[f32],
        mean_g: &[f32],
        mean_gx: &[f32],
        relu: bool,
        accumulate: bool,
    ) {
        let c = scale.len();
        let (m, s, sh, mg, mgx) = (&mean[..c], &inv_std[..c], &shift[..c], &mean_g[..c], &mean_gx[..c]);
        for ((dr, xr), gr) in dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
            let (dr, xr, gr) = (&mut dr[..c], &xr[..c], &gr[..c]);
            for ch in 0..c {
                let (xh, g) = normalised_and_masked(xr[ch], gr[ch], m[ch], s[ch], scale[ch], sh[ch], relu);
                let v = scale[ch] * (g - mg[ch] - xh * mgx[ch]);
                dr[ch] = if accumulate { dr[ch] + v } else { v };
            }
        }
    }
}

multiversion! {
    /// One Adam update of `p` (see [`crate::adam`]); `factor` and `eps`
    /// carry the bias corrections.
    pub(crate) fn adam_update(
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        beta1: f32,
        beta2: f32,
        weight_decay: f32,
        lr: f32,
        factor: f32,
        eps: f32,
    ) {
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let gi = g[i] + weight_decay * p[i];
            m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
            v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
            p[i] -= lr * (m[i] * factor / (v[i].sqrt() + eps));
        }
    }
}

multiversion! {
    /// Winograd F(2×2, 3×3) input transform of a block of tiles
    /// ([`crate::winograd`]).
    pub(crate) fn winograd_input(
        x: &[f32],
        h: usize,
        w: usize,
        c: usize,
        grid: (usize, usize),
        t0: usize,
        n: usize,
        d: &mut [f32],
        v: &mut [f32],
    ) {
        crate::winograd::input_tiles(x, h, w, c, grid, t0, n, d, v)
    }
}

multiversion! {
    /// Winograd F(2×2, 3×3) output transform of a block of tiles
    /// ([`crate::winograd`]).
    pub(crate) fn winograd_output(
        m: &[f32],
        h: usize,
        w: usize,
        c: usize,
        grid: (usize, usize),
        t0: usize,
        n: usize,
        s: &mut [f32],
        y: &mut [f32],
        accumulate: bool,
    ) {
        crate::winograd::output_tiles(m, h, w, c, grid, t0, n, s, y, accumulate)
    }
}

multiversion! {
    /// Winograd F(2×2, 3×3) transform of the output gradients of a block of
    /// tiles, for the weight gradient ([`crate::winograd`]).
    pub(crate) fn winograd_gradient(
        dy: &[f32],
        h: usize,
        w: usize,
        c: usize,
        grid: (usize, usize),
        t0: usize,
        n: usize,
        s: &mut [f32],
        g: &mut [f32],
    ) {
        crate::winograd::gradient_tiles(dy, h, w, c, grid, t0, n, s, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel once on fixed odd-sized inputs (13 rows × 19 channels).
    fn run_all() -> Vec<Vec<f32>> {
        let (rows, c) = (13, 19);
        let v =
            |k: usize, n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7 + k * 13) % 23) as f32 * 0.17 - 1.7).collect() };
        let (x, dy, mean, inv, scale, shift) = (v(1, rows * c), v(2, rows * c), v(3, c), v(4, c), v(5, c), v(6, c));
        let mut out = Vec::new();
        let mut acc = v(7, c);
        add_rows(&mut acc, &x);
        out.push(acc.clone());
        add_squared_deviations(&mut acc, &x, &mean);
        out.push(acc);
        for relu in [false, true] {
            let mut y = vec![0.0; rows * c];
            affine_rows(&mut y, &x, &scale, &shift, relu);
            out.push(y.clone());
            bias_rows(&mut y, &shift, relu);
            out.push(y);
            let (mut ag, mut agx) = (v(8, c), v(9, c));
            bn_grad_sums(&mut ag, &mut agx, &x, &dy, &mean, &inv, &scale, &shift, relu);
            out.extend([ag.clone(), agx.clone()]);
            for accumulate in [false, true] {
                let mut dx = v(10, rows * c);
                bn_input_grad(&mut dx, &x, &dy, &mean, &inv, &scale, &shift, &ag, &agx, relu, accumulate);
                out.push(dx);
            }
        }
        let mut d = v(11, rows * c);
        add_into(&mut d, &x);
        out.push(d);
        let (mut p, mut m, mut s) = (v(12, 37), v(13, 37), v(14, 37).iter().map(|x| x.abs()).collect::<Vec<_>>());
        adam_update(&mut p, &v(15, 37), &mut m, &mut s, 0.9, 0.999, 1e-3, 1e-2, 1.3, 1e-7);
        out.extend([p, m, s]);
        out
    }

    #[test]
    fn every_instruction_set_variant_gives_the_same_results() {
        let best = run_all();
        for level in [1, 0] {
            let got = tidalscope_core::dispatch::with_ceiling(level, run_all);
            for (k, (g, b)) in got.iter().zip(&best).enumerate() {
                for (i, (x, y)) in g.iter().zip(b).enumerate() {
                    assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "level {level}, output {k}[{i}]: {x} vs {y}");
                }
            }
        }
    }
}
