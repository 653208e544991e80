//! Ctrl-C or SIGTERM (a cancelled CI job) during `qhub deploy`: no new change starts, the
//! changes in flight finish, the command says what was and was not done and exits with the
//! signal's code (130, 143), and a re-run converges.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn qhub(dir: &std::path::Path, scale: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
    cmd.current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", scale)
        .env_remove("QHUB_SANDBOX_FAULTS")
        .stdin(Stdio::null());
    cmd
}

fn world(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(".qhub-sandbox/world.json")).expect("world.json");
    serde_json::from_str(&text).expect("world.json parses")
}

#[test]
fn ctrl_c_lets_in_flight_changes_finish_and_a_rerun_converges() {
    interrupt_then_rerun("-INT", 130);
}

#[test]
fn sigterm_behaves_like_ctrl_c() {
    interrupt_then_rerun("-TERM", 143);
}

fn interrupt_then_rerun(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let init = qhub(dir.path(), "0.001")
        .args([
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    // Slow enough that the cluster (600 s real, 6 s here) is in flight when Ctrl-C arrives.
    let mut child = qhub(dir.path(), "0.01")
        // `-v`: a progress line per object, so the cluster's start shows; logs stay at warn.
        .args(["deploy", "--disable-prompt", "-v"])
        .env("QHUB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt the moment qhub reports that the cluster create started (an event, not a
    // timer: the test holds however loaded the machine is). The rest of stderr is read on.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let started = loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("cluster/demo-dev: started") {
                    break true;
                }
            }
            _ => break false,
        }
    };
    assert!(started, "the cluster create never started:\n{seen}");
    let rest = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
    let out = child.wait_with_output().unwrap();
    let stderr = rest.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("stopping"), "says it stops: {stderr}");
    assert!(
        stdout.contains("cancelled"),
        "reports the cancellation: {stdout}"
    );
    assert!(
        stderr.contains("not started"),
        "lists what was not done: {stderr}"
    );
    // The cluster create that was in flight finished; the node groups that wait on it never began.
    let w = world(dir.path());
    let kinds: Vec<&str> = w["resources"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"cluster"),
        "the in-flight cluster create finished: {kinds:?}"
    );
    assert!(
        !kinds.contains(&"node_group"),
        "no node group started after Ctrl-C: {kinds:?}"
    );
    // A re-run picks up from what exists and converges.
    let rerun = qhub(dir.path(), "0.0001")
        .args(["deploy", "--disable-prompt"])
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let plan = qhub(dir.path(), "0.0001")
        .args(["plan", "--output", "json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["changes"].as_array().map(Vec::len), Some(0), "{plan}");
}
