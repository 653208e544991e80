//! The guides in `docs/` and the README against the code: every `qhub …` command they show
//! exists with the flags it uses (checked against the CLI's clap definition), and the AWS IAM
//! policy of `docs/aws.md` lists exactly the actions qhub calls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files whose commands are checked: `docs/*.md` and the README.
fn guides() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    files
}

/// `qhub …` commands of a Markdown text, with their line numbers: the lines of code blocks and
/// the inline code spans that start with `qhub `.
fn commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
            if command.starts_with("qhub ") {
                out.push((i + 1, command.to_string()));
            }
            continue;
        }
        // Inline spans: the odd pieces between backticks (a `` `` `` span is rare enough).
        for (n, piece) in line.split('`').enumerate() {
            if n % 2 == 1 && piece.starts_with("qhub ") {
                out.push((i + 1, piece.to_string()));
            }
        }
    }
    out
}

/// A token that stands for a value the reader fills in (`FILE`, `KIND/NAME`, `aws|gcp`, `…`).
fn placeholder(token: &str) -> bool {
    token.chars().any(|c| "|[]<>{}…$".contains(c))
        || token.contains("...")
        || (token.chars().any(|c| c.is_ascii_uppercase())
            && !token.chars().any(|c| c.is_ascii_lowercase()))
}

/// Checks one command line against the clap definition; the problem, if any.
fn check(line: &str) -> Result<(), String> {
    let root = qhub_cli::Cli::command();
    let mut cmd = root.clone();
    let mut path = vec!["qhub".to_string()];
    let mut positional = 0usize;
    let mut tokens = line.split_whitespace().skip(1).peekable();
    let find_long = |cmd: &clap::Command, name: &str| -> Option<clap::Arg> {
        cmd.get_arguments()
            .chain(root.get_arguments().filter(|a| a.is_global_set()))
            .find(|a| a.get_long() == Some(name))
            .cloned()
    };
    while let Some(token) = tokens.next() {
        // Shell operators end the command; `/` and `\|` separate alternatives in prose and
        // tables (`qhub plan / deploy`): the first is checked.
        if matches!(
            token,
            "|" | ">" | ">>" | "&&" | ";" | "#" | "2>&1" | "\\" | "/" | "\\|"
        ) || token.starts_with('#')
            || token.starts_with('>')
        {
            break;
        }
        if let Some(flag) = token.strip_prefix("--") {
            let (name, inline_value) = match flag.split_once('=') {
                Some((n, _)) => (n, true),
                None => (flag, false),
            };
            if matches!(name, "help" | "version") {
                continue;
            }
            let Some(arg) = find_long(&cmd, name) else {
                return Err(format!("`{}` has no flag --{name}", path.join(" ")));
            };
            if arg.get_action().takes_values() && !inline_value {
                tokens.next();
            }
            continue;
        }
        if let Some(shorts) = token.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (i, c) in shorts.char_indices() {
                if c == 'h' || c == 'V' {
                    continue;
                }
                let Some(arg) = cmd
                    .get_arguments()
                    .chain(root.get_arguments().filter(|a| a.is_global_set()))
                    .find(|a| a.get_short() == Some(c))
                    .cloned()
                else {
                    return Err(format!("`{}` has no flag -{c}", path.join(" ")));
                };
                if arg.get_action().takes_values() {
                    if i + c.len_utf8() == shorts.len() {
                        tokens.next();
                    }
                    break;
                }
            }
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(token).cloned() {
            path.push(token.to_string());
            cmd = sub;
            positional = 0;
            continue;
        }
        if cmd.has_subcommands() && cmd.get_positionals().next().is_none() {
            return Err(format!("`{}` has no subcommand `{token}`", path.join(" ")));
        }
        let Some(arg) = cmd.get_positionals().nth(positional).cloned() else {
            if placeholder(token) {
                continue;
            }
            return Err(format!("`{}` takes no argument `{token}`", path.join(" ")));
        };
        positional += 1;
        let values = arg.get_possible_values();
        if !values.is_empty()
            && !placeholder(token)
            && !values.iter().any(|v| v.matches(token, false))
        {
            return Err(format!(
                "`{}`: `{token}` is not one of {:?}",
                path.join(" "),
                values
                    .iter()
                    .map(|v| v.get_name().to_string())
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_qhub_command_in_the_docs_exists_with_its_flags() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in guides() {
        for (line, command) in commands(&read(&file)) {
            checked += 1;
            if let Err(e) = check(&command) {
                problems.push(format!(
                    "{}:{line}: {command}\n    {e}",
                    file.strip_prefix(root()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} commands found: is the scan broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_command_checker_catches_what_it_should() {
    assert_eq!(
        check("qhub plan -c qhub-config.yaml --detailed-exitcode"),
        Ok(())
    );
    assert_eq!(check("qhub -o json secrets show keycloak-admin"), Ok(()));
    assert_eq!(check("qhub init aws --project P --domain D"), Ok(()));
    assert!(check("qhub status --concurrency 4").is_err());
    assert!(check("qhub plan --lock-timeout 5m").is_err());
    assert!(check("qhub deploy --dns-wiat 5m").is_err());
    assert!(check("qhub init azure --project P").is_err());
    assert!(check("qhub keycloak adduser alice").is_err());
    assert!(check("qhub secrets show root-password").is_err());
}

/// Where the AWS SDK clients of qhub-aws live (`qhub-aws/src/client.rs`), and the IAM service
/// prefix of each one's actions (the Service Authorization Reference's prefixes).
const CLIENTS: &[(&str, &str)] = &[
    ("ec2", "ec2"),
    ("eks", "eks"),
    ("iam", "iam"),
    ("efs", "elasticfilesystem"),
    ("sts", "sts"),
    ("elb", "elasticloadbalancing"),
    ("elbv2", "elasticloadbalancing"),
    ("quotas", "servicequotas"),
    ("s3", "s3"),
];

/// SDK operations whose IAM action has another name (S3's are the odd ones; the Service
/// Authorization Reference lists the operations each action allows).
const RENAMED: &[(&str, &str)] = &[
    ("s3:PutBucketEncryption", "s3:PutEncryptionConfiguration"),
    ("s3:PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    (
        "servicequotas:GetAwsDefaultServiceQuota",
        "servicequotas:GetAWSDefaultServiceQuota",
    ),
];

/// Actions AWS authorizes beside an operation qhub calls (docs/aws.md explains each).
const IMPLIED: &[&str] = &[
    "ec2:CreateTags",
    "ec2:CreateNetworkInterface",
    "elasticfilesystem:TagResource",
    "iam:TagRole",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
    "s3:ListBucket",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reads")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `(client, operation)` for each `client.operation()` call in `text`: an SDK operation
/// builder is made from a client field by a method without arguments.
fn sdk_calls(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let ident = |i: usize| {
        let mut j = i;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        (chars[i..j].iter().collect::<String>(), j)
    };
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        let (word, end) = ident(i);
        i = end;
        if !CLIENTS.iter().any(|(c, _)| *c == word) {
            continue;
        }
        let dot = skip_ws(end);
        if chars.get(dot) != Some(&'.') {
            continue;
        }
        let (op, after) = ident(skip_ws(dot + 1));
        let open = skip_ws(after);
        if op.is_empty() || chars.get(open) != Some(&'(') {
            continue;
        }
        if chars.get(skip_ws(open + 1)) == Some(&')') && op != "clone" {
            out.insert((word, op));
        }
    }
    out
}

/// The IAM action of an SDK call.
fn action(client: &str, operation: &str) -> String {
    let prefix = CLIENTS
        .iter()
        .find(|(c, _)| *c == client)
        .map(|(_, p)| *p)
        .unwrap_or(client);
    let name: String = operation
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let action = format!("{prefix}:{name}");
    RENAMED
        .iter()
        .find(|(from, _)| *from == action)
        .map(|(_, to)| (*to).to_string())
        .unwrap_or(action)
}

/// Every action qhub-aws calls, from its source (test modules left out).
fn called_actions() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("crates/qhub-aws/src"), &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let text = read(&file);
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (client, op) in sdk_calls(&code) {
            out.insert(action(&client, &op));
        }
    }
    out
}

#[test]
fn aws_policy_lists_every_action_qhub_calls() {
    let doc = read(&root().join("docs/aws.md"));
    let json = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/aws.md has a ```json policy");
    let policy: serde_json::Value = serde_json::from_str(json).expect("the policy is JSON");
    let listed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let called = called_actions();
    assert!(
        called.len() > 80 && called.contains("eks:CreateCluster"),
        "the scan of qhub-aws found only {called:?}"
    );
    let wanted: BTreeSet<String> = called
        .iter()
        .cloned()
        .chain(IMPLIED.iter().map(|a| (*a).to_string()))
        .collect();
    let missing: Vec<&String> = wanted.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&wanted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/aws.md's policy is out of date:\n  missing (qhub calls them): {missing:?}\n  not called any more: {stale:?}"
    );
    assert!(
        doc.contains(&format!("({} actions)", listed.len())),
        "docs/aws.md should say the policy has {} actions",
        listed.len()
    );
    for implied in IMPLIED {
        assert!(
            doc.contains(&format!("| `{implied}` |")),
            "docs/aws.md does not say why {implied} is needed"
        );
    }
}

#[test]
fn the_sdk_call_scan_finds_calls_across_lines_and_skips_clones() {
    let calls = sdk_calls(
        "let x = p.clients().await?.efs\n    .describe_file_systems()\n    .send();\nlet s = self.s3.clone();\nec2.create_vpc ( ).send()",
    );
    let calls: Vec<(&str, &str)> = calls
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        calls,
        [("ec2", "create_vpc"), ("efs", "describe_file_systems")]
    );
    assert_eq!(
        action("s3", "put_bucket_encryption"),
        "s3:PutEncryptionConfiguration"
    );
    assert_eq!(
        action("efs", "create_mount_target"),
        "elasticfilesystem:CreateMountTarget"
    );
}
