//! Claim suites: YAML files, one per paper, that say what to run, fit and expect.

pub mod error;
pub mod load;
pub mod types;
pub mod validate;
pub mod yaml;

pub use error::SuiteError;
pub use load::{load_all, load_suite, Claim, Plan, Suite};
pub use types::*;

/// Shell-style glob with `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::glob_match("dit2023/*", "dit2023/table4-gflops"));
        assert!(super::glob_match("*gflops", "dit2023/table4-gflops"));
        assert!(super::glob_match("mei2024/table1-?arams", "mei2024/table1-params"));
        assert!(!super::glob_match("dit2023/*", "mei2024/table1-params"));
    }
}
