//! YAML with source positions that survive `include:` and `use:`.
//!
//! serde-saphyr parses each file into a [`Node`] tree whose every node remembers file, line
//! and column (its `Spanned` wrapper, applied recursively through a hand-written visitor so no
//! serde buffering drops the span). Includes and templates are merged at the node level, so a
//! node keeps the position of the file that wrote it. Typed deserialization then runs on the
//! merged tree through `serde_path_to_error`, and [`Node::locate`] maps the failing path back
//! to `file:line:col`. Semantic validation reuses the same paths, so every error a user sees
//! points at the line to fix.

use super::error::SuiteError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// A source position: index into the loader's file table, 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub file: usize,
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position (for "unknown field" errors).
    Map(Vec<(String, Loc, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub loc: Loc,
}

/// One step of a path into a tree: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Step::Key(k) => write!(f, ".{k}"),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

pub fn path_string(path: &[Step]) -> String {
    let s: String = path.iter().map(|s| s.to_string()).collect();
    s.trim_start_matches('.').to_string()
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(m) => m.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The position of the deepest node along `path` (a key's own position when the path ends
    /// at a key that is present; the enclosing node otherwise).
    pub fn locate(&self, path: &[Step]) -> Loc {
        let mut node = self;
        let mut loc = self.loc;
        for step in path {
            let next = match (&node.kind, step) {
                (Kind::Map(m), Step::Key(k)) => m.iter().find(|(key, _, _)| key == k).map(|(_, kl, v)| (kl, v)),
                (Kind::Seq(s), Step::Index(i)) => s.get(*i).map(|v| (&v.loc, v)),
                _ => None,
            };
            match next {
                Some((l, v)) => {
                    loc = *l;
                    node = v;
                }
                None => break,
            }
        }
        if path.is_empty() {
            self.loc
        } else {
            loc
        }
    }

    /// The position of the value at `path` itself (rather than its key).
    pub fn locate_value(&self, path: &[Step]) -> Loc {
        let mut node = self;
        for step in path {
            let next = match (&node.kind, step) {
                (Kind::Map(_), Step::Key(k)) => node.get(k),
                (Kind::Seq(s), Step::Index(i)) => s.get(*i),
                _ => None,
            };
            match next {
                Some(v) => node = v,
                None => return self.locate(path),
            }
        }
        node.loc
    }

    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(s) => Value::Array(s.iter().map(Node::to_json).collect()),
            Kind::Map(m) => Value::Object(m.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    fn set_file(&mut self, file: usize) {
        self.loc.file = file;
        match &mut self.kind {
            Kind::Seq(s) => s.iter_mut().for_each(|n| n.set_file(file)),
            Kind::Map(m) => m.iter_mut().for_each(|(_, kl, n)| {
                kl.file = file;
                n.set_file(file)
            }),
            _ => {}
        }
    }

    /// Deep merge: mappings merge key by key (`over` wins), anything else is replaced.
    pub fn merged(base: &Node, over: &Node) -> Node {
        match (&base.kind, &over.kind) {
            (Kind::Map(b), Kind::Map(o)) => {
                let mut out = b.clone();
                for (k, kl, v) in o {
                    match out.iter_mut().find(|(bk, _, _)| bk == k) {
                        Some(slot) => {
                            slot.1 = *kl;
                            slot.2 = Node::merged(&slot.2, v);
                        }
                        None => out.push((k.clone(), *kl, v.clone())),
                    }
                }
                Node { kind: Kind::Map(out), loc: over.loc }
            }
            _ => over.clone(),
        }
    }

    pub fn without(&self, key: &str) -> Node {
        match &self.kind {
            Kind::Map(m) => {
                Node { kind: Kind::Map(m.iter().filter(|(k, _, _)| k != key).cloned().collect()), loc: self.loc }
            }
            _ => self.clone(),
        }
    }
}

/// Spans are applied per node through `Spanned`, whose inner value is read by our own visitor.
impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Inner>::deserialize(d)?;
        let loc = Loc { file: 0, line: s.referenced.line() as u32, col: s.referenced.column() as u32 };
        Ok(Node { kind: s.value.0, loc })
    }
}

struct Inner(Kind);

impl<'de> Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InnerVisitor)
    }
}

struct InnerVisitor;

impl<'de> Visitor<'de> for InnerVisitor {
    type Value = Inner;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Inner, E> {
        Ok(Inner(Kind::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Inner, E> {
        Ok(Inner(Kind::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Inner, E> {
        i64::try_from(v).map(|i| Inner(Kind::Int(i))).or(Ok(Inner(Kind::Float(v as f64))))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Inner, E> {
        Ok(Inner(i64::try_from(v).map(Kind::Int).unwrap_or(Kind::Float(v as f64))))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Inner, E> {
        Ok(Inner(i64::try_from(v).map(Kind::Int).unwrap_or(Kind::Float(v as f64))))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Inner, E> {
        if v.is_finite() {
            Ok(Inner(Kind::Float(v)))
        } else {
            Err(E::custom("non-finite numbers (.inf, .nan) are not allowed in suites"))
        }
    }
    fn visit_str<E>(self, v: &str) -> Result<Inner, E> {
        Ok(Inner(Kind::Str(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Inner, E> {
        Ok(Inner(Kind::Str(v)))
    }
    fn visit_unit<E>(self) -> Result<Inner, E> {
        Ok(Inner(Kind::Null))
    }
    fn visit_none<E>(self) -> Result<Inner, E> {
        Ok(Inner(Kind::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Inner, D::Error> {
        Inner::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inner, A::Error> {
        let mut v = vec![];
        while let Some(n) = seq.next_element::<Node>()? {
            v.push(n);
        }
        Ok(Inner(Kind::Seq(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inner, A::Error> {
        let mut v: Vec<(String, Loc, Node)> = vec![];
        while let Some(key) = map.next_key::<Node>()? {
            let name = match &key.kind {
                Kind::Str(s) => s.clone(),
                Kind::Int(i) => i.to_string(),
                Kind::Bool(b) => b.to_string(),
                Kind::Float(f) => f.to_string(),
                _ => return Err(de::Error::custom("mapping keys must be plain scalars")),
            };
            let value = map.next_value::<Node>()?;
            v.push((name, key.loc, value));
        }
        Ok(Inner(Kind::Map(v)))
    }
}

/// Line and column (1-based) of byte `offset` in `bytes`.
fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
    (line, col)
}

/// Parse one YAML file into a node tree tagged with `file`.
/// A suite file's size limit: the committed suites are under 40 kB.
const MAX_FILE_BYTES: u64 = 16 << 20;

pub fn parse_file(path: &Path, file: usize) -> Result<Node, SuiteError> {
    let at = |line, col, message: String| SuiteError::at(path, line, col, message);
    // Checked before opening: a FIFO would block the open, /dev/zero never end.
    let meta = std::fs::metadata(path).map_err(|e| at(1, 1, format!("cannot read file: {e}")))?;
    if !meta.is_file() {
        return Err(at(1, 1, "not a regular file (a suite is a YAML file)".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(at(1, 1, format!("{} bytes: suite files are limited to {MAX_FILE_BYTES} bytes", meta.len())));
    }
    let mut bytes = vec![];
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(|e| at(1, 1, format!("cannot read file: {e}")))?,
            MAX_FILE_BYTES + 1,
        ),
        &mut bytes,
    )
    .map_err(|e| at(1, 1, format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(at(1, 1, format!("grew past {MAX_FILE_BYTES} bytes while being read")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let (l, c) = line_col(&bytes, e.valid_up_to());
        at(l, c, "file is not valid UTF-8 (save it as UTF-8)".into())
    })?;
    parse_str(text, path, file)
}

pub fn parse_str(text: &str, path: &Path, file: usize) -> Result<Node, SuiteError> {
    if text.trim().is_empty() {
        return Err(SuiteError::at(
            path,
            1,
            1,
            "file is empty: a suite needs `suite:`, `version:` and `claims:`".into(),
        ));
    }
    // YAML 1.2 booleans only: a key `y` or a value `no` stays a string.
    let options = serde_saphyr::options! { strict_booleans: true };
    let mut node: Node = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, col) = e.location().map(|l| (l.line() as u32, l.column() as u32)).unwrap_or((1, 1));
        let msg = e.without_snippet().to_string();
        let msg = msg.lines().next().unwrap_or("invalid YAML").trim().to_string();
        SuiteError::at(path, line.max(1), col.max(1), format!("invalid YAML: {msg}"))
    })?;
    if node.kind == Kind::Null {
        return Err(SuiteError::at(
            path,
            1,
            1,
            "file has no YAML content: a suite needs `suite:`, `version:` and `claims:`".into(),
        ));
    }
    node.set_file(file);
    Ok(node)
}

/// The file table of a load: node locations index into it.
#[derive(Default, Debug, Clone)]
pub struct Files {
    pub paths: Vec<PathBuf>,
}

impl Files {
    pub fn add(&mut self, p: PathBuf) -> usize {
        self.paths.push(p);
        self.paths.len() - 1
    }

    pub fn error(&self, loc: Loc, message: impl Into<String>) -> SuiteError {
        let path = self.paths.get(loc.file).cloned().unwrap_or_default();
        SuiteError::at(&path, loc.line.max(1), loc.col.max(1), message.into())
    }
}

/// Marks an error message that carries the path inside an internally tagged enum.
const PATH_MARK: char = '\u{1}';

/// Deserialize one variant struct of an internally tagged enum (`kind:`, `family:`) from its
/// buffered value, keeping the path of any error. serde's derived tagged enums buffer their
/// content and lose the path; this carries it out in the message for [`split_inner_path`].
pub fn variant<T: serde::de::DeserializeOwned, E: de::Error>(v: Value) -> Result<T, E> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        // A nested tagged enum has already marked its own path: ours goes in front of it.
        let (inner, msg) = split_inner_path(&e.inner().to_string());
        let all: Vec<Value> = steps_of(e.path())
            .into_iter()
            .chain(inner)
            .map(|s| match s {
                Step::Key(k) => Value::from(k),
                Step::Index(i) => Value::from(i),
            })
            .collect();
        E::custom(format!("{PATH_MARK}{}{PATH_MARK}{msg}", Value::Array(all)))
    })
}

/// The keys and indices of a serde path.
pub fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            _ => None,
        })
        .collect()
}

/// Read the tag of an internally tagged enum and hand the rest to `pick`.
pub fn tagged<'de, D: Deserializer<'de>, T>(
    d: D,
    tag: &str,
    known: &[&str],
    pick: impl FnOnce(&str, Value) -> Result<T, D::Error>,
) -> Result<T, D::Error> {
    let mut v = Value::deserialize(d)?;
    let obj = v.as_object_mut().ok_or_else(|| de::Error::custom(format!("expected a mapping with `{tag}:`")))?;
    let name = match obj.remove(tag) {
        Some(Value::String(s)) => s,
        Some(_) => return Err(de::Error::custom(format!("`{tag}` must be one of: {}", known.join(", ")))),
        None => return Err(de::Error::custom(format!("missing field `{tag}` (one of: {})", known.join(", ")))),
    };
    if !known.contains(&name.as_str()) {
        return Err(de::Error::custom(format!("unknown {tag} `{name}` (one of: {})", known.join(", "))));
    }
    pick(&name, v)
}

/// Split a message made by [`variant`] into the inner path and the plain message.
pub fn split_inner_path(msg: &str) -> (Vec<Step>, String) {
    let Some(rest) = msg.strip_prefix(PATH_MARK) else {
        return (vec![], msg.to_string());
    };
    let Some((json, text)) = rest.split_once(PATH_MARK) else {
        return (vec![], msg.to_string());
    };
    let steps = serde_json::from_str::<Vec<Value>>(json)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| match v {
            Value::String(k) => Some(Step::Key(k)),
            Value::Number(n) => n.as_u64().map(|i| Step::Index(i as usize)),
            _ => None,
        })
        .collect();
    (steps, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions_and_merge() {
        let p = Path::new("t.yaml");
        let a = parse_str("x:\n  y: 1\n  z: [1, 2]\n", p, 0).unwrap();
        let b = parse_str("x:\n  y: 5\n", p, 1).unwrap();
        let m = Node::merged(&a, &b);
        let path = [Step::Key("x".into()), Step::Key("y".into())];
        assert_eq!(m.locate_value(&path), Loc { file: 1, line: 2, col: 6 });
        let path = [Step::Key("x".into()), Step::Key("z".into()), Step::Index(1)];
        assert_eq!(m.locate_value(&path).line, 3);
        assert_eq!(m.to_json()["x"]["y"], 5);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse_str("a: [1, 2\nb: 3\n", Path::new("bad.yaml"), 0).unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }
}
