//! Bench binary for config loading and validation (`cargo bench -p qhub-core --bench validate`).
//!
//! Prints the median and spread of `check_str` on the QHub default AWS config and on a large
//! config (500 JupyterLab profiles, 200 environments), and checks that validation grows linearly
//! with the input (issue #9): thousands of unknown top-level keys, thousands of environments and
//! a 100,000-line config, each including the rendering of the report as `qhub validate` prints it.
//! The run fails when the 100,000-line config takes a second or more, or when quadrupling the
//! input multiplies the time by more than 8 (quadratic growth would give 16). The CLI's end-to-end wall time and peak
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

/// The default AWS config with `keys` unknown top-level keys appended (each an error with a "did
/// you mean").
pub fn unknown_keys(keys: usize) -> String {
    let mut text = default_aws();
    for i in 0..keys {
        text.push_str(&format!("unknown_key_{i}: {i}\n"));
    }
    text
}

/// The CPU time this process has used (user and system), from `/proc/self/stat` in clock
/// ticks of 10 ms (Linux's USER_HZ); `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Validates `text` and renders the report as `qhub validate` does; returns the median time.
/// The time is the CPU time the process spent (wall time where that cannot be read): the
/// promise is about the work, and on a CI machine shared with other jobs wall time also counts
/// the waits for a core. Both are printed.
fn measure_report(name: &str, text: &str, iterations: usize) -> Duration {
    let mut runs: Vec<(Duration, Option<Duration>)> = (0..iterations)
        .map(|_| {
            let cpu = cpu_time();
            let start = Instant::now();
            let (loaded, report) = check_str(std::hint::black_box(text));
            let shown = report.to_string();
            std::hint::black_box((loaded, shown));
            let wall = start.elapsed();
            (wall, cpu.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a)))
        })
        .collect();
    runs.sort_by_key(|(wall, cpu)| cpu.unwrap_or(*wall));
    let (wall, cpu) = runs[runs.len() / 2];
    println!(
        "{name:<40} {:>7} lines  median wall {wall:>9.3?}  cpu {:>9}  ({iterations} runs)",
        text.lines().count(),
        cpu.map_or("n/a".to_string(), |c| format!("{c:.3?}")),
    );
    cpu.unwrap_or(wall)
}

/// Fails when `factor` times the input takes more than twice `factor` times the time (linear
/// growth gives about `factor`, quadratic `factor` squared).
fn assert_linear(what: &str, factor: f64, small: Duration, large: Duration) {
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    println!("{what}: {factor}x the input takes {ratio:.1}x the time");
    assert!(
        ratio < 2.0 * factor,
        "{what}: {factor}x the input took {ratio:.1}x the time; validation must grow linearly"
    );
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

    let runs = if quick { 1 } else { 5 };
    if std::env::args().any(|a| a == "--baseline") {
        // Measure without asserting, to record numbers before a change.
        measure_report("unknown top-level keys: 10,000", &unknown_keys(10_000), 1);
        measure_report("unknown top-level keys: 30,000", &unknown_keys(30_000), 1);
        measure_report("environments: 2,000", &large(0, 2_000), 1);
        measure_report("environments: 8,000", &large(0, 8_000), 1);
        measure_report("100,000-line config", &large(6_000, 5_200), 1);
        measure_report("100,000 unknown top-level keys", &unknown_keys(100_000), 1);
        return;
    }
    let small = measure_report(
        "unknown top-level keys: 10,000",
        &unknown_keys(10_000),
        runs,
    );
    let large_keys = measure_report(
        "unknown top-level keys: 30,000",
        &unknown_keys(30_000),
        runs,
    );
    assert_linear("unknown top-level keys", 3.0, small, large_keys);
    let small = measure_report("environments: 2,000", &large(0, 2_000), runs);
    let large_envs = measure_report("environments: 8,000", &large(0, 8_000), runs);
    assert_linear("environments", 4.0, small, large_envs);
    // 100,000 lines: 6,000 profiles (8 lines each) and 5,200 environments (10 lines each).
    let big = large(6_000, 5_200);
    assert!(big.lines().count() >= 100_000, "{}", big.lines().count());
    let t = measure_report("100,000-line config", &big, runs);
    assert!(
        t < Duration::from_secs(1),
        "a 100,000-line config took {t:?}; it must validate in under a second"
    );
    // And one whose every line is an error: the report must not cost more than the reading.
    let t = measure_report(
        "100,000 unknown top-level keys",
        &unknown_keys(100_000),
        runs,
    );
    assert!(
        t < Duration::from_secs(1),
        "100,000 unknown keys took {t:?}; a 100,000-line config must validate in under a second"
    );
}
