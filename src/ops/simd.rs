//! Runtime dispatch to the widest vector extension the CPU has, for the element-wise loops of
//! the activations (issue 11). The crate is compiled for the baseline x86-64 (SSE2: 4 floats
//! per instruction); [`dispatch`] runs a closure inside a function compiled with AVX-512 or
//! AVX2 + FMA enabled, so that the compiler vectorises the inlined loop 16 or 8 floats wide.
//!
//! The numbers do not depend on the path taken: Rust never contracts `a·b + c` into a fused
//! multiply-add, so the wider instructions compute, lane by lane, exactly what the baseline ones
//! do. A hand-written dispatcher rather
//! than a crate (`pulp`, `multiversion`): the kernels are closures over generic activation code,
//! which a `#[target_feature]` wrapper serves in a dozen lines.

/// Runs `f` compiled for AVX-512 (F, BW, DQ, VL), else AVX2 + FMA, else the baseline, as the CPU
/// supports (detected once, cached by the standard library). `f` should be `#[inline(always)]`
/// code for the vectoriser to see through it.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the features the function is compiled for are present (checked above).
            return unsafe { with_avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
