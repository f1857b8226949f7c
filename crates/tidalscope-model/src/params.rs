//! Inspecting, replacing and averaging parameters.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// A parameter with a new value, keeping its identity (optimizer state and
/// records are keyed by the id).
pub fn replaced<const D: usize>(old: &Param<Tensor<D>>, value: Tensor<D>) -> Param<Tensor<D>> {
    let mut p = Param::from_tensor(value);
    p.id = old.id;
    p
}

/// Counts of a module's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParamCounts {
    /// Learned parameters (weights, BN γ and β).
    pub trainable: usize,
    /// BatchNorm running means and variances.
    pub running_stats: usize,
}

#[derive(Default)]
struct Counter {
    path: Vec<String>,
    counts: ParamCounts,
}

impl ModuleVisitor for Counter {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let n = p.lazy_shape().num_elements();
        // Running statistics are visited as float parameters too; they are
        // the only values under these names.
        let last = self.path.last().map(String::as_str).unwrap_or("");
        if last == "running_mean" || last == "running_var" {
            self.counts.running_stats += n;
        } else {
            self.counts.trainable += n;
        }
    }
}

/// Counts trainable parameters and BN running statistics.
pub fn count<M: Module>(m: &M) -> ParamCounts {
    let mut c = Counter::default();
    m.visit(&mut c);
    c.counts
}

/// Forces lazy parameter initialisation in field order, so a seeded device
/// gives the same weights every time.
pub fn materialize<M: Module>(m: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let _ = p.val();
        }
    }
    m.visit(&mut Touch);
}

/// The module `alpha` of the way from `start` to `end` in weight space:
/// every float value, BatchNorm running statistics included, becomes
/// `(1 − alpha)·start + alpha·end` (fine-tuning's weight-space ensemble,
/// WiSE-FT: Wortsman et al. 2022); at `alpha` 0 or 1 it is that end's
/// value exactly (even where the other is not finite). `end` keeps its
/// parameter ids.
///
/// Running statistics are read and written where they live: a running
/// state's clones share one value, so a clone of `end` kept by the caller
/// sees the mixed statistics, and both modules' pending statistics updates
/// must have been synced (as `valid()` or a fresh load leaves them).
///
/// # Errors
/// When the two modules differ in the number or shapes of their values
/// (naming the first value that differs).
pub fn interpolated<M: Module>(start: &M, end: M, alpha: f32) -> Result<M, String> {
    struct Collect {
        path: Vec<String>,
        values: Vec<(String, Vec<usize>, Tensor<1>)>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val();
            let dims = v.dims().to_vec();
            let n: usize = dims.iter().product();
            self.values.push((self.path.join("."), dims, v.reshape([n])));
        }
    }
    struct Mix {
        path: Vec<String>,
        start: std::vec::IntoIter<(String, Vec<usize>, Tensor<1>)>,
        alpha: f32,
        error: Option<String>,
    }
    impl ModuleMapper for Mix {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let end = param.val();
            let dims = end.dims();
            let here = self.path.join(".");
            match self.start.next() {
                Some((name, s, v)) if name == here && s == dims.to_vec() => {
                    let mixed = if self.alpha == 0.0 {
                        v.reshape(dims)
                    } else if self.alpha == 1.0 {
                        end
                    } else {
                        end.mul_scalar(self.alpha).add(v.reshape(dims).mul_scalar(1.0 - self.alpha))
                    };
                    param.map(|_| mixed)
                }
                other => {
                    self.error.get_or_insert_with(|| match other {
                        Some((name, s, _)) => {
                            format!("the start's {name} {s:?} meets the end's {here} {dims:?}")
                        }
                        None => format!("the end's {here} {dims:?} has no counterpart in the start"),
                    });
                    param
                }
            }
        }
    }
    let mut collect = Collect { path: Vec::new(), values: Vec::new() };
    start.visit(&mut collect);
    let mut mix = Mix { path: Vec::new(), start: collect.values.into_iter(), alpha, error: None };
    let out = end.map(&mut mix);
    match (mix.error, mix.start.next()) {
        (Some(e), _) => Err(format!("cannot interpolate between differently built modules: {e}")),
        (None, Some((name, s, _))) => {
            Err(format!("cannot interpolate: the start's {name} {s:?} has no counterpart in the end"))
        }
        (None, None) => Ok(out),
    }
}

/// The running mean of modules' values, BatchNorm running statistics
/// included (fine-tuning's average along its path: as in stochastic weight
/// averaging, Izmailov et al. 2018), built by [`interpolated`].
pub struct RunningMean<M> {
    /// The mean so far. Its running statistics are written in place, so it
    /// must share them with no other module (a fresh load, not a clone).
    mean: M,
    count: usize,
}

impl<M: Module> RunningMean<M> {
    /// The mean of `first` alone; `first` must share its running statistics
    /// with no other module (see [`interpolated`]).
    pub fn new(first: M) -> Self {
        Self { mean: first, count: 1 }
    }

    /// The mean with `m` added `times` times (each time counts as one
    /// module). `m` is only read: its pending statistics updates must have
    /// been synced, as for [`interpolated`].
    ///
    /// # Errors
    /// When `m` differs from the mean in the number or shapes of its values.
    pub fn add(mut self, m: &M, times: usize) -> Result<Self, String> {
        if times == 0 {
            return Ok(self);
        }
        self.count += times;
        let keep = (self.count - times) as f32 / self.count as f32;
        // `interpolated` mixes into its second argument: the mean.
        self.mean = interpolated(m, self.mean, keep)?;
        Ok(self)
    }

    /// How many modules the mean is over.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean.
    pub fn into_mean(self) -> M {
        self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Small {
        dense: Linear,
        norm: BatchNorm,
    }

    fn small(device: &Device) -> Small {
        Small { dense: LinearConfig::new(3, 2).init(device), norm: BatchNormConfig::new(2).init(device) }
    }

    /// Every value of `m` (running statistics included) set to `v`.
    fn filled(m: Small, v: f32) -> Small {
        struct Fill(f32);
        impl ModuleMapper for Fill {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let t = param.val().ones_like().mul_scalar(self.0);
                param.map(|_| t)
            }
        }
        m.map(&mut Fill(v))
    }

    fn values(m: &Small) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        let mut put =
            |name: &str, t: Tensor<1>| out.push((name.to_string(), t.into_data().try_to_vec::<f32>().unwrap()));
        put("weight", m.dense.weight.val().reshape([6]));
        put("bias", m.dense.bias.as_ref().unwrap().val());
        put("gamma", m.norm.gamma.val());
        put("running_mean", m.norm.running_mean.value_sync());
        put("running_var", m.norm.running_var.value_sync());
        out
    }

    #[test]
    fn interpolation_mixes_every_value_running_statistics_included() {
        let device = Device::default();
        let start = filled(small(&device), 1.0);
        for (alpha, want) in [(0.0f32, 1.0f32), (0.25, 1.5), (1.0, 3.0)] {
            let end = filled(small(&device), 3.0);
            let ids = (end.dense.weight.id, end.norm.gamma.id);
            let mixed = interpolated(&start, end, alpha).unwrap();
            for (name, v) in values(&mixed) {
                assert!(v.iter().all(|&x| (x - want).abs() < 1e-6), "α {alpha} {name}: {v:?}");
            }
            assert_eq!((mixed.dense.weight.id, mixed.norm.gamma.id), ids, "the end keeps its parameter ids");
        }
        // At either end the value is that end's, even where the other is not finite.
        let broken = filled(small(&device), f32::NAN);
        let back = interpolated(&start, broken, 0.0).unwrap();
        assert!(values(&back).iter().all(|(_, v)| v.iter().all(|&x| x == 1.0)));
        let kept = interpolated(&filled(small(&device), f32::INFINITY), filled(small(&device), 3.0), 1.0).unwrap();
        assert!(values(&kept).iter().all(|(_, v)| v.iter().all(|&x| x == 3.0)));
    }

    #[test]
    fn a_running_mean_weighs_every_module_added_alike_and_leaves_them_unchanged() {
        let device = Device::default();
        let twos = filled(small(&device), 2.0);
        let fives = filled(small(&device), 5.0);
        // (1 + 2 + 5 + 5) / 4: a module added twice counts twice.
        let mean = RunningMean::new(filled(small(&device), 1.0)).add(&twos, 1).unwrap().add(&fives, 2).unwrap();
        assert_eq!(mean.count(), 4);
        for (name, v) in values(&mean.into_mean()) {
            assert!(v.iter().all(|&x| (x - 3.25).abs() < 1e-6), "{name}: {v:?}");
        }
        for (m, want) in [(&twos, 2.0), (&fives, 5.0)] {
            assert!(values(m).iter().all(|(_, v)| v.iter().all(|&x| x == want)), "an added module was written to");
        }
        let other = Small { dense: LinearConfig::new(4, 2).init(&device), norm: BatchNormConfig::new(2).init(&device) };
        assert!(RunningMean::new(small(&device)).add(&other, 1).is_err());
    }

    #[test]
    fn interpolation_refuses_modules_of_other_shapes() {
        let device = Device::default();
        let other = Small { dense: LinearConfig::new(4, 2).init(&device), norm: BatchNormConfig::new(2).init(&device) };
        let err = interpolated(&small(&device), other, 0.5).unwrap_err();
        assert!(err.contains("start's dense.weight [3, 2]") && err.contains("end's dense.weight [4, 2]"), "{err}");
    }
}
