//! Turns engine events into progress: by stage and component (one line per component when it
//! finishes, a spinner per component on a terminal; every object with `-v`), each line with the
//! time since the apply started; JSON lines with `--output json`. Always on stderr, so stdout carries only the result.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use qhub_core::events::{Event, EventSink};
use qhub_core::plan::ResourceId;

use super::groups::Group;
use crate::cli::OutputFormat;

/// The sink for a format and terminal, for events outside a plan (waiting for the lock).
pub fn sink(format: OutputFormat) -> std::sync::Arc<dyn EventSink> {
    grouped(format, BTreeMap::new())
}

/// The sink of an apply: in text, progress by stage and component (`groups`: each planned
/// change's group), every object only with `-v`.
pub fn grouped(
    format: OutputFormat,
    groups: BTreeMap<ResourceId, Group>,
) -> std::sync::Arc<dyn EventSink> {
    match format {
        OutputFormat::Json => std::sync::Arc::new(JsonLines),
        OutputFormat::Text if std::io::stderr().is_terminal() => std::sync::Arc::new(Bars {
            multi: MultiProgress::new(),
            tally: Mutex::new(Tally::new(groups)),
            bars: Mutex::new(HashMap::new()),
        }),
        OutputFormat::Text => std::sync::Arc::new(Lines {
            tally: Mutex::new(Tally::new(groups)),
        }),
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

/// Per-component bookkeeping of an apply: how many changes each group has, has done and has
/// failed, and when it started, so that one line per component says its count and state.
struct Tally {
    start: Instant,
    verbose: bool,
    groups: BTreeMap<ResourceId, Group>,
    totals: HashMap<Group, usize>,
    state: HashMap<Group, GroupState>,
}

#[derive(Default)]
struct GroupState {
    done: usize,
    failed: usize,
    started: Option<Instant>,
}

impl Tally {
    fn new(groups: BTreeMap<ResourceId, Group>) -> Self {
        let mut totals = HashMap::new();
        for g in groups.values() {
            *totals.entry(g.clone()).or_insert(0) += 1;
        }
        Self {
            start: Instant::now(),
            verbose: crate::output::verbose() > 0,
            groups,
            totals,
            state: HashMap::new(),
        }
    }

    /// `[  12.3s]`: the time since the apply started.
    fn stamp(&self) -> String {
        format!("[{:>6.1}s]", self.start.elapsed().as_secs_f64())
    }

    /// The lines an event prints, and the group whose progress it moved.
    fn on(&mut self, event: &Event) -> (Vec<String>, Option<Group>) {
        let stamp = self.stamp();
        let per_object = format!("{stamp} {}", line(event));
        let group = match event {
            Event::Started { resource, .. }
            | Event::Done { resource, .. }
            | Event::Failed { resource, .. } => self.groups.get(resource).cloned(),
            _ => None,
        };
        let Some(group) = group else {
            // Not a planned change (the run as a whole, a lock wait, a retry): as it is.
            let quiet = matches!(event, Event::Started { .. } | Event::Done { .. });
            return (
                if quiet && !self.verbose {
                    vec![]
                } else {
                    vec![per_object]
                },
                None,
            );
        };
        let total = self.totals.get(&group).copied().unwrap_or(0);
        let state = self.state.entry(group.clone()).or_default();
        let mut out = Vec::new();
        match event {
            Event::Started { .. } => {
                state.started.get_or_insert_with(Instant::now);
                if self.verbose {
                    out.push(per_object);
                }
            }
            Event::Done { .. } => {
                state.done += 1;
                if self.verbose {
                    out.push(per_object);
                }
            }
            Event::Failed { .. } => {
                state.failed += 1;
                // A failure is always shown by name: the object, the call and the API's words.
                out.push(per_object);
            }
            _ => {}
        }
        if matches!(event, Event::Done { .. } | Event::Failed { .. })
            && state.done + state.failed == total
        {
            let took = state
                .started
                .map(|t| format!(" in {:.1}s", t.elapsed().as_secs_f64()))
                .unwrap_or_default();
            out.push(if state.failed == 0 {
                format!("{stamp} ✓ {group}: {total} done{took}")
            } else {
                format!(
                    "{stamp} ✗ {group}: {} done, {} failed of {total}{took}",
                    state.done, state.failed
                )
            });
        }
        (out, Some(group))
    }

    /// `3/9`: a group's finished changes of its total.
    fn progress(&self, group: &Group) -> String {
        let total = self.totals.get(group).copied().unwrap_or(0);
        let s = self.state.get(group);
        let finished = s.map_or(0, |s| s.done + s.failed);
        format!("{group} {finished}/{total}")
    }
}

/// One line per component (and per object with `-v`), for a log or a CI job.
struct Lines {
    tally: Mutex<Tally>,
}

impl EventSink for Lines {
    fn emit(&self, event: &Event) {
        let Ok(mut tally) = self.tally.lock() else {
            return;
        };
        for l in tally.on(event).0 {
            eprintln!("{l}");
        }
    }
}

/// A spinner per component in progress on a terminal; the lines of [`Lines`] above them.
struct Bars {
    multi: MultiProgress,
    tally: Mutex<Tally>,
    bars: Mutex<HashMap<Group, ProgressBar>>,
}

impl EventSink for Bars {
    fn emit(&self, event: &Event) {
        let (Ok(mut tally), Ok(mut bars)) = (self.tally.lock(), self.bars.lock()) else {
            return;
        };
        let (lines, group) = tally.on(event);
        for l in lines {
            let _ = self.multi.println(l);
        }
        let Some(group) = group else {
            return;
        };
        let total = tally.totals.get(&group).copied().unwrap_or(0);
        let finished = tally.state.get(&group).map_or(0, |s| s.done + s.failed);
        if finished >= total {
            if let Some(bar) = bars.remove(&group) {
                bar.finish_and_clear();
            }
            return;
        }
        let message = tally.progress(&group);
        let bar = bars.entry(group).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(message);
    }
}
