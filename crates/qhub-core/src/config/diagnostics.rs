//! Diagnostics: what is wrong with a config, where (key path and `line:column`) and how to fix it.

use std::fmt;

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
        self.diagnostics.sort_by(|a, b| {
            (a.line, a.column, a.path.to_string(), &a.message).cmp(&(
                b.line,
                b.column,
                b.path.to_string(),
                &b.message,
            ))
        });
        self.diagnostics.dedup();
    }
}

impl fmt::Display for Report {
    /// Human form: findings grouped by section, errors before warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sections: Vec<&str> = Vec::new();
        for d in &self.diagnostics {
            if !sections.contains(&d.path.section()) {
                sections.push(d.path.section());
            }
        }
        for section in sections {
            let title = if section.is_empty() {
                "(document)"
            } else {
                section
            };
            writeln!(f, "{title}:")?;
            for severity in [Severity::Error, Severity::Warning] {
                for d in self
                    .diagnostics
                    .iter()
                    .filter(|d| d.path.section() == section && d.severity == severity)
                {
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
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let d = if c.to_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &c.to_lowercase())
            };
            (d, c)
        })
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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
    }
}
