//! The MLP denoiser family for vector data (the Gaussian-mixture suites), and its counts.
//!
//! x_t → Linear(d, w); conditioning c = MLP(sinusoidal(t)) (+ a label embedding with a null
//! class for guidance); `depth` residual blocks h ← h + W₂·SiLU(W₁·SiLU(h + c)); output
//! Linear(w, d) of SiLU(h). Width scales parameters quadratically, as width does for Mei's UNets.

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
}

fn default_freq() -> u64 {
    64
}

impl MlpConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        require(&mut e, self.data_dim >= 1, "data_dim", "must be at least 1");
        require(&mut e, self.width >= 1, "width", "must be at least 1");
        require(
            &mut e,
            self.time_features >= 2 && self.time_features.is_multiple_of(2),
            "time_features",
            "must be even and at least 2",
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
