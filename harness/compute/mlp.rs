//! The MLP denoiser family for vector data (the Gaussian-mixture suites), and its counts.
//!
//! x_t → Linear(d, w); conditioning c = MLP(sinusoidal(t)) (+ a label embedding with a null
//! class for guidance); `depth` residual blocks h ← h + W₂·SiLU(W₁·SiLU(h + c)); output
//! Linear(w, d) of SiLU(h). Width scales parameters quadratically, as width does for Mei's UNets.
//! A conditioning vector y (optional) adds Linear(c, w)·y to the input layer's output.

use super::{require, Category, Tally};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Dimension of the data vectors.
    pub data_dim: u64,
    pub width: u64,
    /// Residual blocks (two linear layers each).
    pub depth: u64,
    /// Width of the sinusoidal timestep features.
    #[serde(default = "default_freq")]
    pub time_features: u64,
    /// Classes of the label embedding (one extra null class for guidance); none when absent.
    #[serde(default)]
    pub classes: Option<u64>,
    /// Width of a conditioning vector (a super-resolution model's low-resolution input),
    /// appended to each input row and added after the input layer through its own linear layer,
    /// which starts at zero so that a fine-tuned model starts as its pretrained one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cond_dim: Option<u64>,
}

fn default_freq() -> u64 {
    64
}

impl MlpConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        // Each field bounded so that counting stays instant and no product overflows; what is
        // still too big to train is refused by the run's memory check (`--max-memory`).
        require(&mut e, (1..=1_000_000).contains(&self.data_dim), "data_dim", "must be between 1 and 1,000,000");
        require(&mut e, (1..=1_000_000).contains(&self.width), "width", "must be between 1 and 1,000,000");
        require(&mut e, self.depth <= 10_000, "depth", "must be at most 10,000");
        require(
            &mut e,
            self.classes.is_none_or(|k| (1..=1_000_000).contains(&k)),
            "classes",
            "must be between 1 and 1,000,000",
        );
        require(
            &mut e,
            self.cond_dim.is_none_or(|c| (1..=1_000_000).contains(&c)),
            "cond_dim",
            "must be between 1 and 1,000,000",
        );
        require(
            &mut e,
            (2..=65_536).contains(&self.time_features) && self.time_features.is_multiple_of(2),
            "time_features",
            "must be even, between 2 and 65,536",
        );
        e
    }

    pub fn count(&self) -> Tally {
        use Category::*;
        let (d, w) = (self.data_dim, self.width);
        let mut c = Tally::new();
        c.part("embed");
        c.linear(OtherLinear, 1.0, self.time_features, w, true);
        c.linear(OtherLinear, 1.0, w, w, true);
        if let Some(k) = self.classes {
            c.params((k + 1) * w);
        }
        c.linear(TokenLinear, 1.0, d, w, true);
        if let Some(k) = self.cond_dim {
            c.linear(TokenLinear, 1.0, k, w, true);
        }
        c.part("blocks");
        for _ in 0..self.depth {
            c.linear(TokenLinear, 1.0, w, w, true);
            c.linear(TokenLinear, 1.0, w, w, true);
        }
        c.part("out");
        c.linear(TokenLinear, 1.0, w, d, true);
        c
    }
}
