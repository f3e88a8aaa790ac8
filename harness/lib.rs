//! diffscale: a benchmark and reproduction harness for the scaling claims of diffusion models.
//!
//! A claim of a paper becomes a YAML test case ([`suite`]); a run expands claims into cases,
//! runs or reuses them ([`run`]), fits and checks the results ([`fit`], [`check`]) and writes
//! reports ([`report`]). Model sizes and costs come from [`compute`].
pub mod atomic;
pub mod check;
pub mod cli;
pub mod compute;
pub mod data;
pub mod diffusion;
pub mod fit;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod report;
pub mod run;
pub mod seed;
pub mod suite;
pub mod train;

/// Keep freed memory for reuse instead of handing it back to the OS (mimalloc's `purge_delay`
/// = −1). candle allocates a fresh buffer per op; with the default 10 ms purge delay the UNet's
/// training step took 478k page faults in 10 s of benchmark (each a zeroed huge page), with
/// this 1.2k, and ran 7% faster. Costs only that the process keeps its peak memory. Call once,
/// first thing in `main`, from a binary whose global allocator is `mimalloc::MiMalloc`.
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` is entry 15 of mimalloc's `mi_option_t` (v3, the version
    // Cargo.lock pins; `MIMALLOC_VERBOSE=1` prints the options in enum order).
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: sets one integer option of the linked mimalloc; no memory is touched.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Run candle's elementwise ops on the thread that calls them, unless `CANDLE_NUM_THREADS` says
/// otherwise. candle 0.11 splits large elementwise ops over a pool of its own threads, apart
/// from rayon's, that spin for about a millisecond after each op. Parallelism comes instead
/// from the parts of each training batch (`train::train`) and diffscale's own ops, all on
/// rayon: with candle's pool also running, a DiT training step on 2 threads fell from 475 to
/// 169 samples/s (the threads fight for the cores). Call first thing in `main`.
pub fn serial_candle_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
