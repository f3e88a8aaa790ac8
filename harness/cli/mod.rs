//! The `diffscale` command line.

mod fd;
mod flops;

use crate::atomic::write_json;
use crate::check::Verdict;
use crate::models::Precision;
use crate::report::{self, compare, Summary};
use crate::run::backend::Backend;
use crate::run::judge::{judge, ClaimResult};
use crate::run::record::{CaseRecord, Machine, GIT_COMMIT, SCHEMA_VERSION, VERSION};
use crate::run::{self, Manifest, Progress, ResolvedClaim, Shard};
use crate::suite::{self, Plan, Profile};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

const ABOUT: &str = "Reproduce and regression-test the scaling claims of diffusion-model papers.

Each claim of a paper is a YAML test case (suites/*.yaml): what to run, what to fit, and the band
the result must land in. `diffscale run` runs them and writes report.md, summary.json, junit.xml
and figures. Verdicts: PASS, FAIL, INCONCLUSIVE (the interval straddles the band), SKIPPED,
ERRATUM (the paper's printed numbers contradict each other, as the suite predicts).";

const AFTER: &str = "Examples:
  diffscale run                                  every suite, default (cpu) profile, into runs/cpu
  diffscale run suites/dit2023.yaml --claim 'dit2023/table4-*'
  diffscale run --profile smoke --out /tmp/smoke
  diffscale run --shard 2/8 --out runs/nightly   then: diffscale merge runs/nightly* --out runs/all
  diffscale compare runs/cpu --baseline results/cpu/summary.json
  diffscale history nightly/*/ --out nightly-history   each claim across the nightly runs
  diffscale flops dit-xl/2
  diffscale flops sd15 --set channels=64 --set cross_attention_dim=1024
  diffscale fd --ref imagenet_stats.npz --gen samples_stats.npz

Exit status: 0 every claim passed, was skipped, inconclusive or a confirmed erratum;
1 a claim failed (or `compare` found a regression, or `history` a change in the latest run);
2 bad input or usage.";

#[derive(Parser, Debug)]
#[command(name = "diffscale", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List suites, claims and the profiles each claim runs in.
    List {
        /// Suite files or folders (default: suites/).
        paths: Vec<PathBuf>,
        /// Only claims whose id matches this glob (`*` and `?`).
        #[arg(long)]
        claim: Option<String>,
    },
    /// Run claims, resuming any finished cases in --out, and write the reports.
    Run(RunArgs),
    /// Re-render the reports of a run folder from its saved cases.
    Report {
        /// A run folder (with manifest.json and cases/).
        dir: PathBuf,
        /// Also draw each trained claim's training loss curves (figures/<claim>__loss.svg), from
        /// the curves its case records keep.
        #[arg(long)]
        loss_curves: bool,
    },
    /// Compare a run with a baseline summary.json: exit 1 on any regression.
    Compare {
        /// A run folder, or its summary.json.
        run: PathBuf,
        /// The baseline summary.json (e.g. a committed results/cpu/summary.json).
        #[arg(long)]
        baseline: PathBuf,
        /// Relative tolerance for values without an interval.
        #[arg(long, default_value_t = 1e-6)]
        rel: f64,
        /// Absolute tolerance for values without an interval.
        #[arg(long, default_value_t = 1e-12)]
        abs: f64,
        /// text (one line per finding), json (the findings), or junit (a test case per claim,
        /// failed when it regressed).
        #[arg(long, default_value = "text", value_parser = ["text", "json", "junit"])]
        format: String,
    },
    /// Join run folders into one and report it: shards of one run, or runs of different suites
    /// (e.g. the GPU's and the CPU cores' halves of the gpu profile). Fails on missing or
    /// duplicated cases, and on a claim planned differently in two folders.
    Merge {
        /// Shard run folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Join shards that ran where results have different bits (another CPU instruction set,
        /// GPU, driver, precision or compiler); each record keeps its own machine facts.
        #[arg(long)]
        allow_mixed_machines: bool,
        /// Exit 0 even when a claim FAILs (for CI where `compare` is the gate).
        #[arg(long)]
        no_fail_exit: bool,
    },
    /// Each claim's headline value, interval and band across runs (say, nightly ones): a
    /// figure per claim and a page in --out, and per claim the first run that left its band or
    /// changed verdict. Exit 1 when the latest run did.
    History {
        /// Run folders (or their summary.json), in any order: they are ordered by when each
        /// run was written.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Follow runs whose machines give different bits (another GPU, driver, precision, …).
        #[arg(long)]
        allow_mixed_machines: bool,
    },
    /// Parameters and compute of a model config, in every convention.
    Flops(flops::FlopsArgs),
    /// Fréchet distance between two feature sets: pytorch-fid / ADM .npz statistics, or samples.
    Fd(fd::FdArgs),
    /// Print the JSON Schema of suite files (for editor validation and completion).
    Schema,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Suite files or folders (default: suites/).
    pub paths: Vec<PathBuf>,
    /// Only claims whose id matches this glob (`*` and `?`), e.g. 'mei2024/*'.
    #[arg(long)]
    pub claim: Option<String>,
    /// Scale of the run: smoke (seconds), cpu (minutes), gpu (two ~5-minute parts on one GPU
    /// machine: scripts/gpu-profile.sh), paper (the papers' settings; skipped where no single
    /// machine runs them). `--dry-run` estimates any of them.
    #[arg(long, default_value = "cpu", value_parser = parse_profile)]
    pub profile: Profile,
    /// Run folder (default: runs/<profile>). Finished cases found there are reused.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only shard i of n (1-based), or `auto` from SLURM_ARRAY_TASK_ID/COUNT; join
    /// the shards with `diffscale merge`.
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Where models train and sample: cpu, or cuda:N in a CUDA build (README, "CUDA build").
    /// Recorded in every case and its hash: a run on another device does not reuse these cases.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, or bf16 mixed precision (bf16 activations over f32 weights, optimizer and EMA; GPU
    /// only). Recorded in every case and its hash.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Replicates (seeds) per empirical case, overriding the suite. Analytic claims have one.
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Start from an empty run folder: delete its cases and figures, run everything again.
    #[arg(long)]
    pub fresh: bool,
    /// Cases run at once (default: the CPU count). Each case is single-threaded unless
    /// RAYON_NUM_THREADS says otherwise; results do not depend on this.
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Exit 0 even when a claim FAILs or a sharded case failed (bad input still exits 2): for
    /// nightly CI, where `compare` against a baseline is the gate.
    #[arg(long)]
    pub no_fail_exit: bool,
    /// Refuse to start when a claim's largest model needs more than this many GiB for its
    /// weights, gradients, AdamW moments and EMA (default: this machine's memory).
    #[arg(long, value_name = "GIB")]
    pub max_memory: Option<f64>,
    /// Print what the run would ask of the device (cases, training steps and FLOPs, network
    /// calls) and an estimate of its wall time there; run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision `{s}` (precisions: f32, bf16)"))
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s).ok_or_else(|| format!("unknown profile `{s}` (profiles: smoke, cpu, gpu, paper)"))
}

/// An error that exits with status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

fn suites_from(paths: Vec<PathBuf>) -> anyhow::Result<Vec<suite::Suite>> {
    let paths = if paths.is_empty() {
        let d = PathBuf::from("suites");
        if !d.is_dir() {
            return Err(usage(
                "no suites/ folder here: run from the diffscale checkout, or name suite files or folders",
            ));
        }
        vec![d]
    } else {
        paths
    };
    suite::load_all(&paths).map_err(|e| UsageError(e.to_string()).into())
}

/// A progress bar on a terminal, plain lines otherwise (CI logs).
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    last_claim: String,
    done: usize,
    total: usize,
    reused: usize,
}

impl Reporter {
    fn new() -> Self {
        Reporter { bar: None, last_claim: String::new(), done: 0, total: 0, reused: 0 }
    }
}

impl Progress for Reporter {
    fn start(&mut self, total: usize) {
        self.total = total;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} cases, eta {eta} {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }
    fn case(&mut self, claim: &str, _row: &str, reused: bool) {
        self.done += 1;
        self.reused += usize::from(reused);
        match &self.bar {
            Some(b) => {
                b.set_message(claim.to_string());
                b.inc(1);
            }
            None if claim != self.last_claim => eprintln!("[{}/{}] {claim}", self.done, self.total),
            None => {}
        }
        self.last_claim = claim.to_string();
    }
    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        eprintln!("{} cases: {} run, {} reused from an earlier run", self.total, self.total - self.reused, self.reused);
    }
}

fn print_results(results: &[ClaimResult]) {
    let width = results.iter().map(|r| r.id.len()).max().unwrap_or(10);
    for r in results {
        let m = match (r.measured, r.interval) {
            (Some(m), Some([a, b])) => {
                format!("{} [{}, {}]", crate::fit::fmt_num(m), crate::fit::fmt_num(a), crate::fit::fmt_num(b))
            }
            (Some(m), None) => crate::fit::fmt_num(m),
            _ => String::new(),
        };
        println!("{:<12} {:<width$}  {m}", r.verdict.label(), r.id);
        if matches!(r.verdict, Verdict::Fail | Verdict::Skipped | Verdict::Erratum | Verdict::Inconclusive) {
            if let Some(why) = &r.reason {
                let short: String = why.chars().take(220).collect();
                println!("{:<12} {:<width$}  └ {short}", "", "");
            }
        }
    }
}

fn judge_and_report(
    out: &Path,
    manifest: &Manifest,
    records: &BTreeMap<String, CaseRecord>,
) -> anyhow::Result<Summary> {
    let results: Vec<ClaimResult> = manifest.claims.iter().map(|c| judge(c, records)).collect();
    let summary = Summary::new(manifest, results);
    report::write_all(out, manifest, &summary, records)?;
    print_results(&summary.claims);
    let counts: Vec<String> = summary.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("\n{} claims: {}. Report: {}", summary.claims.len(), counts.join(", "), out.join("report.md").display());
    Ok(summary)
}

fn exit_for(summary: &Summary) -> i32 {
    i32::from(summary.worst() == Verdict::Fail)
}

fn new_manifest(profile: Profile, shard: Option<Shard>, machine: Machine, claims: Vec<ResolvedClaim>) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        diffscale_version: VERSION.into(),
        git_commit: GIT_COMMIT.into(),
        profile,
        shard,
        machine,
        claims,
    }
}

fn cmd_run(a: RunArgs) -> anyhow::Result<i32> {
    let RunArgs {
        paths,
        claim,
        profile,
        out,
        shard,
        device,
        precision,
        seeds,
        fresh,
        jobs,
        no_fail_exit,
        max_memory,
        dry_run,
    } = a;
    if dry_run {
        return cmd_dry_run(paths, claim, profile, seeds, shard, &device, jobs);
    }
    let backend = Backend::open(&device, precision).map_err(usage)?;
    if seeds == Some(0) {
        return Err(usage("--seeds must be at least 1"));
    }
    if jobs == Some(0) {
        return Err(usage("--jobs must be at least 1"));
    }
    let suites = suites_from(paths)?;
    let claims = run::plan(&suites, claim.as_deref(), profile, seeds, backend.numerics());
    if claims.is_empty() {
        return Err(usage(format!("no claim matches `{}`; see `diffscale list`", claim.unwrap_or_default())));
    }
    check_memory(&claims, max_memory)?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(profile.name()));
    let machine = backend.machine.clone();
    let manifest = new_manifest(profile, shard, machine.clone(), claims);
    if let Ok(prev) = run::read_manifest(&out) {
        if prev.profile != profile {
            return Err(usage(format!(
                "{} holds a `{}` run; use another --out for profile `{}`",
                out.display(),
                prev.profile.name(),
                profile.name()
            )));
        }
    }
    std::fs::create_dir_all(&out)
        .map_err(|e| usage(format!("{}: cannot create the run folder ({e})", out.display())))?;
    let _lock = crate::atomic::FolderLock::acquire(&out).map_err(usage)?;
    if fresh {
        // Checkpoints too: a changed harness must not resume from old training.
        for sub in ["cases", "figures", "checkpoints"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
    }
    write_json(&run::manifest_path(&out), &manifest)?;
    let mut progress = Reporter::new();
    let jobs = jobs.unwrap_or(machine.threads);
    let records = run::run_cases(&manifest.claims, &out, shard, fresh, &backend, jobs, &mut progress)?;
    if let Some(s) = shard {
        println!(
            "shard {}/{}: {} cases in {}. Join the shards with `diffscale merge DIRS… --out DIR`.",
            s.index,
            s.count,
            records.len(),
            out.display()
        );
        let failed = records.values().filter(|r| r.status == run::record::CaseStatus::Failed).count();
        return Ok(i32::from(failed > 0 && !no_fail_exit));
    }
    let summary = judge_and_report(&out, &manifest, &records)?;
    Ok(if no_fail_exit { 0 } else { exit_for(&summary) })
}

/// Refuse a plan whose largest model would not fit in memory, before anything is allocated.
fn check_memory(claims: &[ResolvedClaim], max_gib: Option<f64>) -> anyhow::Result<()> {
    let (limit, whose) = match max_gib {
        Some(g) if g > 0.0 && g.is_finite() => (g, "--max-memory"),
        Some(g) => return Err(usage(format!("--max-memory takes a positive number of GiB, not {g}"))),
        None => (machine_memory_gib().unwrap_or(16.0), "this machine's memory"),
    };
    for c in claims {
        let Plan::Run(e) = &c.plan else { continue };
        let Some((label, params)) = run::cost::largest_model(e) else { continue };
        let gib = params as f64 * run::cost::BYTES_PER_PARAM / (1u64 << 30) as f64;
        if gib > limit {
            return Err(usage(format!(
                "`{}` trains `{label}`, a model of {params} parameters: at least {gib:.3e} GiB for its weights, \
                 gradients, AdamW moments and EMA, above {whose} ({limit:.1} GiB); shrink the model, or raise \
                 --max-memory if the machine has it",
                c.id
            )));
        }
    }
    Ok(())
}

/// MemTotal from /proc/meminfo, in GiB.
fn machine_memory_gib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = text.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1u64 << 20) as f64)
}

/// `run --dry-run`: the plan's work per claim and its estimated wall time on `device`.
fn cmd_dry_run(
    paths: Vec<PathBuf>,
    claim: Option<String>,
    profile: Profile,
    seeds: Option<u32>,
    shard: Option<Shard>,
    device: &str,
    jobs: Option<usize>,
) -> anyhow::Result<i32> {
    use run::cost::DeviceModel;
    let model = match device {
        "cpu" => DeviceModel { lanes: jobs.unwrap_or(2) as f64, ..DeviceModel::CPU_CORE },
        d if d.starts_with("cuda:") => DeviceModel { lanes: jobs.unwrap_or(1) as f64, ..DeviceModel::H200_CANDLE_F32 },
        d => return Err(usage(format!("--device takes cpu or cuda:N, not `{d}`"))),
    };
    let suites = suites_from(paths)?;
    let mut claims = run::plan(&suites, claim.as_deref(), profile, seeds, Backend::cpu().numerics());
    if let Some(s) = shard {
        claims.iter_mut().for_each(|c| c.cases.retain(|pc| s.owns(&pc.case_id)));
    }
    println!("profile {}: estimated on {} ({} case(s) at once)\n", profile.name(), model.name, model.lanes);
    println!(
        "{:<52} {:>6} {:>9} {:>11} {:>8} {:>10} {:>8}",
        "claim", "cases", "steps", "train FLOPs", "calls", "call FLOPs", "est. s"
    );
    let (mut total, mut seconds) = (run::cost::Work::default(), 0.0);
    for (id, cases, w) in run::cost::plan_work(&claims) {
        let t = model.seconds(&w);
        if w.train_steps + w.calls > 0.0 {
            println!(
                "{id:<52} {cases:>6} {:>9.0} {:>11.2e} {:>8.0} {:>10.2e} {t:>8.1}",
                w.train_steps, w.train_flops, w.calls, w.call_flops
            );
        }
        total += w;
        seconds += t;
    }
    println!(
        "\n{} claim(s); {:.0} training steps, {:.2e} training FLOPs, {:.0} network calls: about {:.1} min on {}",
        claims.len(),
        total.train_steps,
        total.train_flops,
        total.calls,
        seconds / 60.0,
        model.name
    );
    Ok(0)
}

fn cmd_list(paths: Vec<PathBuf>, claim: Option<String>) -> anyhow::Result<i32> {
    let suites = suites_from(paths)?;
    println!("profiles: smoke (seconds, used by the tests), cpu (default, minutes), gpu (one GPU machine, two ~5 min parts: scripts/gpu-profile.sh), paper (the papers' settings)\n");
    for s in &suites {
        println!("{} v{}: {} ({})", s.name, s.version, s.title, s.path.display());
        for c in s.claims.iter().filter(|c| claim.as_deref().is_none_or(|g| suite::glob_match(g, &c.doc.id))) {
            let kind = c
                .plans
                .values()
                .find_map(|p| if let Plan::Run(e) = p { Some(e.kind_name()) } else { None })
                .unwrap_or("-");
            let skipped: Vec<&str> =
                c.plans.iter().filter(|(_, p)| matches!(p, Plan::Skip(_))).map(|(k, _)| k.name()).collect();
            let skip =
                if skipped.is_empty() { String::new() } else { format!(" [skipped in: {}]", skipped.join(", ")) };
            println!("  {:<42} {:<20} {}{skip}", c.doc.id, kind, c.doc.source);
        }
    }
    Ok(0)
}

fn cmd_report(dir: PathBuf, loss_curves: bool) -> anyhow::Result<i32> {
    let manifest = run::read_manifest(&dir).map_err(usage)?;
    let records = run::read_records(&dir, &manifest.claims);
    let summary = judge_and_report(&dir, &manifest, &records)?;
    if loss_curves {
        let figs = crate::report::loss_curves::write_loss_curves(&dir.join("figures"), &manifest, &records)?;
        if figs.is_empty() {
            eprintln!("note: no case in {} kept a loss curve (runs before they were recorded)", dir.display());
        }
        for (claim, f) in figs {
            println!("{claim}: {}", dir.join("figures").join(format!("{}.svg", f.stem)).display());
        }
    }
    Ok(exit_for(&summary))
}

fn read_summary(p: &Path) -> anyhow::Result<Summary> {
    let file = if p.is_dir() { p.join("summary.json") } else { p.to_path_buf() };
    let text = std::fs::read_to_string(&file).map_err(|e| usage(format!("{}: cannot read ({e})", file.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{}: not a diffscale summary.json ({e})", file.display())))
}

fn cmd_compare(run: PathBuf, baseline: PathBuf, rel: f64, abs: f64, format: &str) -> anyhow::Result<i32> {
    let (r, b) = (read_summary(&run)?, read_summary(&baseline)?);
    if r.profile != b.profile {
        eprintln!("note: comparing profile `{}` against a `{}` baseline", r.profile, b.profile);
    }
    let findings = compare::compare(&r, &b, rel, abs);
    let regressions = findings.iter().filter(|f| f.regression).count();
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "claims": b.claims.len(), "regressions": regressions, "findings": findings,
            }))?
        ),
        "junit" => print!("{}", compare::junit(&b, &findings)),
        _ => {
            for f in &findings {
                let at = f.check.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
                println!("{} {}{at}: {}", if f.regression { "REGRESSION" } else { "note      " }, f.id, f.message);
            }
            println!("{} claims compared, {regressions} regression(s).", b.claims.len());
        }
    }
    Ok(i32::from(regressions > 0))
}

fn cmd_merge(dirs: Vec<PathBuf>, out: PathBuf, allow_mixed: bool) -> anyhow::Result<i32> {
    let manifests: Vec<Manifest> =
        dirs.iter().map(|d| run::read_manifest(d).map_err(usage)).collect::<Result<_, _>>()?;
    let first = &manifests[0];
    // A case's identity apart from where it ran (its hash includes the machine's numerics).
    let identity = |c: &run::PlannedCase| (c.case_id.clone(), c.row.clone(), c.replicate, c.seed);
    for (d, m) in dirs.iter().zip(&manifests).skip(1) {
        let diff = m.machine.numerics.differences(&first.machine.numerics);
        if !diff.is_empty() && !allow_mixed {
            return Err(usage(format!(
                "{} ran where results have other bits than {} ({}); join them anyway with --allow-mixed-machines",
                d.display(),
                dirs[0].display(),
                diff.join(", ")
            )));
        }
        if m.profile != first.profile {
            return Err(usage(format!(
                "{} is a `{}` run and {} a `{}` run; merge runs of one profile",
                d.display(),
                m.profile.name(),
                dirs[0].display(),
                first.profile.name()
            )));
        }
    }
    // The union of the runs' claims: shards of one plan share all of them; runs of different
    // suites (say, one on the GPU and one on the CPU cores beside it) share none. A claim in
    // several runs must have been planned the same way in each.
    let mut claims: Vec<ResolvedClaim> = vec![];
    for (d, m) in dirs.iter().zip(&manifests) {
        for c in &m.claims {
            match claims.iter().find(|u| u.id == c.id) {
                Some(u) if u.hash != c.hash || !u.cases.iter().map(identity).eq(c.cases.iter().map(identity)) => {
                    return Err(usage(format!(
                        "{} planned `{}` from different suites or options than an earlier folder",
                        d.display(),
                        c.id
                    )));
                }
                Some(_) => {}
                None => claims.push(c.clone()),
            }
        }
    }
    let planned: BTreeMap<&str, &str> =
        claims.iter().flat_map(|c| &c.cases).map(|c| (c.case_id.as_str(), c.hash.as_str())).collect();
    let mut found: BTreeMap<String, (PathBuf, CaseRecord)> = BTreeMap::new();
    for (d, m) in dirs.iter().zip(&manifests) {
        for (_, mut r) in run::read_records(d, &m.claims) {
            // Filed under the first shard's plan; a record planned elsewhere keeps its own hash.
            let hash = planned.get(r.case_id.as_str()).map(|h| h.to_string()).unwrap_or_else(|| r.hash.clone());
            if hash != r.hash {
                r.meta.insert("planned_hash".into(), std::mem::replace(&mut r.hash, hash.clone()));
                r = r.sealed();
            }
            if let Some((other, _)) = found.get(&hash) {
                return Err(usage(format!("case {} is in both {} and {}", r.case_id, other.display(), d.display())));
            }
            found.insert(hash, (d.clone(), r));
        }
    }
    let missing: Vec<&str> = claims
        .iter()
        .flat_map(|c| &c.cases)
        .filter(|c| !found.contains_key(&c.hash))
        .map(|c| c.case_id.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(usage(format!("{} case(s) missing from every shard, e.g. {}", missing.len(), missing[0])));
    }
    let manifest = Manifest { shard: None, claims, ..first.clone() };
    std::fs::create_dir_all(out.join("cases"))?;
    let _lock = crate::atomic::FolderLock::acquire(&out).map_err(usage)?;
    write_json(&run::manifest_path(&out), &manifest)?;
    let mut records = BTreeMap::new();
    for (hash, (_, r)) in found {
        write_json(&run::record::case_path(&out, &hash), &r)?;
        records.insert(hash, r);
    }
    let summary = judge_and_report(&out, &manifest, &records)?;
    Ok(exit_for(&summary))
}

fn cmd_history(runs: Vec<PathBuf>, out: PathBuf, allow_mixed: bool) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let summaries = runs.iter().map(|p| Ok((p.clone(), read_summary(p)?))).collect::<anyhow::Result<Vec<_>>>()?;
    let h = report::history::history(summaries, allow_mixed).map_err(usage)?;
    std::fs::create_dir_all(&out).map_err(|e| usage(format!("{}: cannot create ({e})", out.display())))?;
    report::history::write(&out, &h)?;
    let mut latest = 0;
    for c in &h.claims {
        match &c.first_change {
            Some((run, what)) => {
                let flag = if c.latest_changed { "LATEST" } else { "changed" };
                println!("{flag:<8} {}: first at run {run} ({}): {what}", c.id, h.runs[*run].commit);
            }
            None => println!("steady   {}", c.id),
        }
        latest += usize::from(c.latest_changed);
    }
    println!(
        "{} claims over {} runs; {latest} changed in the latest run. Page: {} ({:.1} s)",
        h.claims.len(),
        h.runs.len(),
        out.join("index.html").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(i32::from(latest > 0))
}

fn cmd_schema() -> anyhow::Result<i32> {
    let schema = schemars::schema_for!(suite::SuiteDoc);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(0)
}

/// Run the CLI and return the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let r = match cli.command {
        Command::List { paths, claim } => cmd_list(paths, claim),
        Command::Run(a) => cmd_run(a),
        Command::Report { dir, loss_curves } => cmd_report(dir, loss_curves),
        Command::Compare { run, baseline, rel, abs, format } => cmd_compare(run, baseline, rel, abs, &format),
        Command::Merge { dirs, out, allow_mixed_machines, no_fail_exit } => {
            cmd_merge(dirs, out, allow_mixed_machines).map(|c| if no_fail_exit { 0 } else { c })
        }
        Command::History { runs, out, allow_mixed_machines } => cmd_history(runs, out, allow_mixed_machines),
        Command::Flops(a) => flops::run(a).map_err(usage),
        Command::Fd(a) => fd::run(a).map_err(usage),
        Command::Schema => cmd_schema(),
    };
    match r {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}
