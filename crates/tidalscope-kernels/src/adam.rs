//! Adam, step for step as burn 0.22's `Adam` (bias corrections folded into
//! the step size, ε scaled by √(1 − β₂ᵗ), optional L2 weight decay added to
//! the gradient), on plain parameter vectors.

/// Adam's settings (burn's defaults: β₁ 0.9, β₂ 0.999, ε 1e-5, no decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Stabiliser.
    pub epsilon: f32,
    /// L2 penalty added to the gradient (`grad + decay·param`).
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, epsilon: 1e-5, weight_decay: 0.0 }
    }
}

/// The moments of one parameter tensor (empty before its first step).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moments {
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Steps taken.
    pub time: i32,
}

impl AdamConfig {
    /// Updates `param` in place from `grad` with learning rate `lr`.
    ///
    /// # Panics
    /// If `param` and `grad` differ in length.
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut Moments) {
        assert_eq!(param.len(), grad.len(), "parameter and gradient sizes differ");
        if state.m.len() != param.len() {
            *state = Moments { m: vec![0.0; param.len()], v: vec![0.0; param.len()], time: 0 };
        }
        state.time += 1;
        let bc2 = (1.0 - self.beta2.powi(state.time)).sqrt();
        let factor = bc2 / (1.0 - self.beta1.powi(state.time));
        let eps = self.epsilon * bc2;
        let (b1, b2, wd) = (self.beta1, self.beta2, self.weight_decay);
        crate::simd::adam_update(param, grad, &mut state.m, &mut state.v, b1, b2, wd, lr, factor, eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_move_each_weight_by_about_the_learning_rate_against_its_gradient() {
        let cfg = AdamConfig::default();
        let mut p = vec![1.0f32, -2.0, 0.5];
        let g = [0.3f32, -4.0, 1e-3];
        let mut s = Moments::default();
        cfg.step(0.01, &mut p, &g, &mut s);
        // Step 1: m̂/√v̂ = sign(g) (up to ε), whatever the gradient's size.
        for (after, before, g) in [(p[0], 1.0, 0.3f32), (p[1], -2.0, -4.0), (p[2], 0.5, 1e-3)] {
            let want = before - 0.01 * g / (g.abs() + 1e-5);
            assert!((after - want).abs() < 1e-6, "{after} vs {want}");
        }
        // Weight decay pulls towards zero when the gradient is zero.
        let cfg = AdamConfig { weight_decay: 0.1, ..cfg };
        let mut q = vec![2.0f32];
        cfg.step(0.01, &mut q, &[0.0], &mut Moments::default());
        assert!(q[0] < 2.0);
    }
}
