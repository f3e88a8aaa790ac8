// Embeds the git commit (and whether the tree was dirty) so every result records the code
// that produced it, even when the binary runs outside the repository.
use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=DIFFSCALE_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // What else decides a result's bits, recorded beside it: the candle version (from Cargo.lock),
    // the compiler, and in a CUDA build the toolkit the kernels were compiled with.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let candle = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DIFFSCALE_CANDLE_VERSION={candle}");
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DIFFSCALE_RUSTC_VERSION={rustc}");
    let cuda = if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        run("nvcc", &["--version"])
            .and_then(|v| {
                v.lines().find_map(|l| l.split("release ").nth(1).map(|r| r.split(',').next().unwrap_or(r).to_string()))
            })
            .unwrap_or_else(|| "unknown".into())
    } else {
        "none".into()
    };
    println!("cargo:rustc-env=DIFFSCALE_CUDA_TOOLKIT={cuda}");
    println!("cargo:rerun-if-changed=Cargo.lock");
    for p in [".git/HEAD", ".git/index", ".git/refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
