//! Flushing denormal floats to zero on the threads that train and infer.
//!
//! A float below 1.2e-38 in magnitude (denormal, or subnormal) costs the
//! x86 vector units a microcode assist on every operation that reads or
//! makes one, tens of times the normal cost. Fine-tuning drives some
//! gradients there: in an 8-epoch `finetune --distill 8000` run, epochs
//! 5–8 took 18–25 s instead of 8 s, three quarters of the samples in the
//! matrix-product kernel, until the threads flushed denormals (the whole
//! run 125 s → 56 s, the same losses to the printed digit). TensorFlow
//! sets the same flags on its compute threads by default.
//!
//! On x86-64, [`flush_denormals`] sets the calling thread's MXCSR
//! flush-to-zero (results) and denormals-are-zero (inputs) bits. It is
//! called once at the start of the command line's `main`, before any
//! arithmetic, and on every thread of its rayon pools. Pools made later to
//! share out work (the kernels' trainer runs views side by side on pools
//! of its own) copy the rule of the thread that made them, read with
//! [`flushing`], so that their results are that thread's. On other
//! architectures it does nothing. Values that small carry nothing a model
//! or a statistic here can use.

/// MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

/// The calling thread's SSE control and status register.
#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr writes the thread's SSE control register into a
    // valid pointer to a local.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

/// Makes the calling thread treat denormal floats as zero, both as inputs
/// and as results (x86-64; a no-op on other architectures). Returns whether
/// it did.
pub fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = mxcsr() | FTZ_DAZ;
        // SAFETY: ldmxcsr reads the thread's SSE control register from a
        // valid pointer to a local; only the two denormal bits change, and
        // it runs before the thread's numeric work.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the calling thread treats denormal floats as zero (both bits
/// of [`flush_denormals`] set): threads that take over its work set the
/// same, so that their results are its results, bit for bit.
pub fn flushing() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        mxcsr() & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn a_flushing_thread_treats_denormals_as_zero_and_others_do_not() {
        let tiny = black_box(1e-40f32);
        assert!(tiny > 0.0 && !tiny.is_normal());
        // A fresh thread keeps the default environment: denormals work.
        let plain =
            std::thread::spawn(move || (black_box(tiny) * black_box(1.0f32), f32::MIN_POSITIVE * black_box(0.5)))
                .join()
                .unwrap();
        assert_eq!(plain, (1e-40, f32::MIN_POSITIVE / 2.0));
        let flushed = std::thread::spawn(move || {
            let did = flush_denormals();
            (did, black_box(tiny) * black_box(1.0f32), f32::MIN_POSITIVE * black_box(0.5), 1.5f32 * black_box(2.0))
        })
        .join()
        .unwrap();
        let reads = std::thread::spawn(|| (flushing(), flush_denormals(), flushing())).join().unwrap();
        assert_eq!(reads, (false, flushed.0, flushed.0), "flushing() reads the thread's state");
        if flushed.0 {
            // Denormal input read as 0; a denormal result made 0; normal
            // numbers untouched.
            assert_eq!((flushed.1, flushed.2, flushed.3), (0.0, 0.0, 3.0));
        }
    }
}
