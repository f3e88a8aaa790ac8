//! Progressive distillation (Salimans & Ho 2022, Algorithm 2; docs/methods.md §3.2): a student
//! learns to take one DDIM step where its teacher takes two, halving the step count per round,
//! until it samples in `steps` steps.
//!
//! Per round with a 2M-step teacher grid t_0 > t_1 > … > t_2M (t_2M the final point, σ = 0), the
//! student step i goes from a = t_2i to c = t_2i+2. From x_a = α_a x0 + σ_a ε the teacher takes
//! two deterministic DDIM steps a → b → c; the student's x̂0 target is the x̃ whose single DDIM
//! step a → c lands on the teacher's x_c:
//!
//!   x̃ = (x_c − (σ_c/σ_a)·x_a) / (α_c − (σ_c/σ_a)·α_a)      (Salimans & Ho 2022, Alg. 2)
//!
//! and the loss is max(1, SNR_a)·‖x̂0_student(x_a) − x̃‖² ("truncated SNR" weighting). The
//! student starts as the teacher and becomes the next round's teacher. No EMA, as in the
//! reference configuration.

use super::{optimise_step, AdamW, Hyper};
use crate::data::Gmm;
use crate::diffusion::{x0_eps, FinalPoint, Grid, Model, PredictionType, Schedule, Spacing, Time};
use crate::models::{rows_tensor, with_values, Network};
use crate::seed::{substream, Rng};
use candle_core::{DType, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a trained model is distilled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistillSpec {
    /// The first teacher's DDIM step count: `steps` × a power of two.
    pub teacher_steps: usize,
    /// The final student's step count.
    pub steps: usize,
    /// Optimiser updates per halving (0 leaves the student untrained: a negative control).
    pub updates: u64,
    pub batch: usize,
    /// AdamW's learning rate, decayed linearly to zero within each round.
    pub learning_rate: f64,
}

impl DistillSpec {
    pub fn rounds(&self) -> u32 {
        (self.teacher_steps / self.steps.max(1)).max(1).ilog2()
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req((1..=1000).contains(&self.steps), "steps", "must be between 1 and 1000");
        let ratio_ok = self.teacher_steps > self.steps
            && self.teacher_steps.is_multiple_of(self.steps.max(1))
            && (self.teacher_steps / self.steps.max(1)).is_power_of_two();
        req(ratio_ok, "teacher_steps", "must be `steps` times a power of two (2, 4, 8, …)");
        req(self.teacher_steps <= 1000, "teacher_steps", "must be at most 1000");
        req(self.updates <= 10_000_000, "updates", "must be at most 10,000,000");
        req((1..=65_536).contains(&self.batch), "batch", "must be between 1 and 65,536");
        req(self.learning_rate > 0.0 && self.learning_rate < 1.0, "learning_rate", "must be in (0, 1)");
        e
    }

    /// Training FLOPs of the whole distillation: per update two teacher forwards and one
    /// student forward and backward, 5 forward passes (docs/methods.md §3.3), at 2 FLOPs per MAC.
    pub fn flops(&self, forward_macs: f64) -> f64 {
        self.rounds() as f64 * self.updates as f64 * self.batch as f64 * 5.0 * 2.0 * forward_macs
    }
}

/// One deterministic DDIM step from `from` to `to` given (x̂0, ε̂) (Song et al. 2021, Eq. 12, η = 0).
fn ddim(x0: &[f64], eps: &[f64], to: Time) -> Vec<f64> {
    x0.iter().zip(eps).map(|(x, e)| to.alpha * x + to.sigma * e).collect()
}

/// Distil `student` in place (it must start as a copy of the trained teacher). Returns the
/// final round's last loss.
pub fn progressive(
    student: &dyn Network,
    data: &Gmm,
    schedule: &Schedule,
    spec: &DistillSpec,
    seed: u64,
) -> Result<f64, String> {
    let err = |e: candle_core::Error| format!("distillation failed: {e}");
    let d = data.dim;
    let dev = student.params().device().clone();
    let mut last = f64::NAN;
    let mut m = spec.teacher_steps / 2;
    let mut round = 0u64;
    while m >= spec.steps && spec.updates > 0 {
        let values: Vec<Tensor> =
            student.params().vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<Result<_, _>>().map_err(err)?;
        let teacher = with_values(student, &values)?;
        let grid = Grid::new(schedule, Spacing::Trailing, 2 * m, FinalPoint::Zero);
        let at = |k: usize| if k < grid.points.len() { grid.points[k] } else { grid.end };
        let mut opt = AdamW::new(&student.params().vars).map_err(err)?;
        let mut ema = values;
        for u in 0..spec.updates {
            let base = substream(substream(seed, round), u);
            let (x0, labels) = data.sample(substream(base, 0), 0, spec.batch, None);
            let mut rng = Rng::new(substream(base, 1));
            // Rows grouped by their student step i, so the teacher sees one time per call.
            let steps: Vec<usize> = (0..spec.batch).map(|_| rng.below(m)).collect();
            let eps: Vec<f64> = (0..x0.len()).map(|_| rng.normal()).collect();
            let (mut xa, mut target, mut t_in, mut a_col, mut s_col, mut w_col, mut cls) =
                (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for i in 0..m {
                let rows: Vec<usize> = (0..spec.batch).filter(|r| steps[*r] == i).collect();
                if rows.is_empty() {
                    continue;
                }
                let (ta, tb, tc) = (at(2 * i), at(2 * i + 1), at(2 * i + 2));
                let x: Vec<f64> = rows
                    .iter()
                    .flat_map(|r| (0..d).map(move |j| (*r, j)))
                    .map(|(r, j)| ta.alpha * x0[r * d + j] + ta.sigma * eps[r * d + j])
                    .collect();
                let c: Vec<usize> = rows.iter().map(|r| labels[*r]).collect();
                let class = teacher.classes().map(|_| &c[..]);
                let step = |x: &[f64], from: Time, to: Time| {
                    let (x0h, eh) = x0_eps(teacher.prediction(), &teacher.output(x, from, class), x, from);
                    ddim(&x0h, &eh, to)
                };
                let xc = step(&step(&x, ta, tb), tb, tc);
                let r = tc.sigma / ta.sigma;
                target.extend(xc.iter().zip(&x).map(|(c, a)| (c - r * a) / (tc.alpha - r * ta.alpha)));
                let snr = (ta.alpha / ta.sigma).powi(2);
                for _ in &rows {
                    t_in.push(ta.t);
                    a_col.push(ta.alpha as f32);
                    s_col.push(ta.sigma as f32);
                    w_col.push(snr.max(1.0) as f32);
                }
                xa.extend(x);
                cls.extend(c);
            }
            let n = t_in.len();
            let col = |v: Vec<f32>| Tensor::from_vec(v, (n, 1), &dev);
            let loss = || -> candle_core::Result<Tensor> {
                let x = rows_tensor(&xa, d, &dev)?;
                let out =
                    student.forward(&x, &t_in, student.classes().map(|_| cls.as_slice()))?.to_dtype(DType::F32)?;
                let (a, s) = (col(a_col.clone())?, col(s_col.clone())?);
                let x0h = match student.prediction() {
                    PredictionType::V => (x.broadcast_mul(&a)? - out.broadcast_mul(&s)?)?,
                    PredictionType::Epsilon => (x - out.broadcast_mul(&s)?)?.broadcast_div(&a)?,
                    PredictionType::Sample => out,
                };
                let per_row = (x0h - rows_tensor(&target, d, &dev)?)?.sqr()?.mean_keepdim(1)?;
                per_row.broadcast_mul(&col(w_col.clone())?)?.mean_all()
            };
            let lr = spec.learning_rate * (1.0 - u as f64 / spec.updates as f64);
            let h = Hyper { lr, wd: 0.0, clip: 1.0, beta: 0.0 };
            last = loss().and_then(|l| optimise_step(student, &l, &mut opt, &mut ema, h)).map_err(err)?;
            if !last.is_finite() {
                return Err(format!("the distillation loss became {last} in round {} at update {u}", round + 1));
            }
        }
        m /= 2;
        round += 1;
    }
    Ok(last)
}
