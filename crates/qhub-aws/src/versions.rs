//! EKS's Kubernetes version calendar: when each version leaves standard support, and the
//! warning `plan`, `status` and `deploy` give when a cluster is close to it.
//!
//! Source: EKS user guide, "Understand the Kubernetes version lifecycle on EKS", section
//! "Amazon EKS Kubernetes release calendar" (awsdocs/amazon-eks-user-guide,
//! `latest/ug/versioning/kubernetes-versions.adoc`), and for 1.35 the same calendar as listed
//! on endoflife.date/amazon-eks (EKS release 2026-01-27). A version has 14 months of standard
//! support from its EKS release, then 12 months of extended support at a higher cluster-hour
//! price (or, with `upgradePolicy` `STANDARD`, an automatic upgrade). `DescribeClusterVersions`
//! says the same per version, but it is one more call and an emulator cannot answer it: the
//! table is what `plan` reads, offline.

use std::time::{SystemTime, UNIX_EPOCH};

/// How long before the end of standard support `plan` and `status` start warning.
pub const WARN_DAYS: i64 = 60;

/// One EKS Kubernetes version's dates, `(year, month, day)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EksVersion {
    /// `MAJOR.MINOR`.
    pub version: &'static str,
    /// When EKS released it.
    pub released: (i32, u32, u32),
    /// The last day of standard support; extended-support billing starts the day after.
    pub end_of_standard: (i32, u32, u32),
    /// The end of extended support.
    pub end_of_extended: (i32, u32, u32),
}

/// The calendar, newest first.
pub const CALENDAR: &[EksVersion] = &[
    EksVersion {
        version: "1.35",
        released: (2026, 1, 27),
        end_of_standard: (2027, 3, 27),
        end_of_extended: (2028, 3, 27),
    },
    EksVersion {
        version: "1.34",
        released: (2025, 10, 2),
        end_of_standard: (2026, 12, 2),
        end_of_extended: (2027, 12, 2),
    },
    EksVersion {
        version: "1.33",
        released: (2025, 5, 29),
        end_of_standard: (2026, 7, 29),
        end_of_extended: (2027, 7, 29),
    },
    EksVersion {
        version: "1.32",
        released: (2025, 1, 23),
        end_of_standard: (2026, 3, 23),
        end_of_extended: (2027, 3, 23),
    },
    EksVersion {
        version: "1.31",
        released: (2024, 9, 26),
        end_of_standard: (2025, 11, 26),
        end_of_extended: (2026, 11, 26),
    },
    EksVersion {
        version: "1.30",
        released: (2024, 5, 23),
        end_of_standard: (2025, 7, 23),
        end_of_extended: (2026, 7, 23),
    },
    EksVersion {
        version: "1.29",
        released: (2024, 1, 23),
        end_of_standard: (2025, 3, 23),
        end_of_extended: (2026, 3, 23),
    },
];

/// The calendar entry of `version` (`1.33`, `1.33.2`, `v1.33`).
pub fn lookup(version: &str) -> Option<&'static EksVersion> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
    CALENDAR.iter().find(|e| e.version == minor)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
pub fn days_from_civil((y, m, d): (i32, u32, u32)) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Today, in days since 1970-01-01 (UTC).
pub fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

fn date((y, m, d): (i32, u32, u32)) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

/// What to tell about a cluster at `version` on day `today` (days since the epoch) with
/// upgrade policy `support_type` (`STANDARD`/`EXTENDED`), or `None` when it is more than
/// [`WARN_DAYS`] from the end of standard support (or the version is not in the calendar).
pub fn support_warning(
    cluster: &str,
    version: &str,
    support_type: &str,
    today: i64,
) -> Option<String> {
    let entry = lookup(version)?;
    let end = days_from_civil(entry.end_of_standard);
    let left = end - today;
    let what = if support_type.eq_ignore_ascii_case("EXTENDED") {
        "EKS then bills it at the extended-support price (6× the standard cluster-hour price)"
    } else {
        "EKS then upgrades its control plane to the next version by itself"
    };
    let fix = format!(
        "raise amazon_web_services.kubernetes_version one minor at a time (newest in standard support: {}) and deploy",
        CALENDAR[0].version
    );
    if left < 0 {
        Some(format!(
            "EKS cluster {cluster}: Kubernetes {} left standard support on {} ({what}, until {}); {fix}",
            entry.version,
            date(entry.end_of_standard),
            date(entry.end_of_extended)
        ))
    } else if left <= WARN_DAYS {
        Some(format!(
            "EKS cluster {cluster}: Kubernetes {} leaves standard support on {} (in {left} days; {what}); {fix}",
            entry.version,
            date(entry.end_of_standard)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil((1970, 1, 1)), 0);
        assert_eq!(days_from_civil((2000, 3, 1)), 11_017);
        assert_eq!(
            days_from_civil((2026, 12, 6)) - days_from_civil((2026, 12, 2)),
            4
        );
        assert_eq!(
            days_from_civil((2027, 3, 1)) - days_from_civil((2027, 2, 28)),
            1
        );
        assert_eq!(
            days_from_civil((2028, 3, 1)) - days_from_civil((2028, 2, 28)),
            2
        );
    }

    #[test]
    fn warns_within_60_days_and_after() {
        let day = |d| days_from_civil(d);
        // 1.35 ends 2027-03-27: quiet in December 2026, a warning from late January 2027.
        assert_eq!(
            support_warning("x", "1.35", "STANDARD", day((2026, 12, 6))),
            None
        );
        assert_eq!(
            support_warning("x", "1.35", "STANDARD", day((2027, 1, 25))),
            None
        );
        let w = support_warning("x", "1.35", "STANDARD", day((2027, 1, 26))).unwrap();
        assert!(
            w.contains("leaves standard support on 2027-03-27 (in 60 days"),
            "{w}"
        );
        assert!(w.contains("upgrades its control plane"), "{w}");
        // 1.33 is past its end: the extended price is named when the policy is EXTENDED.
        let w = support_warning("x", "1.33", "EXTENDED", day((2026, 12, 6))).unwrap();
        assert!(w.contains("left standard support on 2026-07-29"), "{w}");
        assert!(w.contains("extended-support price"), "{w}");
        assert!(w.contains("amazon_web_services.kubernetes_version"), "{w}");
        // Unknown versions say nothing.
        assert_eq!(
            support_warning("x", "1.99", "STANDARD", day((2026, 12, 6))),
            None
        );
    }

    #[test]
    fn the_init_default_is_in_standard_support_in_december_2026() {
        let default = qhub_core::config::init::DEFAULT_EKS_KUBERNETES_VERSION;
        let entry = lookup(default).expect("the default is in the calendar");
        assert_eq!(entry.version, CALENDAR[0].version, "the newest");
        let dec = days_from_civil((2026, 12, 31));
        assert!(days_from_civil(entry.end_of_standard) - dec > WARN_DAYS);
    }
}
