//! Loading suite files: includes, templates, profiles, typed parsing and validation.

use super::error::SuiteError;
use super::types::*;
use super::validate;
use super::yaml::{parse_file, Files, Kind, Node, Step};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a claim does in one profile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Run(Box<Experiment>),
    Skip(String),
}

/// A claim as loaded: its experiment resolved for every profile.
#[derive(Clone, Debug)]
pub struct Claim {
    pub doc: ClaimDoc,
    pub plans: BTreeMap<Profile, Plan>,
}

#[derive(Clone, Debug)]
pub struct Suite {
    pub path: PathBuf,
    pub name: String,
    pub version: u32,
    pub title: String,
    pub paper: Option<String>,
    pub bootstrap: Bootstrap,
    /// Column name → the quantity it measures, with its unit (for figures).
    pub quantities: BTreeMap<String, String>,
    pub claims: Vec<Claim>,
}

/// Deserialize `node` into `T`, mapping any error to the file position of the failing path.
pub(crate) fn typed<T: DeserializeOwned>(files: &Files, node: &Node) -> Result<T, SuiteError> {
    let json = node.to_json();
    serde_path_to_error::deserialize::<_, T>(json).map_err(|e| {
        let steps = super::yaml::steps_of(e.path());
        let (inner, msg) = super::yaml::split_inner_path(&e.inner().to_string());
        let steps: Vec<Step> = steps.into_iter().chain(inner).collect();
        // An unknown field's position is its key; any other error points at the value.
        let loc = if msg.starts_with("unknown field") { node.locate(&steps) } else { node.locate_value(&steps) };
        let at = super::yaml::path_string(&steps);
        let hint = if at.is_empty() { String::new() } else { format!(" (at `{at}`)") };
        files.error(loc, format!("{msg}{hint}"))
    })
}

/// Read the `include:` list of `root`: a string or a list of strings.
fn include_list(files: &Files, root: &Node) -> Result<Vec<(String, super::yaml::Loc)>, SuiteError> {
    let Some(inc) = root.get("include") else {
        return Ok(vec![]);
    };
    let items: Vec<&Node> = match &inc.kind {
        Kind::Str(_) => vec![inc],
        Kind::Seq(s) => s.iter().collect(),
        _ => return Err(files.error(inc.loc, "`include` must be a file name or a list of file names")),
    };
    items
        .into_iter()
        .map(|n| {
            n.as_str()
                .map(|s| (s.to_string(), n.loc))
                .ok_or_else(|| files.error(n.loc, "`include` entries must be file names"))
        })
        .collect()
}

/// File reads per suite, includes counted each time they are read: an include graph without a
/// cycle but with fan-out (each file including the next twice) would otherwise read 2ⁿ files.
const MAX_FILE_READS: usize = 256;

/// Nodes that expanding `use:` templates may produce per suite: a chain of templates each using
/// the previous one twice grows as 2ⁿ (the committed suites expand to about 30,000).
const MAX_EXPANDED_NODES: usize = 1_000_000;

/// Parse `path` and merge its includes under it (includes first, this file wins).
fn load_with_includes(files: &mut Files, path: &Path, stack: &mut Vec<PathBuf>) -> Result<Node, SuiteError> {
    let id = files.add(path.to_path_buf());
    let root = parse_file(path, id)?;
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(files.error(root.loc, "a suite file must be a mapping with `suite:`, `version:` and `claims:`"));
    }
    let mut base: Option<Node> = None;
    for (name, loc) in include_list(files, &root)? {
        let target = path.parent().unwrap_or(Path::new(".")).join(&name);
        let canon = target.canonicalize().unwrap_or(target.clone());
        if stack.contains(&canon) {
            let chain: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
            return Err(files.error(loc, format!("include cycle: {} -> {}", chain.join(" -> "), canon.display())));
        }
        if !target.exists() {
            return Err(files.error(loc, format!("included file `{}` does not exist", target.display())));
        }
        if !target.is_file() {
            return Err(files.error(loc, format!("included `{}` is not a regular file", target.display())));
        }
        if files.paths.len() >= MAX_FILE_READS {
            return Err(files.error(
                loc,
                format!(
                    "more than {MAX_FILE_READS} file reads for one suite: files that include others more than \
                     once are read exponentially often"
                ),
            ));
        }
        stack.push(canon);
        let inc = load_with_includes(files, &target, stack)?;
        stack.pop();
        base = Some(match base {
            None => inc,
            Some(b) => Node::merged(&b, &inc),
        });
    }
    let own = root.without("include");
    Ok(match base {
        Some(b) => Node::merged(&b, &own),
        None => own,
    })
}

/// Where template expansion stands: the chain of templates being expanded (to catch cycles) and
/// the nodes produced so far (to bound the size of what acyclic templates can expand into).
#[derive(Default)]
struct Expansion {
    stack: Vec<String>,
    nodes: usize,
}

/// Replace every `use: NAME` mapping by the template merged under the mapping's own keys.
fn resolve_uses(files: &Files, node: &Node, templates: &Node, ex: &mut Expansion) -> Result<Node, SuiteError> {
    ex.nodes += 1;
    if ex.nodes > MAX_EXPANDED_NODES {
        return Err(files.error(
            node.loc,
            format!(
                "expanding `use:` templates exceeds {MAX_EXPANDED_NODES} nodes here: templates that use other \
                 templates more than once grow exponentially"
            ),
        ));
    }
    let stack = &mut ex.stack;
    match &node.kind {
        Kind::Map(m) => {
            let mut base: Option<Node> = None;
            if let Some(u) = node.get("use") {
                let name = u.as_str().ok_or_else(|| files.error(u.loc, "`use` takes a template name"))?;
                if stack.iter().any(|s| s == name) {
                    return Err(files.error(u.loc, format!("template cycle: {} -> {name}", stack.join(" -> "))));
                }
                let Some(t) = templates.get(name) else {
                    let known: Vec<&str> = match &templates.kind {
                        Kind::Map(m) => m.iter().map(|(k, _, _)| k.as_str()).collect(),
                        _ => vec![],
                    };
                    return Err(files.error(u.loc, format!("unknown template `{name}` (known: {})", known.join(", "))));
                };
                stack.push(name.to_string());
                base = Some(resolve_uses(files, t, templates, ex)?);
                ex.stack.pop();
            }
            let mut out = vec![];
            for (k, kl, v) in m.iter().filter(|(k, _, _)| k != "use") {
                out.push((k.clone(), *kl, resolve_uses(files, v, templates, ex)?));
            }
            let own = Node { kind: Kind::Map(out), loc: node.loc };
            Ok(match base {
                Some(b) => Node::merged(&b, &own),
                None => own,
            })
        }
        Kind::Seq(s) => {
            let items = s.iter().map(|v| resolve_uses(files, v, templates, ex)).collect::<Result<_, _>>()?;
            Ok(Node { kind: Kind::Seq(items), loc: node.loc })
        }
        _ => Ok(node.clone()),
    }
}

/// A training sweep on the user's data: resolve its folder or file (and a feature map file of
/// its FD) against the suite file's and hash it (once per path, whatever the number of profiles
/// naming it). An error names the field it is about.
fn resolve_folder(
    plan: &mut Plan,
    suite: &Path,
    seen: &mut BTreeMap<String, (String, std::path::PathBuf)>,
) -> Result<(), (&'static str, String)> {
    let Plan::Run(e) = plan else { return Ok(()) };
    let Experiment::TrainSweep(t) = e.as_mut() else { return Ok(()) };
    let base = suite.parent().unwrap_or(Path::new("."));
    if let Some(crate::suite::FdFeatures::Projection(p)) = t.sample_fd.as_mut().map(|f| &mut f.features) {
        p.resolve(base).map_err(|e| ("sample_fd", format!("sample_fd.features.projection: {e}")))?;
    }
    t.data.resolve(base, seen).map_err(|e| ("data", e))
}

/// The experiment node of one profile: base fields with that profile's overrides merged in.
fn plan_for(files: &Files, exp: &Node, profile: Profile) -> Result<Plan, SuiteError> {
    let base = exp.without("profiles");
    let over = exp.get("profiles").and_then(|p| p.get(profile.name()));
    let node = match over {
        None => base,
        Some(o) => {
            if let Some(reason) = o.get("skip") {
                let r = reason.as_str().ok_or_else(|| files.error(reason.loc, "`skip` takes a reason in words"))?;
                if let Kind::Map(m) = &o.kind {
                    if m.len() > 1 {
                        return Err(files.error(o.loc, "a profile with `skip` takes no other fields"));
                    }
                }
                return Ok(Plan::Skip(r.to_string()));
            }
            Node::merged(&base, o)
        }
    };
    let e: Experiment = typed(files, &node)?;
    if let Some((path, msg)) = validate::experiment(&e).into_iter().next() {
        return Err(files.error(node.locate_value(&path), msg));
    }
    Ok(Plan::Run(Box::new(e)))
}

/// Load one suite file with everything it includes.
pub fn load_suite(path: &Path) -> Result<Suite, SuiteError> {
    let mut files = Files::default();
    let canon = path.canonicalize().unwrap_or(path.to_path_buf());
    let root = load_with_includes(&mut files, path, &mut vec![canon])?;
    let empty = Node { kind: Kind::Map(vec![]), loc: root.loc };
    let templates = root.get("templates").cloned().unwrap_or(empty);
    if !matches!(templates.kind, Kind::Map(_)) {
        return Err(files.error(templates.loc, "`templates` must be a mapping of name: fragment"));
    }
    let root = resolve_uses(&files, &root.without("templates"), &templates, &mut Expansion::default())?;
    let doc: SuiteDoc = typed(&files, &root)?;
    if let Some((p, msg)) = validate::suite(&doc).into_iter().next() {
        return Err(files.error(root.locate_value(&p), msg));
    }
    let claims_node = root.get("claims").expect("typed parse guarantees claims");
    let mut folders = BTreeMap::new();
    let mut claims = vec![];
    for (i, c) in doc.claims.iter().enumerate() {
        let Kind::Seq(items) = &claims_node.kind else { unreachable!("claims is a list") };
        let exp_node = items[i].get("experiment").expect("typed parse guarantees experiment");
        if let Some(p) = exp_node.get("profiles") {
            if let Kind::Map(m) = &p.kind {
                for (k, kl, _) in m {
                    if Profile::parse(k).is_none() {
                        return Err(
                            files.error(*kl, format!("unknown profile `{k}` (profiles: smoke, cpu, gpu, paper)"))
                        );
                    }
                }
            } else {
                return Err(files.error(p.loc, "`profiles` must map profile names to overrides"));
            }
        }
        let mut plans = BTreeMap::new();
        for prof in Profile::ALL {
            let mut plan = plan_for(&files, exp_node, prof)?;
            if let Err((field, msg)) = resolve_folder(&mut plan, path, &mut folders) {
                let at = [
                    Step::Key("claims".into()),
                    Step::Index(i),
                    Step::Key("experiment".into()),
                    Step::Key(field.into()),
                ];
                return Err(files.error(root.locate_value(&at), msg));
            }
            if let Plan::Run(e) = &plan {
                let claim_path = vec![Step::Key("claims".into()), Step::Index(i)];
                if let Some((p, msg)) = validate::claim_refs(c, e).into_iter().next() {
                    let full: Vec<Step> = claim_path.into_iter().chain(p).collect();
                    return Err(files.error(root.locate_value(&full), msg));
                }
            }
            plans.insert(prof, plan);
        }
        claims.push(Claim { doc: c.clone(), plans });
    }
    for i in 0..claims.len() {
        if let Err((field, msg)) = resolve_paper_panel(&mut claims, i) {
            let at =
                vec![Step::Key("claims".into()), Step::Index(i), Step::Key("paper_panel".into()), Step::Key(field)];
            return Err(files.error(root.locate_value(&at), msg));
        }
    }
    Ok(Suite {
        path: path.to_path_buf(),
        name: doc.suite,
        version: doc.version,
        title: doc.title,
        paper: doc.paper,
        bootstrap: doc.bootstrap,
        quantities: doc.quantities,
        claims,
    })
}

/// Rows and printed numbers of a claim's experiment, in a profile that runs it.
fn printed_rows(c: &Claim) -> Vec<(String, BTreeMap<String, f64>)> {
    let run =
        [Profile::Cpu, Profile::Smoke, Profile::Gpu, Profile::Paper].into_iter().find_map(|p| match &c.plans[&p] {
            Plan::Run(e) => Some(e),
            Plan::Skip(_) => None,
        });
    match run.map(|e| e.as_ref()) {
        Some(Experiment::Table(t)) => t.rows.iter().map(|r| (r.label.clone(), r.printed.clone())).collect(),
        Some(Experiment::TrainSweep(t)) => t.models.iter().map(|m| (m.label.clone(), m.printed.clone())).collect(),
        _ => vec![],
    }
}

/// Fill in claim `i`'s paper panel from the rows it names; Err: (field, why).
fn resolve_paper_panel(claims: &mut [Claim], i: usize) -> Result<(), (String, String)> {
    let Some(panel) = claims[i].doc.paper_panel.clone() else { return Ok(()) };
    let from = panel.from.clone().unwrap_or_else(|| claims[i].doc.id.clone());
    let source = claims
        .iter()
        .find(|c| c.doc.id == from)
        .ok_or(("from".to_string(), format!("no claim `{from}` in this suite")))?;
    let printed = |field: &str, col: &str| -> Result<String, (String, String)> {
        col.strip_prefix("printed.")
            .map(String::from)
            .ok_or((field.into(), format!("`{col}`: the paper's points are `printed.` columns")))
    };
    let y = printed("y", &panel.y)?;
    let x = panel.x.as_deref().map(|x| printed("x", x)).transpose()?;
    let points: Vec<PaperPoint> = printed_rows(source)
        .into_iter()
        .filter_map(|(label, p)| {
            let px = match &x {
                Some(x) => Some(*p.get(x)?),
                None => None,
            };
            Some(PaperPoint { label, x: px, y: *p.get(&y)? })
        })
        .collect();
    if points.len() < 2 {
        return Err((
            "y".into(),
            format!("`{from}` prints `{}` in {} row(s); a panel needs two", panel.y, points.len()),
        ));
    }
    if let Some(Plan::Run(e)) = claims[i].plans.get(&Profile::Cpu) {
        let cols = validate::columns(e);
        for (field, col) in [("vs", Some(&panel.vs.y)), ("vs", panel.vs.x.as_ref())] {
            if let Some(Err(m)) = col.map(|c| validate::resolve(c, &cols, false)) {
                return Err((field.into(), m));
            }
        }
    }
    if let Some(p) = claims[i].doc.paper_panel.as_mut() {
        p.points = points;
    }
    Ok(())
}

/// Suite files named by `paths`: files as given; directories scanned for `*.yaml`, skipping
/// files whose names start with `_` (include-only fragments).
pub fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut out = vec![];
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| SuiteError::at(p, 1, 1, format!("cannot read folder: {e}")))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.starts_with('_')
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(SuiteError::at(
                    p,
                    1,
                    1,
                    "no suite files (*.yaml, *.yml, not starting with `_`) in this folder".into(),
                ));
            }
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(SuiteError::at(p, 1, 1, "no such suite file or folder".into()));
        }
    }
    Ok(out)
}

/// Load every suite named by `paths`, rejecting duplicate suite names and claim ids.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Suite>, SuiteError> {
    let mut suites: Vec<Suite> = vec![];
    for f in suite_files(paths)? {
        let s = load_suite(&f)?;
        if let Some(prev) = suites.iter().find(|o| o.name == s.name) {
            return Err(SuiteError::at(
                &f,
                1,
                1,
                format!("suite `{}` is also defined in {}", s.name, prev.path.display()),
            ));
        }
        suites.push(s);
    }
    Ok(suites)
}
