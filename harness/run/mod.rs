//! Running claims: plan cases, run (or reuse) them, and gather their records.
//!
//! A run directory holds `manifest.json` (the resolved claims and their expected cases),
//! `cases/<hash>.json` (one record per case, written atomically), and the reports. Re-running
//! the same command reuses every finished case whose content hash matches and re-runs failed
//! or missing ones, so a killed run loses at most the cases that were in flight.

pub mod backend;
pub mod case;
pub mod cost;
pub mod experiment;
pub mod judge;
pub mod record;
pub mod sampling;
pub mod training;

use crate::suite::{glob_match, Bootstrap, Check, Experiment, FitSpec, Plan, Profile, Suite};
use record::{CaseRecord, CaseStatus, Machine};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A claim resolved for one profile, with the cases it expands into.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResolvedClaim {
    pub id: String,
    pub suite: String,
    pub suite_version: u32,
    pub suite_title: String,
    pub claim: String,
    pub source: String,
    pub profile: Profile,
    pub plan: Plan,
    pub fit: Option<FitSpec>,
    pub expect: Vec<Check>,
    pub bootstrap: Bootstrap,
    /// The paper's points to draw beside this claim's, resolved from the suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_panel: Option<crate::suite::PaperPanel>,
    /// Column name → quantity and unit, from the suite (for the figures' axes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantities: BTreeMap<String, String>,
    /// Content hash of everything above.
    pub hash: String,
    pub cases: Vec<PlannedCase>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedCase {
    pub case_id: String,
    pub hash: String,
    pub row: String,
    pub replicate: u32,
    pub seed: u64,
}

fn hash_json(v: &serde_json::Value) -> String {
    // serde_json's default map is ordered by key, so this text is canonical.
    blake3::hash(v.to_string().as_bytes()).to_hex()[..32].to_string()
}

/// Resolve the selected claims of `suites` for `profile` and expand their cases.
/// `numerics` (where the cases will run) is part of each case's content hash: a case is reused
/// only by a run that would compute the same bits.
pub fn plan(
    suites: &[Suite],
    claim_glob: Option<&str>,
    profile: Profile,
    seeds: Option<u32>,
    numerics: &record::Numerics,
) -> Vec<ResolvedClaim> {
    let mut out = vec![];
    for s in suites {
        for c in &s.claims {
            if claim_glob.is_some_and(|g| !glob_match(g, &c.doc.id)) {
                continue;
            }
            let plan = c.plans[&profile].clone();
            let mut rc = ResolvedClaim {
                id: c.doc.id.clone(),
                suite: s.name.clone(),
                suite_version: s.version,
                suite_title: s.title.clone(),
                claim: c.doc.claim.clone(),
                source: c.doc.source.clone(),
                profile,
                plan,
                fit: c.doc.fit.clone(),
                expect: c.doc.expect.clone(),
                bootstrap: s.bootstrap.clone(),
                quantities: s.quantities.clone(),
                paper_panel: c.doc.paper_panel.clone(),
                hash: String::new(),
                cases: vec![],
            };
            rc.hash = hash_json(&serde_json::to_value(&rc).expect("serializable"));
            if let Plan::Run(e) = &rc.plan {
                let analytic = e.is_analytic();
                for spec in experiment::expand(e, if analytic { None } else { seeds }) {
                    let key = format!("{}#{}", spec.row, spec.replicate);
                    let seed = crate::seed::derive_seed(&s.name, &c.doc.id, &spec.row, spec.replicate);
                    let hash = hash_json(&json!({
                        "format": record::SCHEMA_VERSION,
                        "diffscale": record::VERSION,
                        "commit": record::GIT_COMMIT,
                        "suite": s.name, "suite_version": s.version, "claim": c.doc.id,
                        "profile": profile, "kind": e.kind_name(),
                        "row": spec.row, "replicate": spec.replicate, "seed": seed,
                        "payload": spec.payload,
                        "numerics": numerics,
                    }));
                    rc.cases.push(PlannedCase {
                        case_id: format!("{}@{key}", c.doc.id),
                        hash,
                        row: spec.row,
                        replicate: spec.replicate,
                        seed,
                    });
                }
            }
            out.push(rc);
        }
    }
    out
}

/// `i/n` (1-based): this run takes the cases whose id hashes to shard i of n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parse `i/n`, or `auto` from Slurm's job-array variables (0-based task ids).
    pub fn parse(s: &str) -> Result<Shard, String> {
        if s == "auto" {
            let var = |n: &str| std::env::var(n).ok().and_then(|v| v.parse::<u32>().ok());
            return match (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
                (Some(id), Some(n)) if id < n => Ok(Shard { index: id + 1, count: n }),
                _ => Err("--shard auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (with id < count)".into()),
            };
        }
        let (i, n) = s.split_once('/').ok_or(format!("--shard takes i/n (like 2/8) or auto, not `{s}`"))?;
        let (i, n) = (i.trim().parse::<u32>(), n.trim().parse::<u32>());
        match (i, n) {
            (Ok(i), Ok(n)) if n >= 1 && (1..=n).contains(&i) => Ok(Shard { index: i, count: n }),
            _ => Err(format!("--shard takes i/n with 1 ≤ i ≤ n, not `{s}`")),
        }
    }

    /// Stable under adding or removing other cases: depends only on the case id.
    pub fn owns(&self, case_id: &str) -> bool {
        let h = blake3::hash(case_id.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        (v % self.count as u64) as u32 == self.index - 1
    }
}

/// Everything a run directory needs to be reported or merged without the suites.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub diffscale_version: String,
    pub git_commit: String,
    pub profile: Profile,
    pub shard: Option<Shard>,
    pub machine: Machine,
    pub claims: Vec<ResolvedClaim>,
}

pub fn manifest_path(out: &Path) -> PathBuf {
    out.join("manifest.json")
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let p = manifest_path(dir);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| format!("{}: cannot read ({e}); is this a diffscale run folder?", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a diffscale manifest ({e})", p.display()))
}

/// How a run reports progress.
pub trait Progress {
    fn start(&mut self, total: usize);
    fn case(&mut self, claim: &str, row: &str, reused: bool);
    fn finish(&mut self);
}

/// Run (or reuse) every case of `claims` that `shard` owns. Returns the records found.
pub fn run_cases(
    claims: &[ResolvedClaim],
    out: &Path,
    shard: Option<Shard>,
    fresh: bool,
    backend: &backend::Backend,
    jobs: usize,
    progress: &mut dyn Progress,
) -> std::io::Result<BTreeMap<String, CaseRecord>> {
    let cases_dir = out.join("cases");
    std::fs::create_dir_all(&cases_dir)?;
    crate::atomic::clean_temporaries(&cases_dir);
    let owned = |c: &PlannedCase| shard.is_none_or(|s| s.owns(&c.case_id));
    progress.start(claims.iter().flat_map(|c| &c.cases).filter(|c| owned(c)).count());
    let mut records = BTreeMap::new();
    // Reuse what is on disk; queue the rest.
    let mut pending: Vec<(&ResolvedClaim, &Experiment, &PlannedCase, experiment::CaseSpec)> = vec![];
    for claim in claims {
        let Plan::Run(exp) = &claim.plan else {
            continue;
        };
        let specs = experiment::expand(exp, Some(claim.cases.iter().map(|c| c.replicate + 1).max().unwrap_or(1)));
        for pc in claim.cases.iter().filter(|c| owned(c)) {
            if !fresh {
                if let Some(r) = record::reusable(&record::case_path(out, &pc.hash), &pc.hash, &pc.case_id) {
                    progress.case(&claim.id, &pc.row, true);
                    records.insert(pc.hash.clone(), r);
                    continue;
                }
            }
            let spec = specs
                .iter()
                .find(|s| s.row == pc.row && s.replicate == pc.replicate)
                .expect("planned from the same expansion")
                .clone();
            pending.push((claim, exp.as_ref(), pc, spec));
        }
    }
    // Cases are independent and every draw derives from the case itself, so running them on
    // several threads changes only the order they finish in, never a value.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<CaseRecord>>();
    std::thread::scope(|scope| -> std::io::Result<()> {
        for _ in 0..jobs.clamp(1, pending.len().max(1)) {
            let (tx, next, pending) = (tx.clone(), &next, &pending);
            // Each job has its own rayon pool (of RAYON_NUM_THREADS threads, 1 by default): in
            // the global pool, the jobs' parallel loops would queue behind one another.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .build()
                .map_err(std::io::Error::other)?;
            scope.spawn(move || {
                pool.install(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((claim, exp, pc, spec)) = pending.get(i) else { break };
                    let r = run_one(claim, exp, pc, spec, out, backend);
                    let written = crate::atomic::write_json(&record::case_path(out, &pc.hash), &r).map(|_| r);
                    if tx.send(written).is_err() {
                        break;
                    }
                })
            });
        }
        drop(tx);
        for r in rx {
            let r = r?;
            progress.case(&r.claim_id, &r.row, false);
            records.insert(r.hash.clone(), r);
        }
        Ok(())
    })?;
    progress.finish();
    Ok(records)
}

/// Run one case, catching panics, and make its record.
fn run_one(
    claim: &ResolvedClaim,
    exp: &Experiment,
    pc: &PlannedCase,
    spec: &experiment::CaseSpec,
    out: &Path,
    backend: &backend::Backend,
) -> CaseRecord {
    let started = record::now_unix();
    let t0 = std::time::Instant::now();
    let ctx = experiment::CaseCtx {
        suite: &claim.suite,
        claim: &claim.id,
        replicate: pc.replicate,
        seed: pc.seed,
        checkpoint: Some(out.join("checkpoints").join(format!("{}.safetensors", pc.hash))),
        backend,
        curves: Default::default(),
    };
    let result = std::panic::catch_unwind(|| experiment::execute(exp, spec, &ctx))
        .unwrap_or_else(|_| Err("the case panicked (a diffscale bug: please report it)".into()));
    let (status, reason, values) = match result {
        Ok(v) => (CaseStatus::Ok, None, v),
        Err(e) => (CaseStatus::Failed, Some(e), BTreeMap::new()),
    };
    CaseRecord {
        schema_version: record::SCHEMA_VERSION,
        diffscale_version: record::VERSION.into(),
        git_commit: record::GIT_COMMIT.into(),
        case_id: pc.case_id.clone(),
        claim_id: claim.id.clone(),
        suite_version: claim.suite_version,
        row: pc.row.clone(),
        replicate: pc.replicate,
        seed: pc.seed,
        profile: claim.profile.name().into(),
        hash: pc.hash.clone(),
        status,
        reason,
        values,
        meta: experiment::meta(exp),
        curves: ctx.curves.into_inner().unwrap_or_default(),
        machine: backend.machine.clone(),
        started_unix: started,
        seconds: t0.elapsed().as_secs_f64(),
        integrity: String::new(),
    }
    .sealed()
}

/// Read the records of `claims` from a run directory (missing ones are simply absent).
pub fn read_records(out: &Path, claims: &[ResolvedClaim]) -> BTreeMap<String, CaseRecord> {
    claims
        .iter()
        .flat_map(|c| &c.cases)
        .filter_map(|pc| {
            let r = record::read_verified(&record::case_path(out, &pc.hash))?;
            (r.hash == pc.hash).then(|| (pc.hash.clone(), r))
        })
        .collect()
}

#[cfg(test)]
mod sweep_tests;
