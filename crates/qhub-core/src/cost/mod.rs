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

use indexmap::IndexMap;
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
pub fn where_of(config: &Config) -> Result<(&'static str, String), CostError> {
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
        ProviderKind::Sandbox => config
            .sandbox
            .as_ref()
            .map(|p| ("sandbox", p.region.clone())),
        _ => None,
    }
    .ok_or_else(unsupported)
}

/// One node group as the table prices it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupShape {
    /// The instance (machine, droplet) type.
    pub instance: String,
    /// The autoscaler's lower bound.
    pub min_nodes: u32,
    /// Its upper bound.
    pub max_nodes: u32,
    /// Guest accelerators attached apart from the machine type (GCP): the table prices none.
    pub accelerators: bool,
}

/// What a deployment consists of, as far as the price table prices it: what the config asks
/// for ([`Shape::of_config`]), or what exists now, as a provider maps what it observes
/// ([`crate::provider::Provider::priced_shape`]). Two shapes that are equal cost the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Node groups by the config's group name (in the config's order; compared as a map).
    pub node_groups: IndexMap<String, GroupShape>,
    /// Whether the cluster (its control plane) exists.
    pub cluster: bool,
    /// The shared filesystem's size (`200Gi`), when it exists.
    pub storage: Option<String>,
    /// Whether the ingress load balancer exists.
    pub load_balancer: bool,
}

impl Shape {
    /// What `config` asks for: its node groups, a cluster, the shared filesystem at
    /// `storage.shared_filesystem` and the ingress load balancer.
    pub fn of_config(config: &Config) -> Self {
        Self {
            node_groups: config
                .node_groups()
                .into_iter()
                .flatten()
                .map(|(name, g)| {
                    (
                        name.clone(),
                        GroupShape {
                            instance: g.instance.clone(),
                            min_nodes: g.min_nodes,
                            max_nodes: g.max_nodes,
                            accelerators: !g.guest_accelerators.is_empty(),
                        },
                    )
                })
                .collect(),
            cluster: true,
            storage: Some(config.storage.shared_filesystem.clone()),
            load_balancer: true,
        }
    }

    /// True when nothing priced exists.
    pub fn is_empty(&self) -> bool {
        self.node_groups.is_empty()
            && !self.cluster
            && self.storage.is_none()
            && !self.load_balancer
    }
}

/// The estimate of `config` from `table`.
pub fn estimate(config: &Config, table: &PriceTable) -> Result<Estimate, CostError> {
    let (provider, region) = where_of(config)?;
    estimate_shape(provider, &region, &Shape::of_config(config), table)
}

/// The estimate of `shape` in `region` of `provider` (the table's key: `aws`, `gcp`, `do`,
/// `sandbox`): a line per node group, then the control plane, the storage and the load
/// balancer where the shape has them.
pub fn estimate_shape(
    provider: &str,
    region: &str,
    shape: &Shape,
    table: &PriceTable,
) -> Result<Estimate, CostError> {
    let prices = table
        .providers
        .get(provider)
        .ok_or_else(|| CostError::Provider(provider.to_string()))?;
    let r = prices
        .regions
        .get(region)
        .ok_or_else(|| CostError::Region {
            provider: provider.to_string(),
            region: region.to_string(),
            known: prices.regions.keys().cloned().collect(),
            as_of: table.as_of.clone(),
        })?;
    let hours = table.hours_per_month;
    let mut lines = Vec::new();
    for (name, g) in &shape.node_groups {
        let detail = format!("{} × {}–{}", g.instance, g.min_nodes, g.max_nodes);
        let cost = if g.accelerators {
            // The accelerators are billed apart from the machine type; the table has none.
            None
        } else {
            r.instances
                .get(&g.instance)
                .map(|p| range(p, g.min_nodes, g.max_nodes, hours))
        };
        let detail = match (&cost, g.accelerators) {
            (Some(_), _) => detail,
            (None, false) => format!("{detail}: no price known for {} in {region}", g.instance),
            (None, true) => format!("{detail}: no price known for its guest accelerators"),
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
    if shape.cluster {
        lines.push(Line {
            kind: "control_plane".into(),
            name: r.control_plane.name.clone(),
            detail: "1".into(),
            cost: Some(fixed(&r.control_plane)),
        });
    }
    if let Some(size) = &shape.storage {
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
    }
    if shape.load_balancer {
        lines.push(Line {
            kind: "load_balancer".into(),
            name: r.load_balancer.name.clone(),
            detail: "1".into(),
            cost: Some(fixed(&r.load_balancer)),
        });
    }
    let mut total = Range::default();
    for l in &lines {
        if let Some(c) = &l.cost {
            total.add(c);
        }
    }
    Ok(Estimate {
        provider: provider.to_string(),
        region: region.to_string(),
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

/// One side of a [`CostChange`]: its cost, or why it is unknown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// The cost; `None` when unknown.
    pub cost: Option<Range>,
    /// Why it is unknown (an instance type without a price, a provider that cannot map what
    /// it observes); `None` when known.
    pub unknown: Option<String>,
}

impl Side {
    fn of(provider: &str, region: &str, shape: Option<&Shape>, table: &PriceTable) -> Self {
        let Some(shape) = shape else {
            return Self::unknown(
                "the provider cannot map what exists to priced resources; the cost now is not guessed",
            );
        };
        match estimate_shape(provider, region, shape, table) {
            Ok(e) if e.complete => Self {
                cost: Some(e.total),
                unknown: None,
            },
            Ok(e) => Self::unknown(
                e.lines
                    .iter()
                    .filter(|l| l.cost.is_none())
                    .map(|l| l.detail.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(e) => Self::unknown(e.to_string()),
        }
    }

    fn unknown(why: impl Into<String>) -> Self {
        Self {
            cost: None,
            unknown: Some(why.into()),
        }
    }
}

/// How a plan moves the deployment's cost: what exists now against what the plan leaves,
/// each at the minimum and maximum size (`qhub plan`, and the plans deploy and destroy show).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostChange {
    /// The provider's key in the table.
    pub provider: String,
    /// The region.
    pub region: String,
    /// The price table's date.
    pub as_of: String,
    /// Its currency.
    pub currency: String,
    /// What exists now costs.
    pub before: Side,
    /// What exists after the plan costs.
    pub after: Side,
}

impl CostChange {
    /// The change from `before` (what exists; `None`: the provider cannot say) to `after`,
    /// when it moves the cost: the shapes differ, or, with `before` unknown, `moves_anyway`
    /// (the caller's judgement, e.g. the plan changes infrastructure). `None` otherwise, and
    /// for a provider without prices (`existing`, `local`: qhub creates nothing billed).
    pub fn between(
        config: &Config,
        before: Option<&Shape>,
        after: &Shape,
        moves_anyway: bool,
        table: &PriceTable,
    ) -> Option<Self> {
        let (provider, region) = where_of(config).ok()?;
        let moves = before.map_or(moves_anyway, |b| b != after);
        if !moves {
            return None;
        }
        Some(Self {
            provider: provider.to_string(),
            before: Side::of(provider, &region, before, table),
            after: Side::of(provider, &region, Some(after), table),
            region,
            as_of: table.as_of.clone(),
            currency: table.currency.clone(),
        })
    }

    /// `Cost: $A–$B/month → $C–$D/month (prices as of DATE, REGION)`, and a line per unknown
    /// side saying why.
    pub fn text(&self) -> String {
        let side = |s: &Side| match &s.cost {
            Some(c) => format!(
                "{}–{}/month",
                money(&self.currency, c.min_monthly),
                money(&self.currency, c.max_monthly)
            ),
            None => "unknown".to_string(),
        };
        let mut out = format!(
            "Cost: {} → {} (at the minimum–maximum size; prices as of {}, {})\n",
            side(&self.before),
            side(&self.after),
            self.as_of,
            self.region
        );
        for (name, s) in [("before", &self.before), ("after", &self.after)] {
            if let Some(why) = &s.unknown {
                out.push_str(&format!("  cost {name} unknown: {why}\n"));
            }
        }
        out
    }
}

/// A monthly amount: `$1,234.56` in dollars, `1234.56 EUR` otherwise.
pub fn money(currency: &str, v: f64) -> String {
    let plain = format!("{:.2}", v.max(0.0));
    let (whole, cents) = plain.split_once('.').unwrap_or((&plain, "00"));
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if currency == "USD" {
        format!("${grouped}.{cents}")
    } else {
        format!("{grouped}.{cents} {currency}")
    }
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

    #[test]
    fn a_change_is_shown_only_when_it_moves_the_cost() {
        let config = crate::config::init::render(&crate::config::init::InitOptions::new(
            ProviderKind::Sandbox,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        ))
        .unwrap();
        let table = PriceTable::shipped().unwrap();
        let after = Shape::of_config(&config);
        assert_eq!(
            CostChange::between(&config, Some(&after), &after, true, &table),
            None
        );
        let mut before = after.clone();
        before.node_groups["user"].max_nodes = 3;
        let c = CostChange::between(&config, Some(&before), &after, false, &table).unwrap();
        // Two user nodes more at the maximum: 2 × 0.192 × 730.
        let (b, a) = (c.before.cost.unwrap(), c.after.cost.unwrap());
        assert!((a.max_monthly - b.max_monthly - 2.0 * 0.192 * 730.0).abs() < 1e-9);
        assert_eq!(a.min_monthly, b.min_monthly);
        // Unknown before: shown when the caller says the plan moves infrastructure, never as 0.
        assert_eq!(
            CostChange::between(&config, None, &after, false, &table),
            None
        );
        let c = CostChange::between(&config, None, &after, true, &table).unwrap();
        assert_eq!(c.before.cost, None);
        assert!(c.text().starts_with("Cost: unknown → $"), "{}", c.text());
        assert!(c.text().contains("cost before unknown: "), "{}", c.text());
        // A provider without prices has no cost line.
        let local = crate::config::init::render(&crate::config::init::InitOptions::new(
            ProviderKind::Local,
            "demo",
            "demo.example.com",
            "0123456789abcdef",
        ))
        .unwrap();
        assert_eq!(
            CostChange::between(&local, None, &after, true, &table),
            None
        );
    }

    #[test]
    fn money_reads_as_dollars() {
        assert_eq!(money("USD", 1234.567), "$1,234.57");
        assert_eq!(money("USD", 0.0), "$0.00");
        assert_eq!(money("USD", 999.999), "$1,000.00");
        assert_eq!(money("EUR", 12.5), "12.50 EUR");
    }
}
