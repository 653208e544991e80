//! `qhub cost` on the configs `qhub init` writes, and the cost block of `qhub plan` and
//! `qhub destroy` on the sandbox, against numbers computed by hand from
//! `crates/qhub-core/src/cost/prices.json` (730 hours a month; DigitalOcean's monthly caps).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr, stdout};

fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("PROJECT_ID")
        .env_remove("QHUB_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("qhub runs")
}

fn init(provider: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "init",
        provider,
        "--project",
        "demo",
        "--domain",
        "demo.example.com",
        "--disable-prompt",
    ];
    if provider == "gcp" {
        args.extend(["--gcp-project", "my-gcp-project"]);
    }
    args.extend(extra);
    let out = qhub(dir.path(), &args);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    dir
}

#[track_caller]
fn close(actual: &serde_json::Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {actual}"));
    assert!((a - expected).abs() < 1e-6, "{a} != {expected}");
}

#[test]
fn the_default_configs_cost_what_the_table_says() {
    // (provider, min hourly, max hourly, min monthly, max monthly), by hand:
    // aws us-west-2: general m5.2xlarge 1–1 0.384; user, worker m5.xlarge 1–5 0.192 each;
    //   EKS 0.10; NLB 0.0225; EFS 200 GiB × 0.30 = 60/month = 60/730 per hour.
    // gcp us-central1: general n1-standard-8 1–1 0.38; user, worker n1-standard-4 0–5 0.19
    //   each; GKE 0.10; forwarding rule 0.025; 200 GiB × 0.10 = 20/month.
    // do nyc3: general g-8vcpu-32gb 1–1 0.375 ($252/month); user, worker g-4vcpu-16gb 1–5
    //   0.1875 ($126/month) each; DOKS 0; LB 0.01786 ($12/month); 200 GiB × 0.10 = 20/month.
    let aws_fixed_h = 0.10 + 0.0225 + 60.0 / 730.0;
    let gcp_fixed_h = 0.10 + 0.025 + 20.0 / 730.0;
    let do_fixed_h = 0.01786 + 20.0 / 730.0;
    let cases = [
        (
            "aws",
            0.384 + 2.0 * 0.192 + aws_fixed_h,
            0.384 + 10.0 * 0.192 + aws_fixed_h,
            (0.384 + 2.0 * 0.192 + 0.1225) * 730.0 + 60.0,
            (0.384 + 10.0 * 0.192 + 0.1225) * 730.0 + 60.0,
        ),
        (
            "gcp",
            0.38 + gcp_fixed_h,
            0.38 + 10.0 * 0.19 + gcp_fixed_h,
            (0.38 + 0.125) * 730.0 + 20.0,
            (0.38 + 10.0 * 0.19 + 0.125) * 730.0 + 20.0,
        ),
        (
            "do",
            0.375 + 2.0 * 0.1875 + do_fixed_h,
            0.375 + 10.0 * 0.1875 + do_fixed_h,
            252.0 + 2.0 * 126.0 + 12.0 + 20.0,
            252.0 + 10.0 * 126.0 + 12.0 + 20.0,
        ),
    ];
    for (provider, min_h, max_h, min_m, max_m) in cases {
        let dir = init(provider, &[]);
        let out = qhub(dir.path(), &["-o", "json", "cost"]);
        assert_eq!(code(&out), 0, "{provider}: {}", describe(&out));
        let doc = json_stdout(&out);
        assert_eq!(doc["as_of"], "2026-12-07");
        assert_eq!(doc["complete"], true, "{doc:#}");
        close(&doc["total"]["min_hourly"], min_h);
        close(&doc["total"]["max_hourly"], max_h);
        close(&doc["total"]["min_monthly"], min_m);
        close(&doc["total"]["max_monthly"], max_m);
        println!("{provider}: {min_h:.4}–{max_h:.4} USD/hour, {min_m:.2}–{max_m:.2} USD/month");
        let text = qhub(dir.path(), &["cost"]);
        assert_eq!(code(&text), 0, "{}", describe(&text));
        assert!(
            stdout(&text).contains(&format!("at the minimum, ${max_h:.4}/hour")),
            "{}",
            stdout(&text)
        );
    }
}

#[test]
fn an_unknown_type_or_region_is_never_guessed() {
    let dir = init("aws", &["--region", "eu-north-1"]);
    let out = qhub(dir.path(), &["cost"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        stderr(&out).contains("no price known for region eu-north-1 of aws")
            && stderr(&out).contains("us-east-1, us-west-2"),
        "{}",
        describe(&out)
    );
    let dir = init("do", &[]);
    let config = dir.path().join("qhub-config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen("g-8vcpu-32gb", "so-32vcpu-256gb", 1)).unwrap();
    let out = qhub(dir.path(), &["-o", "json", "cost"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["complete"], false);
    assert_eq!(doc["lines"][0]["cost"], serde_json::Value::Null);
    assert!(
        doc["lines"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no price known for so-32vcpu-256gb in nyc3"),
        "{doc:#}"
    );
    let text = qhub(dir.path(), &["cost"]);
    assert!(
        stdout(&text).contains("no price known"),
        "{}",
        describe(&text)
    );
    assert!(stdout(&text).contains("incomplete"), "{}", describe(&text));
    let local = init("local", &[]);
    let out = qhub(local.path(), &["cost"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        stderr(&out).contains("not supported yet"),
        "{}",
        describe(&out)
    );
}

/// The sandbox's defaults by hand, from the `sandbox` prices of prices.json (its simulated
/// types priced as AWS us-west-2's of the same shape): general sandbox-8cpu-32gb 1–1 0.384;
/// user and worker sandbox-4cpu-16gb 0–5 0.192 each; cluster 0.10; LB 0.0225; 200 GiB × 0.30
/// = 60/month. `user_max` is the user group's maximum.
fn sandbox_monthly(user_max: f64) -> (f64, f64) {
    let fixed = (0.384 + 0.10 + 0.0225) * 730.0 + 60.0;
    (fixed, fixed + (user_max + 5.0) * 0.192 * 730.0)
}

/// `qhub -o json plan` (both stages) with the published schema checked on its document.
fn plan_json(dir: &Path) -> serde_json::Value {
    let out = qhub(dir, &["-o", "json", "plan"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = json_stdout(&out);
    let schema_out = qhub(dir, &["schema", "output"]);
    let mut schema = json_stdout(&schema_out);
    let map = schema.as_object_mut().unwrap();
    map.remove("anyOf");
    map.insert("$ref".into(), "#/$defs/plan".into());
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
    doc
}

#[test]
fn plan_shows_how_a_change_moves_the_cost_and_destroy_takes_it_to_zero() {
    let dir = init("sandbox", &[]);
    let d = dir.path();
    let config = d.join("qhub-config.yaml");
    // Nothing exists: from $0 to the config's cost.
    let first = plan_json(d);
    let cost = &first["cost"];
    let (min, max) = sandbox_monthly(5.0);
    assert_eq!(cost["provider"], "sandbox", "{cost:#}");
    assert_eq!(cost["as_of"], "2026-12-07", "{cost:#}");
    close(&cost["before"]["cost"]["max_monthly"], 0.0);
    close(&cost["after"]["cost"]["min_monthly"], min);
    close(&cost["after"]["cost"]["max_monthly"], max);
    let deploy = qhub(d, &["deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));
    assert!(
        stdout(&deploy).contains("Cost: $0.00–$0.00/month → $"),
        "{}",
        describe(&deploy)
    );

    // A plan with nothing to change has no cost block.
    let noop = plan_json(d);
    assert_eq!(noop["in_sync"], true, "{noop:#}");
    assert!(noop.get("cost").is_none(), "{noop:#}");
    let text = qhub(d, &["plan"]);
    assert!(!stdout(&text).contains("Cost:"), "{}", describe(&text));

    // The user group's maximum from 5 to 7: both sides, from what exists and from the config.
    let yaml = std::fs::read_to_string(&config).unwrap();
    let user = yaml.find("  user:").expect("a user group");
    let at = user + yaml[user..].find("max_nodes: 5").expect("its max_nodes");
    let mut edited = yaml.clone();
    edited.replace_range(at..at + "max_nodes: 5".len(), "max_nodes: 7");
    std::fs::write(&config, &edited).unwrap();
    let doc = plan_json(d);
    let cost = &doc["cost"];
    let (min7, max7) = sandbox_monthly(7.0);
    close(&cost["before"]["cost"]["min_monthly"], min);
    close(&cost["before"]["cost"]["max_monthly"], max);
    close(&cost["after"]["cost"]["min_monthly"], min7);
    close(&cost["after"]["cost"]["max_monthly"], max7);
    assert_eq!(cost["before"]["unknown"], serde_json::Value::Null);
    let text = stdout(&qhub(d, &["plan"]));
    let line = text
        .lines()
        .find(|l| l.starts_with("Cost: "))
        .unwrap_or_else(|| panic!("no cost line:\n{text}"));
    // The amounts of the JSON (checked above) as the text rounds them: to the cent, thousands
    // grouped.
    for v in [
        &cost["before"]["cost"]["min_monthly"],
        &cost["before"]["cost"]["max_monthly"],
        &cost["after"]["cost"]["min_monthly"],
        &cost["after"]["cost"]["max_monthly"],
    ] {
        let v = v.as_f64().unwrap();
        let cents = format!("{v:.2}");
        let (whole, frac) = cents.split_once('.').unwrap();
        let whole: u64 = whole.parse().unwrap();
        let grouped = if whole >= 1000 {
            format!("{},{:03}", whole / 1000, whole % 1000)
        } else {
            whole.to_string()
        };
        assert!(line.contains(&format!("${grouped}.{frac}")), "{v}: {line}");
    }
    assert!(
        line.contains("→") && line.contains("2026-12-07, local-1"),
        "{line}"
    );
    println!("{line}");

    // An instance type without a price: the cost after is unknown, never 0.
    std::fs::write(
        &config,
        edited.replacen("sandbox-8cpu-32gb", "sandbox-96cpu-768gb", 1),
    )
    .unwrap();
    let doc = plan_json(d);
    let after = &doc["cost"]["after"];
    assert_eq!(after["cost"], serde_json::Value::Null, "{after:#}");
    assert!(
        after["unknown"]
            .as_str()
            .is_some_and(|w| w.contains("no price known for sandbox-96cpu-768gb in local-1")),
        "{after:#}"
    );
    let text = stdout(&qhub(d, &["plan"]));
    assert!(text.contains("/month → unknown"), "{text}");
    assert!(text.contains("cost after unknown: "), "{text}");
    assert!(!text.contains("→ $0.00"), "{text}");

    // Destroy: from what exists to $0.
    std::fs::write(&config, &yaml).unwrap();
    let out = qhub(d, &["-o", "json", "destroy", "--disable-prompt"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let cost = &json_stdout(&out)["plan"]["cost"];
    close(&cost["before"]["cost"]["max_monthly"], max);
    close(&cost["after"]["cost"]["min_monthly"], 0.0);
    close(&cost["after"]["cost"]["max_monthly"], 0.0);
}
