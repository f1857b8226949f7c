//! `tidalscope bench …`: measured speeds, printed with what was measured.

use crate::cli::BenchSimulateArgs;
use rayon::prelude::*;
use tidalscope_sim::{SimConfig, Simulator};

/// Times the simulator: cutouts per second, all bands, in memory.
pub fn simulate(args: BenchSimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n > 0, "--n must be at least 1");
    let config = SimConfig { survey: args.survey.into(), size: args.size, ..SimConfig::default() };
    let sim = Simulator::new(config, args.n)?;
    let pool = super::thread_pool(args.jobs)?;
    let threads = pool.current_num_threads();
    // Warm-up: plan the FFTs and touch the code once per thread.
    pool.install(|| {
        (0..threads).into_par_iter().for_each_init(|| sim.renderer(), |r, i| drop(sim.simulate(i % args.n, r)))
    });
    let t0 = std::time::Instant::now();
    let checksum: f64 = pool.install(|| {
        (0..args.n)
            .into_par_iter()
            .map_init(|| sim.renderer(), |r, i| sim.simulate(i, r).image.data().iter().map(|&v| v as f64).sum::<f64>())
            .sum()
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "timed {} cutouts of 5×{}×{} ({}) on {} threads in {:.2} s (pixel sum {:.6e})",
        args.n,
        args.size,
        args.size,
        sim.survey().name,
        threads,
        secs,
        checksum
    );
    println!("simulate: {:.1} cutouts/s", args.n as f64 / secs);
    Ok(())
}
