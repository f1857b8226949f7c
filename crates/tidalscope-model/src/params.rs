//! Inspecting and replacing parameters.

use burn::module::{Module, ModuleVisitor, Param};
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
