//! diffscale: a benchmark and reproduction harness for the scaling claims of diffusion models.
//!
//! A claim of a paper becomes a YAML test case ([`suite`]); a run expands claims into cases,
//! runs or reuses them ([`run`]), fits and checks the results ([`fit`], [`check`]) and writes
//! reports ([`report`]). Model sizes and costs come from [`compute`].
pub mod check;
pub mod cli;
pub mod compute;
pub mod data;
pub mod diffusion;
pub mod fit;
pub mod metrics;
pub mod models;
pub mod report;
pub mod run;
pub mod suite;
pub mod train;
