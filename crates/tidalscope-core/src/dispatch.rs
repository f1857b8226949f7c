//! One loop, compiled for several instruction sets, the widest the CPU
//! has chosen at run time ([`multiversion!`](crate::multiversion)).
//!
//! A default x86-64 build targets SSE2, where pixel and element-wise loops
//! run four floats at a time or, as measured, scalar. Compiling the same
//! body again with AVX2+FMA and with AVX-512 enabled lets the compiler
//! vectorise it eight or sixteen wide, and one binary still runs on every
//! x86-64 CPU. Rust never fuses a multiply and an add on its own, so every
//! variant of a body rounds exactly as the baseline does.

use std::sync::atomic::{AtomicU8, Ordering};

/// The widest variant allowed: 2 AVX-512, 1 AVX2, 0 the baseline.
static CEILING: AtomicU8 = AtomicU8::new(2);

/// Whether the variant of `level` (2 AVX-512, 1 AVX2, 0 baseline) may run.
#[doc(hidden)]
#[inline(always)]
pub fn allowed(level: u8) -> bool {
    CEILING.load(Ordering::Relaxed) >= level
}

/// Runs `f` with the [`multiversion!`](crate::multiversion) functions
/// capped at `level` (2 AVX-512, 1 AVX2, 0 the baseline), process-wide,
/// and restores the cap afterwards, even when `f` panics: a test hook, so
/// that tests run every variant the machine has and compare them. Tests
/// that call it may overlap; every variant gives the same results, so an
/// overlap costs only speed.
pub fn with_ceiling<T>(level: u8, f: impl FnOnce() -> T) -> T {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            CEILING.store(self.0, Ordering::Relaxed);
        }
    }
    let _restore = Restore(CEILING.swap(level.min(2), Ordering::Relaxed));
    f()
}

/// Defines `$vis fn $name(args)` that runs `$body` compiled for the widest
/// instruction set the CPU offers (AVX-512, AVX2+FMA, or the build's
/// baseline), checked at each call. The body should take its slices cut to
/// their lengths first, so that its inner loops compile without bounds
/// checks and vectorise. The function may not be generic nor take `self`
/// or patterns; it may call generic `#[inline(always)]` helpers, which then
/// compile at each variant's width.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn __mv_imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn __mv_v4($($arg: $ty),*) $(-> $ret)? { __mv_imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn __mv_v3($($arg: $ty),*) $(-> $ret)? { __mv_imp($($arg),*) }
                if $crate::dispatch::allowed(2)
                    && ::std::is_x86_feature_detected!("avx512f")
                    && ::std::is_x86_feature_detected!("avx2")
                    && ::std::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked).
                    return unsafe { __mv_v4($($arg),*) };
                }
                if $crate::dispatch::allowed(1)
                    && ::std::is_x86_feature_detected!("avx2")
                    && ::std::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA (checked).
                    return unsafe { __mv_v3($($arg),*) };
                }
            }
            __mv_imp($($arg),*)
        }
    };
}
