//! `qhub cost`: what a config's cloud resources cost, from the dated price table shipped in
//! this crate (`cost/prices.json`: its date, currency and source pages are part of every
//! estimate). Node groups at their minimum and maximum size, the cluster's control plane, the
//! shared filesystem's storage at its configured size, and the ingress load balancer. An
//! instance type without a price is a line saying so (and the totals say they are
//! incomplete); a region without prices is an error naming the ones known. Nothing is guessed.
//!
//! A month is [`PriceTable::hours_per_month`] hours (730), unless the provider bills a
//! monthly cap (DigitalOcean: a Droplet's monthly price), which is then the month's cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ProviderKind};

/// The table, as shipped.
const PRICES: &str = include_str!("prices.json");

/// One priced item: per hour, and the monthly cap where the provider bills one.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    /// Per hour.
    pub hourly: f64,
    /// The most a month costs, where the provider caps it.
    #[serde(default)]
    pub monthly: Option<f64>,
}

/// A named priced item (control plane, load balancer).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Named {
    /// What it is.
    pub name: String,
    /// Per hour.
    pub hourly: f64,
    /// The monthly cap, if any.
    #[serde(default)]
    pub monthly: Option<f64>,
}

/// Storage by the GiB and month.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoragePrice {
    /// What it is.
    pub name: String,
    /// Per GiB and month.
    pub gib_month: f64,
}

/// The prices of one region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegionPrices {
    /// The cluster's control plane.
    pub control_plane: Named,
    /// The ingress load balancer.
    pub load_balancer: Named,
    /// The shared filesystem's storage.
    pub storage: StoragePrice,
    /// Per instance type.
    pub instances: BTreeMap<String, Price>,
}

/// The prices of one provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProviderPrices {
    /// The pages the prices come from.
    pub sources: Vec<String>,
    /// Per region.
    pub regions: BTreeMap<String, RegionPrices>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceTable {
    /// The day the prices were transcribed.
    pub as_of: String,
    /// Their currency.
    pub currency: String,
    /// Hours in a month.
    pub hours_per_month: f64,
    /// What the prices are and are not.
    pub note: String,
    /// Per provider (`aws`, `gcp`, `do`).
    pub providers: BTreeMap<String, ProviderPrices>,
}

impl PriceTable {
    /// The table shipped with qhub.
    pub fn shipped() -> Result<Self, CostError> {
        serde_json::from_str(PRICES).map_err(|e| CostError::Table(e.to_string()))
    }
}

/// Errors of an estimate.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// The shipped table does not parse (a build defect).
    #[error("the shipped price table is invalid: {0}")]
    Table(String),
    /// The provider has no prices.
    #[error(
        "not supported yet: qhub cost knows the prices of aws, gcp and do, not of provider `{0}`"
    )]
    Provider(String),
    /// The region has no prices.
    #[error(
        "no price known for region {region} of {provider} (the table of {as_of} has {}): prices are not guessed",
        known.join(", ")
    )]
    Region {
        /// The provider.
        provider: String,
        /// The region.
        region: String,
        /// The regions known.
        known: Vec<String>,
        /// The table's date.
        as_of: String,
    },
}

/// A cost at the minimum and at the maximum size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Range {
    /// Per hour at the minimum.
    pub min_hourly: f64,
    /// Per hour at the maximum.
    pub max_hourly: f64,
    /// Per month at the minimum.
    pub min_monthly: f64,
    /// Per month at the maximum.
    pub max_monthly: f64,
}

impl Range {
    fn add(&mut self, other: &Range) {
        self.min_hourly += other.min_hourly;
        self.max_hourly += other.max_hourly;
        self.min_monthly += other.min_monthly;
        self.max_monthly += other.max_monthly;
    }
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// `node_group`, `control_plane`, `storage` or `load_balancer`.
    pub kind: String,
    /// The node group's name, or what the item is.
    pub name: String,
    /// E.g. `m5.xlarge × 1–5`, `200 GiB`.
    pub detail: String,
    /// Its cost; `None` when no price is known.
    pub cost: Option<Range>,
}

/// What a config costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The provider.
    pub provider: String,
    /// The region.
    pub region: String,
    /// The price table's date.
    pub as_of: String,
    /// Its currency.
    pub currency: String,
    /// Hours in a month.
    pub hours_per_month: f64,
    /// The pages the prices come from.
    pub sources: Vec<String>,
    /// One per node group, then the control plane, the storage and the load balancer.
    pub lines: Vec<Line>,
    /// The sum of the priced lines.
    pub total: Range,
    /// False when a line has no price (the total leaves it out).
    pub complete: bool,
    /// What the prices are and are not.
    pub note: String,
}

fn monthly(p: &Price, hours: f64) -> f64 {
    p.monthly.unwrap_or(p.hourly * hours)
}

fn range(price: &Price, min: u32, max: u32, hours: f64) -> Range {
    Range {
        min_hourly: price.hourly * f64::from(min),
        max_hourly: price.hourly * f64::from(max),
        min_monthly: monthly(price, hours) * f64::from(min),
        max_monthly: monthly(price, hours) * f64::from(max),
    }
}

/// A size such as `200Gi`, `1Ti`, `500G` in GiB (`G`/`T` read as GiB/TiB: an upper bound).
pub fn gib(size: &str) -> Option<f64> {
    let s = size.trim();
    let i = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let n: f64 = s[..i].parse().ok()?;
    let factor = match &s[i..] {
        "Gi" | "G" => 1.0,
        "Ti" | "T" => 1024.0,
        "Mi" | "M" => 1.0 / 1024.0,
        _ => return None,
    };
    Some(n * factor)
}

/// The provider's key in the table and the config's region.
fn where_of(config: &Config) -> Result<(&'static str, String), CostError> {
    let unsupported = || CostError::Provider(config.provider.to_string());
    match config.provider {
        ProviderKind::Aws => config
            .amazon_web_services
            .as_ref()
            .map(|p| ("aws", p.region.clone())),
        ProviderKind::Gcp => config
            .google_cloud_platform
            .as_ref()
            .map(|p| ("gcp", p.region.clone())),
        ProviderKind::Do => config
            .digital_ocean
            .as_ref()
            .map(|p| ("do", p.region.clone())),
        _ => None,
    }
    .ok_or_else(unsupported)
}

/// The estimate of `config` from `table`.
pub fn estimate(config: &Config, table: &PriceTable) -> Result<Estimate, CostError> {
    let (provider, region) = where_of(config)?;
    let prices = table
        .providers
        .get(provider)
        .ok_or_else(|| CostError::Provider(provider.to_string()))?;
    let r = prices
        .regions
        .get(&region)
        .ok_or_else(|| CostError::Region {
            provider: provider.to_string(),
            region: region.clone(),
            known: prices.regions.keys().cloned().collect(),
            as_of: table.as_of.clone(),
        })?;
    let hours = table.hours_per_month;
    let mut lines = Vec::new();
    for (name, g) in config.node_groups().into_iter().flatten() {
        let detail = format!("{} × {}–{}", g.instance, g.min_nodes, g.max_nodes);
        let cost = if g.guest_accelerators.is_empty() {
            r.instances
                .get(&g.instance)
                .map(|p| range(p, g.min_nodes, g.max_nodes, hours))
        } else {
            // The accelerators are billed apart from the machine type; the table has none.
            None
        };
        let detail = match (&cost, g.guest_accelerators.is_empty()) {
            (Some(_), _) => detail,
            (None, true) => format!("{detail}: no price known for {} in {region}", g.instance),
            (None, false) => format!("{detail}: no price known for its guest accelerators"),
        };
        lines.push(Line {
            kind: "node_group".into(),
            name: name.clone(),
            detail,
            cost,
        });
    }
    let fixed = |n: &Named| {
        range(
            &Price {
                hourly: n.hourly,
                monthly: n.monthly,
            },
            1,
            1,
            hours,
        )
    };
    lines.push(Line {
        kind: "control_plane".into(),
        name: r.control_plane.name.clone(),
        detail: "1".into(),
        cost: Some(fixed(&r.control_plane)),
    });
    let size = &config.storage.shared_filesystem;
    let storage = gib(size).map(|g| {
        let m = g * r.storage.gib_month;
        Range {
            min_hourly: m / hours,
            max_hourly: m / hours,
            min_monthly: m,
            max_monthly: m,
        }
    });
    lines.push(Line {
        kind: "storage".into(),
        name: r.storage.name.clone(),
        detail: match storage {
            Some(_) => format!("shared filesystem {size}"),
            None => format!("shared filesystem {size}: not a size qhub cost reads"),
        },
        cost: storage,
    });
    lines.push(Line {
        kind: "load_balancer".into(),
        name: r.load_balancer.name.clone(),
        detail: "1".into(),
        cost: Some(fixed(&r.load_balancer)),
    });
    let mut total = Range::default();
    for l in &lines {
        if let Some(c) = &l.cost {
            total.add(c);
        }
    }
    Ok(Estimate {
        provider: provider.to_string(),
        region,
        as_of: table.as_of.clone(),
        currency: table.currency.clone(),
        hours_per_month: hours,
        sources: prices.sources.clone(),
        complete: lines.iter().all(|l| l.cost.is_some()),
        lines,
        total,
        note: table.note.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_sizes_read() {
        let t = PriceTable::shipped().unwrap();
        assert_eq!(t.as_of, "2026-12-07");
        for p in ["aws", "gcp", "do"] {
            assert!(!t.providers[p].sources.is_empty());
        }
        assert_eq!(gib("200Gi"), Some(200.0));
        assert_eq!(gib("1Ti"), Some(1024.0));
        assert_eq!(gib("lots"), None);
    }
}
