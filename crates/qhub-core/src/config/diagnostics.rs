//! Diagnostics: what is wrong with a config, where (key path and `line:column`) and how to fix it.

use std::fmt;

use indexmap::IndexMap;
use serde::Serialize;

use super::yaml::Position;

/// One step of a key path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A key path such as `amazon_web_services.node_groups.user.max_nodes` or
/// `profiles.jupyterlab[1].default`. Keys that are not identifiers are quoted:
/// `environments["environment-dask.yaml"].name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The empty path (the document root).
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_string()));
        p
    }

    /// This path extended by a list index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// The path without its last step.
    pub fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }

    /// The first key (the config section), or "" for the root.
    pub fn section(&self) -> &str {
        match self.0.first() {
            Some(Segment::Key(k)) => k,
            _ => "",
        }
    }

    /// Parses the display form back (used by tests and by callers naming paths in code).
    pub fn parse(text: &str) -> Self {
        let mut segs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
            }
            if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").unwrap_or(r.len());
                segs.push(Segment::Key(r[..end].to_string()));
                rest = r.get(end + 2..).unwrap_or("");
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                match r[..end].parse() {
                    Ok(i) => segs.push(Segment::Index(i)),
                    Err(_) => segs.push(Segment::Key(r[..end].to_string())),
                }
                rest = r.get(end + 1..).unwrap_or("");
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                segs.push(Segment::Key(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Self(segs)
    }
}

fn is_identifier(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_identifier(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for KeyPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config cannot be used.
    Error,
    /// The config works, but something is ignored or risky.
    Warning,
}

/// One finding about a config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The key the finding is about.
    pub path: KeyPath,
    /// 1-based line of that key (or of its nearest written ancestor when the key is missing).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The position as a [`Position`].
    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.to_string();
        let path = if path.is_empty() { "(document)" } else { &path };
        write!(f, "{}:{}: {path}: {}", self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// All findings of one validation run, in document order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The findings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// True when any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Sorts by position, then path, and drops exact duplicates.
    pub fn sort(&mut self) {
        // Each path is rendered once, not once per comparison.
        let mut keyed: Vec<(usize, usize, String, Diagnostic)> =
            std::mem::take(&mut self.diagnostics)
                .into_iter()
                .map(|d| (d.line, d.column, d.path.to_string(), d))
                .collect();
        keyed.sort_by(|a, b| (a.0, a.1, &a.2, &a.3.message).cmp(&(b.0, b.1, &b.2, &b.3.message)));
        self.diagnostics = keyed.into_iter().map(|(.., d)| d).collect();
        self.diagnostics.dedup();
    }
}

impl fmt::Display for Report {
    /// Human form: findings grouped by section, errors before warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One pass groups the findings (each unknown top-level key is a section of its own, so
        // a scan per section would be quadratic).
        let mut sections: IndexMap<&str, Vec<&Diagnostic>> = IndexMap::new();
        for d in &self.diagnostics {
            sections.entry(d.path.section()).or_default().push(d);
        }
        for (section, findings) in sections {
            let title = if section.is_empty() {
                "(document)"
            } else {
                section
            };
            writeln!(f, "{title}:")?;
            for severity in [Severity::Error, Severity::Warning] {
                for d in findings.iter().filter(|d| d.severity == severity) {
                    let label = match severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    };
                    writeln!(f, "  {label} {d}")?;
                }
            }
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    bounded_distance(&a, &b, usize::MAX, &mut Vec::new(), &mut Vec::new())
}

/// The edit distance of `a` and `b` when it is at most `limit`, else a number above `limit`.
/// Only the diagonal band of width `2 * limit + 1` is computed (a cell farther from the diagonal
/// costs more than `limit`), and it stops as soon as a whole row exceeds `limit`, as later rows
/// only grow. `prev` and `cur` are scratch rows, reused between calls.
fn bounded_distance(
    a: &[char],
    b: &[char],
    limit: usize,
    prev: &mut Vec<usize>,
    cur: &mut Vec<usize>,
) -> usize {
    // A distance is at least the difference in length: most candidates stop here.
    if a.len().abs_diff(b.len()) > limit {
        return limit.saturating_add(1);
    }
    let limit = limit.min(a.len().max(b.len()));
    let over = limit + 1;
    prev.clear();
    prev.extend((0..=b.len()).map(|j| if j <= limit { j } else { over }));
    cur.clear();
    cur.resize(b.len() + 1, over);
    for (i, ca) in a.iter().enumerate() {
        let row = i + 1;
        let lo = row.saturating_sub(limit).max(1);
        let hi = (row + limit).min(b.len());
        cur[0] = if row <= limit { row } else { over };
        cur[lo - 1] = if lo == 1 { cur[0] } else { over };
        let mut row_min = cur[lo - 1];
        for j in lo..=hi {
            let cost = usize::from(*ca != b[j - 1]);
            let d = (prev[j - 1] + cost).min(prev[j] + 1).min(cur[j - 1] + 1);
            cur[j] = d.min(over);
            row_min = row_min.min(cur[j]);
        }
        if hi < b.len() {
            cur[hi + 1] = over;
        }
        if row_min > limit {
            return over;
        }
        std::mem::swap(prev, cur);
    }
    prev[b.len()]
}

/// A fixed set of candidates for "did you mean", prepared once (lowercased, split into
/// characters) so that suggesting for many unknown words costs no allocation per candidate.
#[derive(Debug, Clone)]
pub struct Suggestions<'a> {
    /// Each candidate with its lowercased characters and its length in characters.
    candidates: Vec<(&'a str, Vec<char>, usize)>,
    prev: Vec<usize>,
    cur: Vec<usize>,
    bag: [i32; 128],
}

/// A lower bound of the edit distance from the characters alone: each edit adds, removes or
/// replaces one character, so the distance is at least the larger of the counts of characters
/// one word has and the other lacks. `bag` is scratch space, left zeroed.
fn bag_distance(a: &[char], b: &[char], bag: &mut [i32; 128]) -> usize {
    // Characters beyond ASCII share one bucket: the bound only gets weaker, never wrong.
    let slot = |c: char| (c as usize).min(127);
    for &c in a {
        bag[slot(c)] += 1;
    }
    for &c in b {
        bag[slot(c)] -= 1;
    }
    let (mut extra, mut missing) = (0usize, 0usize);
    for &c in a.iter().chain(b) {
        let n = &mut bag[slot(c)];
        if *n > 0 {
            extra += *n as usize;
        } else {
            missing += n.unsigned_abs() as usize;
        }
        *n = 0;
    }
    extra.max(missing)
}

impl<'a> Suggestions<'a> {
    /// Prepares `candidates`.
    pub fn new(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            candidates: candidates
                .into_iter()
                .map(|c| (c, c.to_lowercase().chars().collect(), c.chars().count()))
                .collect(),
            prev: Vec::new(),
            cur: Vec::new(),
            bag: [0; 128],
        }
    }

    /// The closest candidate to `word`, when it is close enough to be a likely typo (an edit
    /// distance of at most a third of the longer word's length, and at least 1; case is
    /// ignored). The first of equally close candidates wins.
    pub fn closest(&mut self, word: &str) -> Option<&'a str> {
        let lower: Vec<char> = word.to_lowercase().chars().collect();
        let word_len = word.chars().count();
        let mut best: Option<(usize, &'a str)> = None;
        for (c, chars, c_len) in &self.candidates {
            let limit = ((*c_len).max(word_len) / 3).max(1);
            // Most candidates share too few characters with the word to be within the limit:
            // that is told without the edit-distance table.
            if bag_distance(&lower, chars, &mut self.bag) > limit {
                continue;
            }
            let d = bounded_distance(&lower, chars, limit, &mut self.prev, &mut self.cur);
            if d <= limit && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, *c));
            }
        }
        best.map(|(_, c)| c)
    }
}

/// The closest candidate to `word`, when it is close enough to be a likely typo (see
/// [`Suggestions::closest`]).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    Suggestions::new(candidates).closest(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_display_and_parse() {
        let p = KeyPath::root()
            .key("environments")
            .key("environment-dask.yaml")
            .key("dependencies")
            .index(3);
        let s = p.to_string();
        assert_eq!(s, "environments[\"environment-dask.yaml\"].dependencies[3]");
        assert_eq!(KeyPath::parse(&s), p);
        assert_eq!(
            KeyPath::parse("a.b-c[2].d").to_string(),
            "a.b-c[2].d".to_string()
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("max_node", ["min_nodes", "max_nodes"]),
            Some("max_nodes")
        );
        assert_eq!(
            did_you_mean("github", ["password", "GitHub"]),
            Some("GitHub")
        );
        assert_eq!(did_you_mean("zzzzzz", ["instance"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("é", "e"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        // The character-bag bound never exceeds the distance.
        let mut bag = [0; 128];
        for (a, b) in [
            ("kitten", "sitting"),
            ("max_node", "min_nodes"),
            ("é", "e"),
            ("", "ab"),
        ] {
            let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            assert!(
                bag_distance(&ac, &bc, &mut bag) <= edit_distance(a, b),
                "{a} {b}"
            );
            assert!(bag.iter().all(|n| *n == 0));
        }
        // The banded, bounded distance agrees with the full one wherever it is within the bound.
        let words = [
            "",
            "a",
            "ab",
            "max_nodes",
            "min_nodes",
            "node_groups",
            "nodegroup",
            "GitHub",
        ];
        for a in words {
            for b in words {
                let full = edit_distance(a, b);
                let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
                for limit in 0..6 {
                    let d = bounded_distance(&ac, &bc, limit, &mut Vec::new(), &mut Vec::new());
                    if full <= limit {
                        assert_eq!(d, full, "{a} {b} {limit}");
                    } else {
                        assert!(d > limit, "{a} {b} {limit}: {d}");
                    }
                }
            }
        }
    }
}
