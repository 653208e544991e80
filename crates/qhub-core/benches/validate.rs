//! Bench binary for config loading and validation (`cargo bench -p qhub-core --bench validate`).
//!
//! Prints the median and spread of `check_str` on the QHub default AWS config and on a large
//! config (500 JupyterLab profiles, 200 environments). The CLI's end-to-end wall time and peak
//! memory are measured by `scripts/bench-validate` (hyperfine and /usr/bin/time).

use std::time::{Duration, Instant};

use qhub_core::config::check_str;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;

fn default_aws() -> String {
    let opts = InitOptions::new(
        ProviderKind::Aws,
        "bench",
        "bench.example.com",
        "0123456789abcdef",
    );
    render(&opts).expect("render").to_yaml()
}

/// The default AWS config with `profiles` JupyterLab profiles and `envs` environments appended.
pub fn large(profiles: usize, envs: usize) -> String {
    let base = default_aws();
    let mut text = String::new();
    for line in base.lines() {
        text.push_str(line);
        text.push('\n');
        if line == "  jupyterlab:" {
            for i in 0..profiles {
                text.push_str(&format!(
                    "    - display_name: Profile {i}\n      description: generated\n      kubespawner_override:\n        cpu_limit: 4\n        cpu_guarantee: 2\n        mem_limit: 16G\n        mem_guarantee: 8G\n        image: registry.example.com:5000/team/lab:{i}\n"
                ));
            }
        }
        if line == "environments:" {
            for i in 0..envs {
                text.push_str(&format!(
                    "  environment-gen-{i}.yaml:\n    name: gen-{i}\n    channels:\n      - conda-forge\n    dependencies:\n      - python==3.11\n      - numpy\n      - pandas\n      - pip:\n          - requests\n"
                ));
            }
        }
    }
    text
}

fn measure(name: &str, text: &str, iterations: usize) {
    let (loaded, report) = check_str(text);
    assert!(loaded.is_some() && !report.has_errors(), "{name}: {report}");
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let result = check_str(std::hint::black_box(text));
            std::hint::black_box(result);
            start.elapsed()
        })
        .collect();
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{name:<40} {:>7} bytes  median {:>9.3?}  p10 {:>9.3?}  p90 {:>9.3?}  ({iterations} runs)",
        text.len(),
        pct(0.5),
        pct(0.1),
        pct(0.9)
    );
}

fn main() {
    // `cargo test --benches` passes `--bench`-less args; keep quick there.
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let n = if quick { 3 } else { 200 };
    measure("check_str: qhub init aws (default)", &default_aws(), n);
    measure(
        "check_str: 500 profiles + 200 environments",
        &large(500, 200),
        n / 4 + 1,
    );
}
