//! The `diffscale` binary: see `diffscale --help`.

fn main() {
    std::process::exit(diffscale::cli::main());
}
