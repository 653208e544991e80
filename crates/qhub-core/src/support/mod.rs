//! The support bundle (`qhub support`): what a person attaches to a support request, as a zip
//! — the redacted config ([`redact`]), the deployment's status, the pod logs and events of its
//! namespace ([`cluster`]), and qhub's version. Never a Secret's data: Secrets are read only to
//! scrub their values out of every entry ([`Bundle::scrub`]).
//!
//! The bundle is bounded: each container's log is cut to its last [`MAX_LOG_BYTES`] bytes and
//! the entries together to [`MAX_BUNDLE_BYTES`] (uncompressed); what did not fit is named in
//! `README.txt`. The zip is written atomically ([`crate::fs::replace`]), deflate-compressed.

pub mod cluster;
pub mod redact;

use std::io::Write as _;
use std::path::Path;

/// The most of one container's log a bundle keeps (its end): 1 MiB.
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// The most all entries of a bundle hold together, uncompressed: 32 MiB.
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;

/// The folder every entry lives under in the zip.
pub const ROOT: &str = "qhub-support";

/// Shortest secret value scrubbed from the entries (shorter ones, `true`, `dev`, would
/// blank ordinary words).
const MIN_SCRUBBED: usize = 6;

/// What replaces a secret value in an entry.
pub const SCRUBBED: &str = "<redacted>";

/// Errors writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// Building the zip failed.
    #[error("building the support bundle: {0}")]
    Zip(String),
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] crate::fs::WriteError),
}

/// A bundle being built: named entries, within [`MAX_BUNDLE_BYTES`].
#[derive(Debug, Default)]
pub struct Bundle {
    entries: Vec<(String, Vec<u8>)>,
    size: usize,
    left_out: Vec<String>,
    secrets: Vec<String>,
}

impl Bundle {
    /// An empty bundle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Values to scrub from every entry (values shorter than 6 characters are ignored).
    pub fn scrub(&mut self, values: impl IntoIterator<Item = String>) {
        self.secrets
            .extend(values.into_iter().filter(|v| v.len() >= MIN_SCRUBBED));
        // Longest first, so that a value containing another is replaced whole.
        self.secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.secrets.dedup();
    }

    /// Adds an entry (`name` under [`ROOT`]); left out, and named in `README.txt`, when it
    /// would take the bundle over [`MAX_BUNDLE_BYTES`].
    pub fn add(&mut self, name: &str, contents: impl Into<Vec<u8>>) {
        let contents = contents.into();
        if self.size + contents.len() > MAX_BUNDLE_BYTES {
            self.left_out
                .push(format!("{name} ({} bytes)", contents.len()));
            return;
        }
        self.size += contents.len();
        self.entries.push((name.to_string(), contents));
    }

    /// Adds a text entry.
    pub fn add_text(&mut self, name: &str, text: &str) {
        self.add(name, text.as_bytes().to_vec());
    }

    /// Adds a JSON entry, pretty-printed.
    pub fn add_json(&mut self, name: &str, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.add_text(name, &format!("{text}\n"));
    }

    /// The entries' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The entries left out for the size cap.
    pub fn left_out(&self) -> &[String] {
        &self.left_out
    }

    /// The entries with every secret value scrubbed, and `README.txt` first.
    fn finished(&self, readme: &str) -> Vec<(String, Vec<u8>)> {
        let mut text = readme.to_string();
        if !self.left_out.is_empty() {
            text.push_str(&format!(
                "\nLeft out to keep the bundle under {} MiB:\n",
                MAX_BUNDLE_BYTES / (1024 * 1024)
            ));
            for name in &self.left_out {
                text.push_str(&format!("  {name}\n"));
            }
        }
        std::iter::once(("README.txt".to_string(), text.into_bytes()))
            .chain(self.entries.iter().cloned())
            .map(|(name, bytes)| (format!("{ROOT}/{name}"), self.scrubbed(bytes)))
            .collect()
    }

    fn scrubbed(&self, bytes: Vec<u8>) -> Vec<u8> {
        if self.secrets.is_empty() {
            return bytes;
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), SCRUBBED);
            }
        }
        text.into_bytes()
    }

    /// The zip's bytes: `README.txt` (`readme`, and what was left out) and every entry,
    /// scrubbed, deflate-compressed.
    pub fn to_zip(&self, readme: &str) -> Result<Vec<u8>, SupportError> {
        let zip_err = |e: zip::result::ZipError| SupportError::Zip(e.to_string());
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        for (name, bytes) in self.finished(readme) {
            writer.start_file(name, options).map_err(zip_err)?;
            writer
                .write_all(&bytes)
                .map_err(|e| SupportError::Zip(e.to_string()))?;
        }
        Ok(writer.finish().map_err(zip_err)?.into_inner())
    }

    /// Writes the zip to `path` atomically (replacing it; a new file is 0600); returns its size.
    pub fn write(&self, path: &Path, readme: &str) -> Result<u64, SupportError> {
        let bytes = self.to_zip(readme)?;
        crate::fs::replace(path, &bytes)?;
        Ok(bytes.len() as u64)
    }
}

/// The last `max` bytes of `text`, cut at a line start, with a note of what was cut.
pub fn tail_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    let rest = rest.find('\n').map_or(rest, |i| &rest[i + 1..]);
    format!(
        "[… {} earlier bytes cut: the bundle keeps the last {max} bytes of each log]\n{rest}",
        text.len() - rest.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_and_the_size_is_capped() {
        let mut b = Bundle::new();
        b.scrub(["s3cr3t-value".to_string(), "dev".to_string()]);
        b.add_text("a.log", "password=s3cr3t-value in dev\n");
        b.add("big.bin", vec![0u8; MAX_BUNDLE_BYTES + 1]);
        assert_eq!(b.names(), ["a.log"]);
        assert_eq!(b.left_out().len(), 1);
        let entries = b.finished("readme\n");
        assert_eq!(entries[0].0, "qhub-support/README.txt");
        assert!(String::from_utf8_lossy(&entries[0].1).contains("big.bin"));
        assert_eq!(
            String::from_utf8_lossy(&entries[1].1),
            "password=<redacted> in dev\n"
        );
        assert!(b.to_zip("readme").unwrap().starts_with(b"PK"));
    }

    #[test]
    fn logs_keep_their_end() {
        let text = "one\ntwo\nthree\n";
        assert_eq!(tail_bytes(text, 100), text);
        let cut = tail_bytes(text, 8);
        assert!(
            cut.ends_with("three\n") && cut.starts_with("[… 8 earlier bytes cut"),
            "{cut}"
        );
    }
}
