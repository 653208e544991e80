//! `qhub cost`: the estimate of [`qhub_core::cost`] for a config (offline: no credentials, no
//! cloud call).

use std::fmt::Write as _;

use qhub_core::cost::{Estimate, PriceTable, estimate};

use crate::output::OutputFormat;

/// Prints the estimate.
pub fn run(config: &std::path::Path, format: OutputFormat) -> anyhow::Result<u8> {
    let loaded = super::lifecycle::load(config)?;
    let table = PriceTable::shipped()?;
    let e = estimate(&loaded.config, &table)?;
    match format {
        OutputFormat::Json => crate::output::json(&e)?,
        OutputFormat::Text => crate::output::stdout(&text(&e))?,
    }
    Ok(0)
}

fn money(currency: &str, v: f64, decimals: usize) -> String {
    let sign = if currency == "USD" { "$" } else { "" };
    format!("{sign}{v:.decimals$}")
}

/// The estimate as a table: per line the hourly and monthly cost at the minimum and maximum.
pub fn text(e: &Estimate) -> String {
    let mut out = format!(
        "Cost of the config in {} {} (prices of {}, {}; a month is {} hours):\n",
        e.provider, e.region, e.as_of, e.currency, e.hours_per_month
    );
    let rows: Vec<(String, String, String)> = e
        .lines
        .iter()
        .map(|l| {
            let what = if l.kind == "node_group" {
                format!("node group {}", l.name)
            } else {
                l.name.clone()
            };
            let cost = match &l.cost {
                Some(c) if (c.min_hourly - c.max_hourly).abs() < f64::EPSILON => format!(
                    "{}/hour, {}/month",
                    money(&e.currency, c.min_hourly, 4),
                    money(&e.currency, c.min_monthly, 2)
                ),
                Some(c) => format!(
                    "{}–{}/hour, {}–{}/month",
                    money(&e.currency, c.min_hourly, 4),
                    money(&e.currency, c.max_hourly, 4),
                    money(&e.currency, c.min_monthly, 2),
                    money(&e.currency, c.max_monthly, 2)
                ),
                None => "no price known".to_string(),
            };
            (what, l.detail.clone(), cost)
        })
        .collect();
    let w1 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (a, b, c) in &rows {
        let pad1 = w1 - a.chars().count();
        let pad2 = w2 - b.chars().count();
        let _ = writeln!(out, "  {a}{:pad1$}  {b}{:pad2$}  {c}", "", "");
    }
    let t = &e.total;
    let _ = writeln!(
        out,
        "Total: {}/hour ({}/month) at the minimum, {}/hour ({}/month) at the maximum{}",
        money(&e.currency, t.min_hourly, 4),
        money(&e.currency, t.min_monthly, 2),
        money(&e.currency, t.max_hourly, 4),
        money(&e.currency, t.max_monthly, 2),
        if e.complete {
            ""
        } else {
            " — incomplete: the lines with no price known are left out"
        }
    );
    let _ = writeln!(out, "{}", e.note);
    let _ = writeln!(out, "Sources: {}", e.sources.join(", "));
    out
}
