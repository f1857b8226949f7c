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

use crate::norm::GradInto;
use tidalscope_core::multiversion;

/// Rows summed together before their sum is added into an accumulator: the
/// accumulators live in memory (their length is only known at run time),
/// and adding one row at a time makes every sum one chain of
/// store-to-load round trips.
const GROUP: usize = 4;

multiversion! {
    /// `acc[j] += Σ_rows x[row, j]` over rows of `acc.len()` floats (a
    /// trailing part row adds into the start of `acc`).
    pub(crate) fn add_rows(acc: &mut [f32], x: &[f32]) {
        let c = acc.len();
        let mut groups = x.chunks_exact(GROUP * c);
        for g in &mut groups {
            let (r0, r1, r2, r3) = (&g[..c], &g[c..2 * c], &g[2 * c..3 * c], &g[3 * c..4 * c]);
            for ch in 0..c {
                acc[ch] += (r0[ch] + r1[ch]) + (r2[ch] + r3[ch]);
            }
        }
        for row in groups.remainder().chunks(c) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

multiversion! {
    /// `s1[j] += Σ_rows (x[row, j] − shift[j])` and `s2[j] += Σ_rows
    /// (x[row, j] − shift[j])²` over rows of `s1.len()` floats (a trailing
    /// part row adds into the start): the two moments of one pass.
    pub(crate) fn add_shifted_moments(s1: &mut [f32], s2: &mut [f32], x: &[f32], shift: &[f32]) {
        let c = s1.len();
        let (s2, k) = (&mut s2[..c], &shift[..c]);
        let mut groups = x.chunks_exact(GROUP * c);
        for g in &mut groups {
            let (r0, r1, r2, r3) = (&g[..c], &g[c..2 * c], &g[2 * c..3 * c], &g[3 * c..4 * c]);
            for ch in 0..c {
                let (d0, d1, d2, d3) = (r0[ch] - k[ch], r1[ch] - k[ch], r2[ch] - k[ch], r3[ch] - k[ch]);
                s1[ch] += (d0 + d1) + (d2 + d3);
                s2[ch] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
            }
        }
        for row in groups.remainder().chunks(c) {
            for (ch, v) in row.iter().enumerate() {
                let d = v - k[ch];
                s1[ch] += d;
                s2[ch] += d * d;
            }
        }
    }
}

multiversion! {
    /// `y = x·scale + shift` per channel, then ReLU when `relu`, over rows
    /// of `scale.len()` floats (a trailing part row uses the start of the
    /// parameters).
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
        // A trailing part row (`scale` may hold several rows' channels).
        let whole = x.len() / c * c;
        for (ch, (yv, xv)) in y[whole..].iter_mut().zip(&x[whole..]).enumerate() {
            let t = xv * scale[ch] + shift[ch];
            *yv = if relu { t.max(0.0) } else { t };
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

/// The output gradient `dy` zeroed where the forward pass's ReLU was off
/// (its own test: `x·scale + shift > 0`).
#[inline(always)]
fn masked(x: f32, dy: f32, scale: f32, shift: f32, relu: bool) -> f32 {
    if !relu || x * scale + shift > 0.0 {
        dy
    } else {
        0.0
    }
}

multiversion! {
    /// BatchNorm-ReLU backward, first pass: with g = dy masked where the
    /// ReLU was off, `ag += Σ g` and `agd += Σ g·(x − mean)` (times
    /// inv_std that is Σ g·x̂), over rows of `ag.len()` floats (a trailing
    /// part row adds into the start). The mask is the forward pass's own
    /// test, `x·scale + shift > 0`.
    pub(crate) fn bn_grad_sums(
        ag: &mut [f32],
        agd: &mut [f32],
        x: &[f32],
        dy: &[f32],
        mean: &[f32],
        scale: &[f32],
        shift: &[f32],
        relu: bool,
    ) {
        let c = ag.len();
        let (agd, m, sc, sh) = (&mut agd[..c], &mean[..c], &scale[..c], &shift[..c]);
        let dy = &dy[..x.len()];
        let mut xs = x.chunks_exact(GROUP * c);
        let mut gs = dy.chunks_exact(GROUP * c);
        for (xg, gg) in (&mut xs).zip(&mut gs) {
            let (x0, x1, x2, x3) = (&xg[..c], &xg[c..2 * c], &xg[2 * c..3 * c], &xg[3 * c..4 * c]);
            let (g0, g1, g2, g3) = (&gg[..c], &gg[c..2 * c], &gg[2 * c..3 * c], &gg[3 * c..4 * c]);
            for ch in 0..c {
                let (k, s, t) = (m[ch], sc[ch], sh[ch]);
                let (a0, a1) = (masked(x0[ch], g0[ch], s, t, relu), masked(x1[ch], g1[ch], s, t, relu));
                let (a2, a3) = (masked(x2[ch], g2[ch], s, t, relu), masked(x3[ch], g3[ch], s, t, relu));
                ag[ch] += (a0 + a1) + (a2 + a3);
                agd[ch] += (a0 * (x0[ch] - k) + a1 * (x1[ch] - k)) + (a2 * (x2[ch] - k) + a3 * (x3[ch] - k));
            }
        }
        for (xr, gr) in xs.remainder().chunks(c).zip(gs.remainder().chunks(c)) {
            for (ch, (xv, gv)) in xr.iter().zip(gr).enumerate() {
                let g = masked(*xv, *gv, sc[ch], sh[ch], relu);
                ag[ch] += g;
                agd[ch] += g * (xv - m[ch]);
            }
        }
    }
}

multiversion! {
    /// BatchNorm-ReLU backward, second pass: `v = scale·(g − mean_g − x̂·mean_gx)`
    /// with scale = γ·inv_std and x̂ = (x − mean)·inv_std (g as in
    /// [`bn_grad_sums`]), put into `dx` as `into` says, over rows of
    /// `scale.len()` floats (a trailing part row uses the start of the
    /// parameters).
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
        into: GradInto<'_>,
    ) {
        let p = [mean, inv_std, scale, shift, mean_g, mean_gx];
        match into {
            GradInto::Write => input_grad_rows(dx, x, dy, dy, p, relu, |_, v, _| v),
            GradInto::Add => input_grad_rows(dx, x, dy, dy, p, relu, |d, v, _| d + v),
            GradInto::Plus(r) => {
                assert_eq!(r.len(), dx.len(), "a BatchNorm input gradient plus another of another length");
                input_grad_rows(dx, x, dy, r, p, relu, |_, v, r| v + r)
            }
        }
    }
}

/// [`bn_input_grad`]'s loop: `dx = put(dx, v, r)` element by element (`r`
/// is read only where `put` uses it; the callers that need none pass
/// `dy`). Inlined into each instruction-set variant.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_grad_rows(
    dx: &mut [f32],
    x: &[f32],
    dy: &[f32],
    r: &[f32],
    [mean, inv_std, scale, shift, mean_g, mean_gx]: [&[f32]; 6],
    relu: bool,
    put: impl Fn(f32, f32, f32) -> f32,
) {
    let c = scale.len();
    let (m, s, sh, mg, mgx) = (&mean[..c], &inv_std[..c], &shift[..c], &mean_g[..c], &mean_gx[..c]);
    let one = |d: &mut f32, x: f32, dy: f32, r: f32, ch: usize| {
        let g = masked(x, dy, scale[ch], sh[ch], relu);
        let v = scale[ch] * (g - mg[ch] - (x - m[ch]) * s[ch] * mgx[ch]);
        *d = put(*d, v, r);
    };
    let rows = dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)).zip(r.chunks_exact(c));
    for (((dr, xr), gr), rr) in rows {
        let (dr, xr, gr, rr) = (&mut dr[..c], &xr[..c], &gr[..c], &rr[..c]);
        for ch in 0..c {
            one(&mut dr[ch], xr[ch], gr[ch], rr[ch], ch);
        }
    }
    let whole = x.len() / c * c;
    let tail = dx[whole..].iter_mut().zip(&x[whole..]).zip(&dy[whole..]).zip(&r[whole..]);
    for (ch, (((d, xv), gv), rv)) in tail.enumerate() {
        one(d, *xv, *gv, *rv, ch);
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
        let mut acc2 = v(8, c);
        add_shifted_moments(&mut acc, &mut acc2, &x, &mean);
        out.extend([acc, acc2]);
        for relu in [false, true] {
            let mut y = vec![0.0; rows * c];
            affine_rows(&mut y, &x, &scale, &shift, relu);
            out.push(y.clone());
            bias_rows(&mut y, &shift, relu);
            out.push(y);
            let (mut ag, mut agd) = (v(8, c), v(9, c));
            bn_grad_sums(&mut ag, &mut agd, &x, &dy, &mean, &scale, &shift, relu);
            out.extend([ag.clone(), agd.clone()]);
            let r = v(16, rows * c);
            for into in [GradInto::Write, GradInto::Add, GradInto::Plus(&r)] {
                let mut dx = v(10, rows * c);
                bn_input_grad(&mut dx, &x, &dy, &mean, &inv, &scale, &shift, &ag, &agd, relu, into);
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

    /// The row kernels against their definitions, channel by channel, with
    /// parameters that hold two rows' channels (as `norm` tiles narrow
    /// layers) over an odd number of rows, so the last row is a part row.
    #[test]
    fn row_kernels_match_their_definitions_with_tiled_parameters_and_part_rows() {
        let (c, rows) = (3, 13);
        let v =
            |k: usize, n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7 + k * 13) % 23) as f32 * 0.17 - 1.7).collect() };
        let (x, dy) = (v(1, rows * c), v(2, rows * c));
        let (mean, inv, scale, shift, mg, mgx) = (v(3, c), v(4, c), v(5, c), v(6, c), v(7, c), v(8, c));
        let tile = |p: &[f32]| [p, p].concat();
        let close =
            |a: f32, b: f64, what: &str| assert!((a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{what}: {a} vs {b}");
        // Per-channel sums of f over the rows, from the definition.
        let sum = |f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
            (0..c).map(|ch| (0..rows).map(|r| f(r, ch)).sum()).collect()
        };
        let fold = |a: &[f32]| -> Vec<f32> { (0..c).map(|ch| a[ch] + a[ch + c]).collect() };
        let mut acc = vec![0f32; 2 * c];
        add_rows(&mut acc, &x);
        let want = sum(&|r, ch| x[r * c + ch] as f64);
        fold(&acc).iter().zip(&want).for_each(|(a, b)| close(*a, *b, "add_rows"));
        let (mut s1, mut s2) = (vec![0f32; 2 * c], vec![0f32; 2 * c]);
        add_shifted_moments(&mut s1, &mut s2, &x, &tile(&mean));
        let d = |r: usize, ch: usize| (x[r * c + ch] - mean[ch]) as f64;
        fold(&s1).iter().zip(&sum(&d)).for_each(|(a, b)| close(*a, *b, "first moment"));
        fold(&s2).iter().zip(&sum(&|r, ch| d(r, ch).powi(2))).for_each(|(a, b)| close(*a, *b, "second moment"));
        for relu in [false, true] {
            let g = |r: usize, ch: usize| {
                let on = !relu || x[r * c + ch] * scale[ch] + shift[ch] > 0.0;
                if on {
                    dy[r * c + ch] as f64
                } else {
                    0.0
                }
            };
            let mut y = vec![0f32; rows * c];
            affine_rows(&mut y, &x, &tile(&scale), &tile(&shift), relu);
            for (i, yv) in y.iter().enumerate() {
                let t = (x[i] * scale[i % c] + shift[i % c]) as f64;
                close(*yv, if relu { t.max(0.0) } else { t }, "affine");
            }
            let (mut ag, mut agd) = (vec![0f32; 2 * c], vec![0f32; 2 * c]);
            bn_grad_sums(&mut ag, &mut agd, &x, &dy, &tile(&mean), &tile(&scale), &tile(&shift), relu);
            fold(&ag).iter().zip(&sum(&g)).for_each(|(a, b)| close(*a, *b, "Σ g"));
            fold(&agd)
                .iter()
                .zip(&sum(&|r, ch| g(r, ch) * d(r, ch)))
                .for_each(|(a, b)| close(*a, *b, "Σ g·(x − mean)"));
            // Written, added onto what `dx` held, and written plus `other`.
            let (held, other) = (v(9, rows * c), v(10, rows * c));
            for (into, what) in
                [(GradInto::Write, "written"), (GradInto::Add, "added"), (GradInto::Plus(&other), "plus")]
            {
                let mut dx = held.clone();
                let t = tile;
                let p = [&t(&mean), &t(&inv), &t(&scale), &t(&shift), &t(&mg), &t(&mgx)];
                bn_input_grad(&mut dx, &x, &dy, p[0], p[1], p[2], p[3], p[4], p[5], relu, into);
                for (i, dv) in dx.iter().enumerate() {
                    let (r, ch) = (i / c, i % c);
                    let xh = d(r, ch) * inv[ch] as f64;
                    let v = scale[ch] as f64 * (g(r, ch) - mg[ch] as f64 - xh * mgx[ch] as f64);
                    let base = match into {
                        GradInto::Write => 0.0,
                        GradInto::Add => held[i] as f64,
                        GradInto::Plus(o) => o[i] as f64,
                    };
                    close(*dv, base + v, &format!("input gradient, {what}"));
                }
            }
        }
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
