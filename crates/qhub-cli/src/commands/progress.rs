//! Turns engine events into progress: bars on a terminal, one line per event otherwise, JSON
//! lines with `--output json`. Always on stderr, so stdout carries only the result.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use qhub_core::events::{Event, EventSink};
use qhub_core::plan::ResourceId;

use crate::cli::OutputFormat;

/// The sink for a format and terminal.
pub fn sink(format: OutputFormat) -> std::sync::Arc<dyn EventSink> {
    match format {
        OutputFormat::Json => std::sync::Arc::new(JsonLines),
        OutputFormat::Text if std::io::stderr().is_terminal() => {
            std::sync::Arc::new(Bars::default())
        }
        OutputFormat::Text => std::sync::Arc::new(Lines),
    }
}

struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(&event.to_json()) {
            eprintln!("{line}");
        }
    }
}

fn line(event: &Event) -> String {
    match event {
        Event::ApplyStarted { changes } => format!("applying {changes} change(s)"),
        Event::Started {
            resource,
            action,
            expected,
            ..
        } => {
            format!(
                "{} {resource}: started {action:?} (expected ~{:.1}s)",
                "…",
                expected.as_secs_f64()
            )
        }
        Event::Retrying {
            resource,
            attempt,
            delay,
            error,
            ..
        } => {
            format!(
                "! {resource}: attempt {attempt} failed ({error}); retrying in {:.1}s",
                delay.as_secs_f64()
            )
        }
        Event::Done {
            resource,
            action,
            elapsed,
            ..
        } => {
            format!(
                "✓ {resource}: {action:?} done in {:.1}s",
                elapsed.as_secs_f64()
            )
        }
        Event::Failed {
            resource,
            action,
            error,
            ..
        } => format!("✗ {resource}: {action:?} failed: {error}"),
        Event::Waiting {
            resource, detail, ..
        } => format!("… {resource}: waiting ({detail})"),
        Event::Cancelling { in_flight } => {
            format!(
                "stopping: no new changes start; waiting for {in_flight} in flight (Ctrl-C again to abort)"
            )
        }
    }
}

struct Lines;

impl EventSink for Lines {
    fn emit(&self, event: &Event) {
        eprintln!("{}", line(event));
    }
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<ResourceId, ProgressBar>>,
}

impl EventSink for Bars {
    fn emit(&self, event: &Event) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            Event::Started {
                resource, action, ..
            } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{action:?} {resource}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(resource.clone(), bar);
            }
            Event::Done { resource, .. } | Event::Failed { resource, .. } => {
                if let Some(bar) = bars.remove(resource) {
                    bar.finish_and_clear();
                }
                let _ = self.multi.println(line(event));
            }
            other => {
                let _ = self.multi.println(line(other));
            }
        }
    }
}
