//! `qhub status`'s health table: each listed service's check through the load balancer
//! ([`qhub_core::kubernetes::health`]), as text.

/// The health table: component, URL, check, result and latency, then what answered for each
/// unhealthy one, or why the checks were not run.
pub(crate) fn text(h: &qhub_core::kubernetes::health::HealthReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("health (through the load balancer):\n");
    let url_width = h.checks.iter().map(|r| r.url.len()).max().unwrap_or(0);
    for r in &h.checks {
        let latency = r
            .latency_secs
            .map_or_else(|| "-".to_string(), |l| format!("{:.0}ms", l * 1000.0));
        let _ = writeln!(
            out,
            "  {:<14} {:<url_width$}  {:<9} {:>7}  {}",
            r.component,
            r.url,
            r.result.word(),
            latency,
            r.check
        );
        if let Some(a) = &r.answered {
            let _ = writeln!(out, "  {:<14} got: {a}", "");
        }
    }
    if let Some(why) = &h.skipped {
        let _ = writeln!(out, "  not run: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use qhub_core::kubernetes::health::{HealthReport, Outcome, Row};

    fn row(component: &str, url: &str, result: Outcome, answered: Option<&str>) -> Row {
        Row {
            component: component.into(),
            url: url.into(),
            check: "GET /hub/health answers 200".into(),
            result,
            answered: answered.map(str::to_string),
            latency_secs: (result != Outcome::NotRun).then_some(0.012),
        }
    }

    #[test]
    fn the_table_names_each_check_and_what_answered() {
        let report = HealthReport {
            ran: true,
            skipped: None,
            checks: vec![
                row(
                    "jupyterhub",
                    "https://d.example.com/",
                    Outcome::Healthy,
                    None,
                ),
                row(
                    "keycloak",
                    "https://d.example.com/auth/",
                    Outcome::Unhealthy,
                    Some("503 Service Unavailable"),
                ),
            ],
        };
        let text = super::text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "health (through the load balancer):");
        assert!(
            lines[1].contains("jupyterhub")
                && lines[1].contains("healthy")
                && lines[1].contains("12ms")
                && lines[1].ends_with("GET /hub/health answers 200"),
            "{text}"
        );
        assert!(
            lines[2].contains("keycloak") && lines[2].contains("UNHEALTHY"),
            "{text}"
        );
        assert!(lines[3].ends_with("got: 503 Service Unavailable"), "{text}");
        let skipped = HealthReport::skipped(&[], "the sandbox's load balancer is simulated");
        assert!(
            super::text(&skipped).contains("not run: the sandbox's load balancer is simulated")
        );
    }
}
