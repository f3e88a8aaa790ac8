//! The `diffscale` binary: see `diffscale --help`.

// candle allocates a fresh buffer per op; with glibc's allocator a third of a training step
// went to page faults (docs/methods.md §7.4). mimalloc reuses memory instead.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    diffscale::keep_freed_memory();
    // The models trained here are small: waking rayon's workers for every matmul cost more than
    // it gave (the MLP family trained 2× faster on 1 thread than on 2, with identical results).
    // RAYON_NUM_THREADS still overrides.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    diffscale::serial_candle_elementwise();
    std::process::exit(diffscale::cli::main());
}
