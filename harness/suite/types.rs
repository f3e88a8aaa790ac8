//! The suite vocabulary: a closed, typed set of experiments, fits and checks.
//!
//! Unknown fields are rejected everywhere, and no YAML value is ever evaluated as code. The
//! JSON Schema that `diffscale schema` prints is generated from these types.

use crate::compute::{Category, Convention, ModelConfig};
use crate::data::DataSpec;
use crate::diffusion::{FinalPoint, Sampler, Schedule, Spacing};
use crate::metrics::Features;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A suite file as written (after `include:` and `use:` are resolved).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteDoc {
    /// Short name; every claim id starts with it (`<suite>/<name>`).
    pub suite: String,
    /// Bump on any change of meaning. Recorded in every result.
    pub version: u32,
    pub title: String,
    /// Citation of the paper the claims come from.
    #[serde(default)]
    pub paper: Option<String>,
    /// YAML files whose top-level keys this file extends; paths relative to this file.
    #[serde(default, skip_serializing)]
    pub include: Option<Vec<String>>,
    /// Named YAML fragments. Any mapping may contain `use: NAME` to start from one; its own
    /// keys override the template's.
    #[serde(default, skip_serializing)]
    pub templates: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// What a column measures, with its unit, as the figures' axes name it: column name →
    /// quantity (e.g. `fid: "FID-50K (paper Table 4)"`). Columns the harness measures itself
    /// (`excess_error`, `train_flops`, a sampler's FD, …) are named without it.
    #[serde(default)]
    pub quantities: BTreeMap<String, String>,
    pub claims: Vec<ClaimDoc>,
}

/// Resampling settings for intervals (percentile bootstrap).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    #[serde(default = "default_resamples")]
    pub resamples: u32,
    /// Two-sided confidence level of every interval.
    #[serde(default = "default_level")]
    pub level: f64,
}

fn default_resamples() -> u32 {
    2000
}
fn default_level() -> f64 {
    0.95
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: default_resamples(), level: default_level() }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDoc {
    /// Stable id `<suite>/<name>`: results, baselines and CI refer to it.
    pub id: String,
    /// The claim in words.
    pub claim: String,
    /// Where the paper makes it: table, figure or section.
    pub source: String,
    /// What to run. `profiles:` inside it overrides fields per profile, or skips the claim
    /// there with `{skip: "reason"}`.
    #[schemars(schema_with = "experiment_schema")]
    pub experiment: serde_json::Value,
    #[serde(default)]
    pub fit: Option<FitSpec>,
    /// The checks; the claim's verdict is the worst of theirs.
    pub expect: Vec<Check>,
    /// A figure of the paper's points beside this claim's, for claims that mirror a paper
    /// figure or table.
    #[serde(default)]
    pub paper_panel: Option<PaperPanel>,
}

/// The paper's points (left) beside the reproduction's (right), each relative to its own row
/// with the largest x (or its first row, when x is the rows themselves), so their shapes
/// compare although their units do not.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PaperPanel {
    /// The claim (of this suite) whose rows print the paper's points; default: this claim.
    #[serde(default)]
    pub from: Option<String>,
    /// The paper's x, a `printed.` column; absent: the rows, in order.
    #[serde(default)]
    pub x: Option<String>,
    /// The paper's quality, a `printed.` column.
    pub y: String,
    /// This claim's columns drawn beside them.
    pub vs: PanelAxes,
    /// Where the paper's points are read off a figure rather than printed: which figure, and
    /// how they were read.
    #[serde(default)]
    pub readout: Option<String>,
    /// The paper's points, filled in from `from`'s rows when the suite loads (replacing
    /// anything written here; kept in a run's manifest so its figures can be redrawn).
    #[serde(default)]
    #[schemars(skip)]
    pub points: Vec<PaperPoint>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PanelAxes {
    /// Absent: the rows, in order (as the paper's `x`).
    #[serde(default)]
    pub x: Option<String>,
    pub y: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PaperPoint {
    pub label: String,
    pub x: Option<f64>,
    pub y: f64,
}

fn experiment_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut s = g.subschema_for::<Experiment>();
    let profiles = g.subschema_for::<BTreeMap<Profile, serde_json::Value>>();
    if let Some(obj) = s.as_object_mut() {
        obj.insert(
            "description".into(),
            "What to run; `profiles: {PROFILE: {field overrides} | {skip: reason}}` is allowed too.".into(),
        );
    }
    schemars::json_schema!({ "allOf": [s, { "properties": { "profiles": profiles } }] })
}

/// The scale a run works at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Seconds; what the tests run.
    Smoke,
    /// The default: minutes on 2 CPU cores.
    Cpu,
    /// One GPU machine: two parts of about 5 minutes (scripts/gpu-profile.sh).
    Gpu,
    /// The papers' own settings.
    Paper,
}

impl Profile {
    pub const ALL: [Profile; 4] = [Profile::Smoke, Profile::Cpu, Profile::Gpu, Profile::Paper];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Cpu => "cpu",
            Profile::Gpu => "gpu",
            Profile::Paper => "paper",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What a claim runs. Each kind expands into cases; each case yields a row of named values.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Held boxed (`Plan::Run`), a few dozen per suite: the training sweep's size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Experiment {
    /// Rows of models and/or printed numbers; measures computed analytically from each model.
    Table(TableExp),
    /// Printed power laws y = a·x^b evaluated at points (given, or computed from models).
    PowerLaws(PowerLawsExp),
    /// Training FLOPs of a staged schedule set against a hardware budget.
    TrainingBudget(BudgetExp),
    /// Seeded synthetic power laws with known truth: calibrates fits, intervals and checks.
    SyntheticPowerLaw(SyntheticExp),
    /// Samplers on one Gaussian whose probability-flow map is exact: convergence orders.
    SamplerConvergence(SamplerConvergenceExp),
    /// Samplers × step counts on a Gaussian mixture, scored against true samples with a
    /// shared noise bank.
    SamplerSweep(Box<SamplerSweepExp>),
    /// A metric's null (true against true) and its power against a small blur.
    MetricNull(MetricNullExp),
    /// Train a family of models (seeded, per size) and score each against the exact denoiser.
    TrainSweep(TrainSweepExp),
    /// The coverage of every check kind's intervals, simulated on data of known truth.
    IntervalCoverage(IntervalCoverageExp),
}

impl<'de> Deserialize<'de> for Experiment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use super::yaml::{tagged, variant};
        const KINDS: [&str; 9] = [
            "table",
            "power_laws",
            "training_budget",
            "synthetic_power_law",
            "sampler_convergence",
            "sampler_sweep",
            "metric_null",
            "train_sweep",
            "interval_coverage",
        ];
        tagged(d, "kind", &KINDS, |name, v| match name {
            "table" => variant(v).map(Experiment::Table),
            "power_laws" => variant(v).map(Experiment::PowerLaws),
            "training_budget" => variant(v).map(Experiment::TrainingBudget),
            "synthetic_power_law" => variant(v).map(Experiment::SyntheticPowerLaw),
            "sampler_convergence" => variant(v).map(Experiment::SamplerConvergence),
            "sampler_sweep" => variant(v).map(|e| Experiment::SamplerSweep(Box::new(e))),
            "metric_null" => variant(v).map(Experiment::MetricNull),
            "train_sweep" => variant(v).map(Experiment::TrainSweep),
            "interval_coverage" => variant(v).map(Experiment::IntervalCoverage),
            other => unreachable!("`tagged` admits only the listed kinds, not {other}"),
        })
    }
}

impl Experiment {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Experiment::Table(_) => "table",
            Experiment::PowerLaws(_) => "power_laws",
            Experiment::TrainingBudget(_) => "training_budget",
            Experiment::SyntheticPowerLaw(_) => "synthetic_power_law",
            Experiment::SamplerConvergence(_) => "sampler_convergence",
            Experiment::SamplerSweep(_) => "sampler_sweep",
            Experiment::MetricNull(_) => "metric_null",
            Experiment::TrainSweep(_) => "train_sweep",
            Experiment::IntervalCoverage(_) => "interval_coverage",
        }
    }

    /// Analytic experiments are exact: one replicate, no seeds.
    pub fn is_analytic(&self) -> bool {
        !matches!(
            self,
            Experiment::SyntheticPowerLaw(_)
                | Experiment::SamplerSweep(_)
                | Experiment::MetricNull(_)
                | Experiment::TrainSweep(_)
        )
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableExp {
    pub rows: Vec<Row>,
    /// Columns computed from each row's model.
    #[serde(default)]
    pub measures: BTreeMap<String, Measure>,
    /// Columns computed from a row's other columns (measured or `printed.`): the product of
    /// `num` over the product of `den`, times `times` (e.g. a ratio the paper states in words).
    #[serde(default)]
    pub derived: BTreeMap<String, Derived>,
}

/// `times · Π num / Π den` of one row's columns.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    #[serde(default)]
    pub num: Vec<String>,
    #[serde(default)]
    pub den: Vec<String>,
    #[serde(default = "one")]
    pub times: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub label: String,
    #[serde(default)]
    pub model: Option<ModelConfig>,
    /// A second model: every measure of this row is `model`'s value over this one's (a pair's
    /// ratio, e.g. patch 2 against patch 4).
    #[serde(default)]
    pub per_model: Option<ModelConfig>,
    /// The paper's printed numbers for this row, by column name (cite the table in `source`).
    #[serde(default)]
    pub printed: BTreeMap<String, f64>,
}

/// A number computed from a model config.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub quantity: Quantity,
    /// How MACs become the printed number (forward, training and sampling quantities).
    #[serde(default)]
    pub convention: Convention,
    /// Count only these categories of MACs.
    #[serde(default)]
    pub only: Option<Vec<Category>>,
    /// Count only this part of the model (e.g. `backbone`, `mixer`; see `diffscale flops`).
    #[serde(default)]
    pub part: Option<String>,
    /// Report in units of this size (1e9 for G or B).
    #[serde(default = "one")]
    pub unit: f64,
    /// Divide by this constant (e.g. a baseline's printed cost).
    #[serde(default)]
    pub per: Option<f64>,
    /// Divide by this measure's value on the row with this label.
    #[serde(default)]
    pub relative_to: Option<String>,
    /// Training quantity: samples per step.
    #[serde(default)]
    pub batch: Option<f64>,
    /// Training quantity: optimizer steps; sampling quantity: sampler steps.
    #[serde(default)]
    pub steps: Option<f64>,
    /// Sampling quantity: classifier-free guidance doubles the evaluations.
    #[serde(default)]
    pub guided: bool,
    /// Divide by the same quantity over every category: with `only`, that part's share.
    #[serde(default)]
    pub of_total: bool,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Trainable parameters.
    Params,
    /// Trainable plus frozen parameters.
    ParamsWithFrozen,
    /// Forward cost of one sample.
    Forward,
    /// 3 × forward × batch × steps.
    Training,
    /// Forward × steps (× 2 when guided).
    Sampling,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PowerLawsExp {
    pub laws: Vec<Law>,
}

/// y = a · x^b as printed.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Law {
    pub name: String,
    pub a: f64,
    pub b: f64,
    /// What x is, in words and units.
    pub x_is: String,
    pub at: Vec<LawPoint>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LawPoint {
    pub label: String,
    /// x given directly (cite it in the claim's source).
    #[serde(default)]
    pub x: Option<f64>,
    /// x computed from a model.
    #[serde(default)]
    pub model: Option<ModelConfig>,
    #[serde(default)]
    pub measure: Option<Measure>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetExp {
    pub stages: Vec<Stage>,
    #[serde(default = "flops")]
    pub convention: Convention,
    pub hardware: Hardware,
}

fn flops() -> Convention {
    Convention::Flops
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub label: String,
    pub model: ModelConfig,
    pub batch: f64,
    pub steps: f64,
    /// Stages with the same group (e.g. a resolution) report their joint share of the total
    /// compute as `group_share`.
    #[serde(default)]
    pub group: Option<String>,
}

/// A training budget as published.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub gpus: f64,
    /// Dense peak of one GPU in FLOP/s at the training precision.
    pub peak_flops: f64,
    pub days: f64,
    /// Total cost in dollars, if published.
    #[serde(default)]
    pub dollars: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntervalCoverageExp {
    /// Check kinds to measure (each has a built-in scenario of known truth).
    pub checks: Vec<String>,
    pub shapes: Vec<CoverageShape>,
    /// Seeds per cell: the replicate counts the suites use.
    pub replicates: Vec<u32>,
    /// Simulated claims per row; the coverage's Monte Carlo standard error is
    /// sqrt(0.95 · 0.05 / trials).
    pub trials: u32,
    /// Coefficient of variation across seeds for the `normal` and `heavy` shapes.
    pub cv: f64,
    /// σ of ln y for the `skewed` shape.
    pub skew_sigma: f64,
    /// CVs across seeds found in the suites' case records, drawn per cell by `records`.
    #[serde(default)]
    pub record_cvs: Vec<f64>,
}

/// Every check kind with a coverage scenario (`check::coverage`).
pub const COVERAGE_KINDS: [&str; 14] = [
    "within",
    "band",
    "monotone",
    "correlation",
    "ranks_better",
    "crossover",
    "exponent",
    "ordered",
    "ratio",
    "optimum",
    "sampling_frontier",
    "equal_cost",
    "guidance_optimum",
    "gap",
];

/// One row of a coverage experiment: a check kind, a noise shape, a replicate count.
#[derive(Clone, Debug, Serialize)]
pub struct CoverageRow {
    pub label: String,
    pub kind: String,
    pub shape: CoverageShape,
    pub n: usize,
}

impl IntervalCoverageExp {
    /// The rows, in the order of the lists.
    pub fn rows(&self) -> Vec<CoverageRow> {
        let mut out = vec![];
        for kind in &self.checks {
            for shape in &self.shapes {
                for n in &self.replicates {
                    let label = format!("{kind} · {} · n={n}", shape.name());
                    out.push(CoverageRow { label, kind: kind.clone(), shape: *shape, n: *n as usize });
                }
            }
        }
        out
    }
}

/// The distribution of a metric across seeds, around its mean.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CoverageShape {
    Normal,
    Heavy,
    Skewed,
    Records,
}

impl CoverageShape {
    pub fn name(self) -> &'static str {
        match self {
            CoverageShape::Normal => "normal",
            CoverageShape::Heavy => "heavy",
            CoverageShape::Skewed => "skewed",
            CoverageShape::Records => "records",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyntheticExp {
    /// Series y = a·x^b, each observed with multiplicative log-normal noise.
    pub series: Vec<Series>,
    pub x: Vec<f64>,
    /// Standard deviation of the noise in log y.
    pub noise: f64,
    /// Independent seeded replicates per x (overridden by `--seeds`).
    pub replicates: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub name: String,
    pub a: f64,
    pub b: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplerConvergenceExp {
    /// The data: N(0, data_std²) in one dimension. The probability-flow ODE keeps
    /// x/√(α²s² + σ²) constant, so each sampler's error is exact, with no sampling noise.
    pub data_std: f64,
    pub schedule: Schedule,
    /// The grid: uniform in λ = log(α/σ) from `lambda_min` to `lambda_max`.
    pub lambda_min: f64,
    pub lambda_max: f64,
    /// Column name → sampler. Each row gives |relative error| of the output scale.
    pub samplers: BTreeMap<String, Sampler>,
    pub steps: Vec<usize>,
}

/// Where x̂0 is clamped before an update (diffusers' `clip_sample`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClipX0 {
    Off,
    /// Clamp to [−c, c].
    Symmetric(f64),
}

/// Which denoiser drives the samplers.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Denoiser {
    /// The exact E[x0 | x_t] of the data mixture: isolates the samplers' discretisation error.
    Oracle,
    /// The networks of `models`, each trained (per replicate seed) with `training`.
    Trained,
}

/// How generated samples are scored against true ones.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SampleMetric {
    /// Fréchet distance at the run's sample count.
    Fd,
    /// Fréchet distance extrapolated to infinitely many samples (Chong & Forsyth 2020).
    FdInfinity,
    /// Sliced 2-Wasserstein over 256 directions.
    SlicedWasserstein,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplerSweepExp {
    pub data: DataSpec,
    pub denoiser: Denoiser,
    pub schedule: Schedule,
    /// One grid for every sampler (docs/methods.md §2.8: the ordering depends on it).
    pub spacing: Spacing,
    pub final_point: FinalPoint,
    pub clip_x0: ClipX0,
    /// Classifier-free guidance weight (1 = none; samples are then unconditional).
    pub guidance: f64,
    /// Column name → sampler. Each row gives the metric per sampler, and `nfe_<name>`.
    pub samplers: BTreeMap<String, Sampler>,
    pub steps: Vec<usize>,
    /// Generated samples per sampler and step count (sample i starts from the bank's noise i).
    pub samples: usize,
    /// True samples in the reference set.
    pub reference_samples: usize,
    pub features: Features,
    pub metric: SampleMetric,
    /// Replicates: each has its own noise bank and reference set, shared by all rows.
    pub replicates: u32,
    /// Guidance weights to sweep (replacing `guidance`): rows become (steps, w) pairs, and every
    /// sample is prompted with a class, so `align_<sampler>` (exact alignment accuracy) joins
    /// the columns.
    #[serde(default)]
    pub guidance_sweep: Vec<f64>,
    /// With `denoiser: trained`, the networks: rows become (model, steps[, w]), with the
    /// columns `params`, `excess_error`, `cost` (per-NFE forward MACs relative to the
    /// largest model, × NFE, guidance's two evaluations counted) and `cost_uncounted` (× steps).
    #[serde(default)]
    pub models: Vec<SizedModel>,
    #[serde(default)]
    pub training: Option<crate::train::TrainSpec>,
    /// Distil every trained model progressively to `distill.steps` DDIM steps; its FD is the
    /// column `pd` in the rows at that step count (and w = 1), its cost `pd_flops` and
    /// `pd_fraction` (of the model's training FLOPs).
    #[serde(default)]
    pub distill: Option<crate::train::distill::DistillSpec>,
    /// Also distil with CoDi-lite (consistency distillation, as Mei et al. did); its FD is the
    /// column `cd` in the rows at its step count (and w = 1).
    #[serde(default)]
    pub consistency: Option<crate::train::consistency::ConsistencySpec>,
    /// Fine-tune every trained (pretrained) model on a downstream task before it is sampled
    /// (Mei et al. §3.2): rows then score the fine-tuned models; `excess_error` stays the
    /// pretrained model's, and `finetune_flops` joins the columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<Box<FineTune>>,
}

/// A downstream task and the training that fine-tunes a pretrained model on it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FineTune {
    pub task: crate::data::Task,
    /// Its prediction type and schedule must be the pretraining's.
    pub training: crate::train::TrainSpec,
}

impl SamplerSweepExp {
    /// The guidance weights rows run at (one unless swept).
    pub fn weights(&self) -> Vec<f64> {
        if self.guidance_sweep.is_empty() {
            vec![self.guidance]
        } else {
            self.guidance_sweep.clone()
        }
    }

    /// The part of a row label after the case's own label: `steps=N` or `steps=N · w=W`.
    pub fn sub_rows(&self) -> Vec<(usize, f64, String)> {
        let swept = !self.guidance_sweep.is_empty();
        self.steps
            .iter()
            .flat_map(|n| {
                self.weights().into_iter().map(move |w| {
                    let label = if swept { format!("steps={n} · w={w}") } else { format!("steps={n}") };
                    (*n, w, label)
                })
            })
            .collect()
    }

    /// Case labels: one per model (trained), else one per step count.
    pub fn case_rows(&self) -> Vec<String> {
        if self.denoiser == Denoiser::Trained {
            self.models.iter().map(|m| m.label.clone()).collect()
        } else {
            self.steps.iter().map(|n| format!("steps={n}")).collect()
        }
    }

    /// Every row of the claim's table, in order.
    pub fn rows(&self) -> Vec<String> {
        if self.denoiser == Denoiser::Trained {
            let subs = self.sub_rows();
            self.models.iter().flat_map(|m| subs.iter().map(move |s| format!("{} · {}", m.label, s.2))).collect()
        } else if self.guidance_sweep.is_empty() {
            self.case_rows()
        } else {
            self.sub_rows().into_iter().map(|s| s.2).collect()
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricNullExp {
    pub data: DataSpec,
    /// Samples per set.
    pub samples: usize,
    /// What the degraded set gets wrong.
    pub degrade: Degradation,
    pub features: Features,
    pub replicates: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSweepExp {
    /// Data with a known distribution: a Gaussian mixture (MLPs) or template images (DiT, UNet).
    pub data: DataSpec,
    /// The family: one row per model (per budget, with `budgets`).
    pub models: Vec<SizedModel>,
    pub training: crate::train::TrainSpec,
    /// Training-FLOP budgets (3 × forward FLOPs × batch × steps): every model is trained once
    /// per budget, an isoFLOP grid. Rows are then `label @ budget`, and `training.steps` must be
    /// absent.
    #[serde(default)]
    pub budgets: Vec<f64>,
    /// Held-out (x0, t, ε) triples for the excess denoising error, shared by every row.
    pub eval_samples: usize,
    /// Also draw samples from each trained model and score them by FD against the data.
    #[serde(default)]
    pub sample_fd: Option<SampleFd>,
    /// Training seeds per model.
    pub replicates: u32,
}

impl TrainSweepExp {
    /// Row labels, in order: models, or (model, budget) pairs.
    pub fn rows(&self) -> Vec<String> {
        if self.budgets.is_empty() {
            return self.models.iter().map(|m| m.label.clone()).collect();
        }
        self.models.iter().flat_map(|m| self.budgets.iter().map(move |b| Self::row(&m.label, *b))).collect()
    }

    pub fn row(label: &str, budget: f64) -> String {
        format!("{label} @ {budget:.1e}")
    }

    /// The model a row trains and its FLOP budget (none when the sweep has no budgets).
    pub fn row_model(&self, row: &str) -> Option<(&SizedModel, Option<f64>)> {
        self.models.iter().find_map(|m| {
            if self.budgets.is_empty() {
                (m.label == row).then_some((m, None))
            } else {
                self.budgets.iter().find(|b| Self::row(&m.label, **b) == row).map(|b| (m, Some(*b)))
            }
        })
    }
}

/// FD between `samples` draws of the trained model (DDIM, `steps` steps, trailing spacing) and
/// as many fresh draws of the data, in raw coordinates.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SampleFd {
    pub samples: usize,
    pub steps: usize,
    /// Clamp x̂0 to [−c, c] in every step (diffusers' `clip_sample` for pixel-space models). Near
    /// t = T the ε-to-x̂0 map divides by √ᾱ_T (about 3·10⁻⁴ for the cosine schedule), so without
    /// it a small ε error becomes a huge first x̂0.
    #[serde(default)]
    pub clip_x0: Option<f64>,
    /// The space FD is measured in (default `raw`). FD in raw values needs a covariance of
    /// values × values, which images of more than 64 × 64 pixels do not fit: give such data
    /// `random_relu` features or a `projection` of its own.
    #[serde(default, skip_serializing_if = "FdFeatures::is_raw")]
    pub features: FdFeatures,
}

/// Features for a training sweep's FD.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FdFeatures {
    #[default]
    Raw,
    /// Fixed random ReLU features drawn from `seed` (as a sampler sweep's `random_relu`).
    RandomRelu { dim: usize, seed: u64 },
    /// A linear map read from the user's file.
    Projection(Box<crate::data::ProjectionSpec>),
}

impl FdFeatures {
    pub fn is_raw(&self) -> bool {
        *self == FdFeatures::Raw
    }

    /// Features of `x` (rows of `d` values) and their width.
    pub fn apply(&self, x: &[f64], d: usize) -> Result<(Vec<f64>, usize), String> {
        match self {
            FdFeatures::Raw if d > crate::data::MAX_FD_FEATURES => Err(format!(
                "FD in raw values of {d}-value samples needs a {d} × {d} covariance: give `sample_fd.features` \
                 (random_relu, or a projection of your own) of at most {} features",
                crate::data::MAX_FD_FEATURES
            )),
            FdFeatures::Raw => Ok((x.to_vec(), d)),
            FdFeatures::RandomRelu { dim, seed } => {
                Ok(crate::metrics::Features::RandomRelu { dim: *dim, seed: *seed }.apply(x, d))
            }
            FdFeatures::Projection(p) => {
                let (w, k) = p.load(d)?;
                let out = x
                    .chunks(d)
                    .flat_map(|row| {
                        (0..k)
                            .map(|j| row.iter().enumerate().map(|(i, v)| v * w[i * k + j]).sum::<f64>())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                Ok((out, k))
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizedModel {
    pub label: String,
    /// A trainable family: `mlp`, `dit` or `unet`.
    pub model: crate::compute::ModelConfig,
    /// The paper's numbers for this model (e.g. its FID), as `printed.NAME` columns.
    #[serde(default)]
    pub printed: BTreeMap<String, f64>,
    /// `train_sweep` only: this row's `training.unmasked_fraction` (the last fraction of its
    /// steps trained without masking, MicroDiT's final stage), for comparing schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmasked_fraction: Option<f64>,
    /// `train_sweep` only: this row's `training.steps`, so that rows may differ in training
    /// samples and compute (Li et al.'s sample- against compute-efficiency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// `train_sweep` only: train on a finite set drawn from the data, possibly damaged, instead
    /// of fresh draws (Li et al.'s data quality and size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_set: Option<crate::data::TrainSet>,
    /// `train_sweep` only: caption the training samples at this density (Li et al.'s synthetic
    /// captions); the model needs classes + components labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<crate::data::Captions>,
}

impl SizedModel {
    /// The row's training: the sweep's, with its budget and this row's own settings.
    pub fn training(&self, base: &crate::train::TrainSpec, budget: Option<f64>) -> crate::train::TrainSpec {
        let mut spec = base.clone();
        if budget.is_some() {
            spec.flop_budget = budget;
        }
        if let Some(f) = self.unmasked_fraction {
            spec.unmasked_fraction = f;
        }
        if self.steps.is_some() {
            spec.steps = self.steps;
        }
        spec
    }

    /// Whether the row trains on something other than fresh draws of the data.
    pub fn own_data(&self) -> bool {
        self.train_set.is_some() || self.captions.is_some()
    }
}

/// A known defect of a "generated" set, made from the same draws as the true set it is paired
/// with.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Degradation {
    /// Every component's width × (1 + this), e.g. 0.05 for a 5% blur.
    Blur(f64),
    /// This fraction of the modes is missing (the rest reweighted).
    DropModes(f64),
}

/// A fit over the claim's rows; its outputs are `fit.exponent`, `fit.prefactor`, `fit.r2`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FitSpec {
    pub power_law: PowerLawFit,
}

/// log y = log a + b log x by least squares, with a bootstrap interval.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PowerLawFit {
    pub x: String,
    pub y: String,
}

/// One expectation. Column names are a measure (`gflops`), a printed column
/// (`printed.gflops`), a fit output (`fit.exponent`) or a derived value of the experiment.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Each row's `value` lies within `abs` or `rel` of `reference` (default: the printed
    /// column of the same name), after dividing the reference by `divide`.
    Within(WithinCheck),
    /// `of` (each row, or a single value) lies in [min, max].
    Band(BandCheck),
    /// `y` moves in `direction` as `x` grows, at every step.
    Monotone(MonotoneCheck),
    /// A rank correlation between two columns lies in [min, max].
    Correlation(CorrelationCheck),
    /// `better` ranks `y` more strongly than `than` does (|ρ| larger, bootstrap interval > 0).
    RanksBetter(RanksBetterCheck),
    /// Series `a − b` changes sign along `x`, at an x in [min, max].
    Crossover(CrossoverCheck),
    /// The power-law exponent of `y` against `x` (log-log least squares) lies in [min, max].
    Exponent(ExponentCheck),
    /// mean(num) / mean(den) over each row's replicates lies in [min, max] (a paired bootstrap
    /// over replicates; better than averaging per-replicate ratios, which Jensen biases).
    Ratio(RatioCheck),
    /// In every row the columns are strictly ordered (`decreasing`: first largest), each
    /// adjacent pair's relative gap having a paired-bootstrap interval above zero.
    Ordered(OrderedCheck),
    /// Per `group` (a training budget), the `x` (a model size) minimising `y`: the vertex of a
    /// parabola fitted to ln y against ln x. The power-law exponent of that optimum against
    /// the group value lies in [min, max], and at the smallest group the optimum lies below the
    /// largest x.
    Optimum(OptimumCheck),
    /// Rows grouped by `size` are each a model's quality-against-sampling-cost curve; each
    /// model's frontier is its best `y` at cost ≤ c. At the largest model's cheapest cost
    /// (`at: lowest`) a smaller model must beat it (Mei et al.); at its dearest cost
    /// (`at: highest`) it must beat every smaller one at any cost (DiT). The relative
    /// margin must exceed `floor`; the cost where the frontiers cross is reported.
    SamplingFrontier(FrontierCheck),
    /// The row where `target` (a distilled model's quality) exists, against the best `y` of
    /// any smaller model at cost ≤ `scale` × that row's cost: (y_small − target)/target must lie
    /// in [min, max].
    EqualCost(EqualCostCheck),
    /// The `w` minimising `y` (a parabola in ln w through the grid's best point and its
    /// neighbours) per (`within`, `across`) pair; per `within` value, the spread of ln w* over
    /// `across` values; their mean must exceed `floor` (PASS) or stay below it (FAIL).
    GuidanceOptimum(GuidanceOptimumCheck),
    /// Per pair of rows [a, b], the relative gap (y_a − y_b)/y_b; the gaps must move in
    /// `direction` along the list, each step by a paired-bootstrap interval beyond zero.
    Gap(GapCheck),
}

/// A row the paper is known to print wrongly. The row must violate the check; its verdict is
/// then ERRATUM with this explanation. If it satisfies the check, the claim FAILS: a declared
/// erratum that does not show is itself a finding.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Erratum {
    pub row: String,
    pub why: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WithinCheck {
    pub value: String,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub divide: Option<f64>,
    #[serde(default)]
    pub abs: Option<f64>,
    #[serde(default)]
    pub rel: Option<f64>,
    /// Only these rows (default: every row with both values).
    #[serde(default)]
    pub rows: Option<Vec<String>>,
    #[serde(default)]
    pub errata: Vec<Erratum>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BandCheck {
    pub of: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub rows: Option<Vec<String>>,
    #[serde(default)]
    pub errata: Vec<Erratum>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increasing,
    Decreasing,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonotoneCheck {
    pub x: String,
    pub y: String,
    pub direction: Direction,
    /// Practical significance: every step's relative change in the claimed direction must
    /// exceed this (docs/methods.md §1.4 uses 5%: "A better than B" needs both a confident and a
    /// material difference). 0 asks only for the direction.
    #[serde(default)]
    pub min_relative_change: f64,
    #[serde(default)]
    pub rows: Option<Vec<String>>,
    /// Only the rows where this column takes its largest value (e.g. `budget`: the top of an
    /// isoFLOP grid, whatever budgets the profile runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_max: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RankMethod {
    #[default]
    Spearman,
    Kendall,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorrelationCheck {
    pub x: String,
    pub y: String,
    #[serde(default)]
    pub method: RankMethod,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RanksBetterCheck {
    pub y: String,
    pub better: String,
    pub than: String,
    #[serde(default)]
    pub method: RankMethod,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrossoverCheck {
    pub x: String,
    pub a: String,
    pub b: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExponentCheck {
    pub x: String,
    pub y: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderedCheck {
    /// The row variable (for the figure's x axis).
    #[serde(default)]
    pub x: Option<String>,
    pub columns: Vec<String>,
    pub direction: Direction,
    #[serde(default)]
    pub rows: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatioCheck {
    pub num: String,
    pub den: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub rows: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimumCheck {
    pub x: String,
    pub y: String,
    pub group: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CostEnd {
    /// The largest model's cheapest point: a smaller model should win there.
    Lowest,
    /// The largest model's dearest point, where every smaller model has all its cells: the
    /// largest model should win there.
    Highest,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontierCheck {
    pub cost: String,
    pub y: String,
    /// The column that tells models apart (their size).
    pub size: String,
    pub at: CostEnd,
    /// Practical significance: the winner's relative margin must exceed this.
    #[serde(default)]
    pub floor: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EqualCostCheck {
    pub target: String,
    pub y: String,
    pub cost: String,
    pub size: String,
    /// The small models' budget, in multiples of the target row's cost (2 counts guidance's
    /// second evaluation against a distilled model that needs none).
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuidanceOptimumCheck {
    pub w: String,
    pub y: String,
    /// The variable w* should depend on (e.g. `steps`) …
    pub across: String,
    /// … for each value of this one (e.g. `params`).
    pub within: String,
    /// The smallest spread of ln w* that counts as a dependence (ln 1.25 ≈ 0.22: one step of a
    /// typical grid).
    pub floor: f64,
    /// The opposite reading: w* does not move with `across` (PASS when the spread's interval
    /// lies wholly below `floor`, FAIL when wholly above).
    #[serde(default)]
    pub independent: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GapCheck {
    pub y: String,
    /// Row pairs [a, b], in the order the gap should grow (or shrink).
    pub pairs: Vec<[String; 2]>,
    pub direction: Direction,
}
