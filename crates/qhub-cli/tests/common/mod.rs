//! Reading a finished `qhub` run, shared by the CLI test files.

use std::process::Output;

use serde_json::Value;

/// The exit code; a run killed by a signal fails the test.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code and both streams, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Parses stdout as exactly one JSON document (trailing text makes this fail).
#[track_caller]
pub fn json_stdout(out: &Output) -> Value {
    let text = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", describe(out)))
}
