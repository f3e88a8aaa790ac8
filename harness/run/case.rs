//! What a running case knows about itself: its identity and seeds, its checkpoint, and where it
//! runs. Its own file so that the experiment kinds' runners (sampling.rs, training.rs) and the
//! dispatcher that calls them (experiment.rs) depend on it without depending on each other.

use crate::seed::derive_seed;

/// Who a case is: its seed, and the seeds of anything shared by every row of its replicate.
pub struct CaseCtx<'a> {
    pub suite: &'a str,
    pub claim: &'a str,
    pub replicate: u32,
    /// derive_seed(suite, claim, row, replicate).
    pub seed: u64,
    /// Where a long case keeps its checkpoint (resumed if present).
    pub checkpoint: Option<std::path::PathBuf>,
    /// The device and precision the case's models train and sample on.
    pub backend: &'a super::backend::Backend,
    /// Training loss curves the case observed, by model, for its record.
    pub curves: Curves,
}

/// Loss curves by name: (step, mean loss over the window ending there).
pub type Curves = std::sync::Mutex<std::collections::BTreeMap<String, Vec<[f64; 2]>>>;

impl<'a> CaseCtx<'a> {
    /// A seed shared by all rows of this replicate (a noise bank, a reference set), so that
    /// rows are compared on the same draws.
    pub fn seed_for(&self, what: &str) -> u64 {
        derive_seed(self.suite, self.claim, what, self.replicate)
    }

    /// The same case, drawing its evaluation banks (held-out noise, reference samples,
    /// projections) from one scope for the whole suite instead of from its claim: two claims
    /// that score the same trained model then score it on the same draws, and cannot disagree
    /// about it by evaluation noise alone.
    pub fn shared_bank(&self) -> CaseCtx<'a> {
        CaseCtx {
            suite: self.suite,
            claim: "evaluation-bank",
            replicate: self.replicate,
            seed: self.seed,
            checkpoint: None,
            backend: self.backend,
            curves: Default::default(),
        }
    }

    /// Keep `curve` (a training run's loss) for the case's record, under `name`.
    pub fn record_curve(&self, name: &str, curve: &[[f64; 2]]) {
        if let Ok(mut c) = self.curves.lock() {
            c.insert(name.to_string(), curve.to_vec());
        }
    }
}
