//! `qhub cost` on the configs `qhub init` writes, against numbers computed by hand from
//! `crates/qhub-core/src/cost/prices.json` (730 hours a month; DigitalOcean's monthly caps).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{code, describe, json_stdout, stderr, stdout};

fn qhub(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env_remove("PROJECT_ID")
        .env_remove("QHUB_LOG")
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
    let sandbox = init("sandbox", &[]);
    let out = qhub(sandbox.path(), &["cost"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        stderr(&out).contains("not supported yet"),
        "{}",
        describe(&out)
    );
}
