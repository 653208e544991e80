//! `qhub users` end to end on the sandbox: its Keycloak (the admin-API emulator the sandbox
//! serves, as the engine reaches it) after a deploy. Passwords go in on stdin only and are
//! never echoed, nor logged even at `-vvv`.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{code, describe, json_stdout, stderr, stdout};

/// Runs `qhub` in `dir`, `stdin` piped in.
fn qhub_with(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qhub"))
        .args(args)
        .current_dir(dir)
        .env("QHUB_SANDBOX_TIME_SCALE", "0.0001")
        .env_remove("QHUB_SANDBOX_FAULTS")
        .env_remove("QHUB_KEYCLOAK_URL")
        .env_remove("QHUB_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qhub runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("qhub ends")
}

fn qhub(dir: &Path, args: &[&str]) -> Output {
    qhub_with(dir, args, "")
}

/// A deployed sandbox.
pub fn deployed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = qhub(
        d,
        &[
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    assert_eq!(code(&init), 0, "{}", describe(&init));
    let deploy = qhub(d, &["deploy", "--disable-prompt"]);
    assert_eq!(code(&deploy), 0, "{}", describe(&deploy));
    dir
}

/// Whether the sandbox's Keycloak holds `password` for `user`.
fn password_matches(dir: &Path, user: &str, password: &str) -> bool {
    let path = dir.join(".qhub-sandbox/keycloak-demo-dev.json");
    assert!(
        path.exists(),
        "the sandbox's Keycloak is kept in {}",
        path.display()
    );
    let api = qhub_sandbox::keycloak_api::KeycloakApi::persistent(Default::default(), &path)
        .expect("open the sandbox's Keycloak");
    api.password_matches("qhub", user, password)
}

#[test]
fn users_are_managed_through_the_deployments_keycloak() {
    let dir = deployed();
    let d = dir.path();
    let password = "Sw0rdfish-not-in-argv";
    let add = qhub_with(
        d,
        &[
            "-vvv",
            "users",
            "add",
            "alice",
            "--email",
            "alice@example.com",
            "--group",
            "admin",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    assert_eq!(code(&add), 0, "{}", describe(&add));
    assert!(
        stdout(&add).contains("created user alice (groups: admin, analyst"),
        "{}",
        describe(&add)
    );
    assert!(
        !stdout(&add).contains(password) && !stderr(&add).contains(password),
        "the password was printed or logged"
    );
    assert!(
        password_matches(d, "alice", password),
        "the trailing newline is not part of it"
    );

    // Again, as it is: exit 0, unchanged. With another e-mail: an error naming it.
    let again = qhub(
        d,
        &[
            "-o",
            "json",
            "users",
            "add",
            "alice",
            "--email",
            "alice@example.com",
            "--group",
            "admin",
        ],
    );
    assert_eq!(code(&again), 0, "{}", describe(&again));
    assert_eq!(json_stdout(&again)["outcome"], "unchanged");
    let other = qhub(d, &["users", "add", "alice", "--email", "a@elsewhere.org"]);
    assert_eq!(code(&other), 1, "{}", describe(&other));
    assert!(
        stderr(&other).contains("user `alice` already exists with e-mail"),
        "{}",
        describe(&other)
    );

    // An unknown group lists the existing ones.
    let bad = qhub(d, &["users", "add", "bob", "--group", "admins"]);
    assert_eq!(code(&bad), 1, "{}", describe(&bad));
    assert!(
        stderr(&bad).contains("the groups are: admin, analyst, developer"),
        "{}",
        describe(&bad)
    );

    // Groups, then the list.
    let joined = qhub(d, &["users", "add-to-group", "alice", "developer"]);
    assert_eq!(code(&joined), 0, "{}", describe(&joined));
    let left = qhub(
        d,
        &["-o", "json", "users", "remove-from-group", "alice", "admin"],
    );
    assert_eq!(json_stdout(&left)["outcome"], "left", "{}", describe(&left));
    let list = qhub(d, &["-o", "json", "users", "list"]);
    assert_eq!(code(&list), 0, "{}", describe(&list));
    let doc = json_stdout(&list);
    assert_eq!(doc["users"][0]["username"], "alice");
    assert_eq!(doc["users"][0]["groups"][0], "analyst");
    assert_eq!(doc["users"][0]["groups"][1], "developer");
    let text = qhub(d, &["users", "list"]);
    assert!(
        stdout(&text).contains("alice     alice@example.com  analyst, developer"),
        "{}",
        describe(&text)
    );

    // A generated password is printed once, alone on stdout; an empty stdin is refused.
    let generated = qhub(d, &["users", "set-password", "alice", "--generate"]);
    assert_eq!(code(&generated), 0, "{}", describe(&generated));
    let new = stdout(&generated).trim().to_string();
    assert_eq!(new.len(), 20, "{}", describe(&generated));
    assert!(password_matches(d, "alice", &new));
    let empty = qhub(d, &["users", "set-password", "alice", "--password-stdin"]);
    assert_eq!(code(&empty), 2, "{}", describe(&empty));
    let neither = qhub(d, &["users", "set-password", "alice"]);
    assert_eq!(code(&neither), 2, "{}", describe(&neither));

    let removed = qhub(d, &["users", "remove", "alice"]);
    assert_eq!(code(&removed), 0, "{}", describe(&removed));
    let gone = qhub(d, &["users", "remove", "alice"]);
    assert_eq!(code(&gone), 1, "{}", describe(&gone));
    assert!(
        stderr(&gone).contains("user `alice` does not exist"),
        "{}",
        describe(&gone)
    );
}

#[test]
fn users_before_a_deploy_say_to_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = qhub(
        d,
        &[
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ],
    );
    assert_eq!(code(&init), 0, "{}", describe(&init));
    let out = qhub(d, &["users", "list"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("qhub deploy"), "{}", describe(&out));
}
