//! Build identity for `qhub version`: the commit (from git, when the source is a checkout) and
//! the build date. The date is `SOURCE_DATE_EPOCH` when set (reproducible builds), else the
//! commit's date, so the same commit always builds the same binary; neither is invented when
//! unknown (a source tarball without git reports them as unknown).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit or checkout moves HEAD's reflog.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo::rerun-if-changed={dir}/HEAD");
        println!("cargo::rerun-if-changed={dir}/logs/HEAD");
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map(|c| {
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
        if dirty { format!("{c}-modified") } else { c }
    });
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch.trim().parse::<i64>().ok().map(day_of),
        Err(_) => git(&["log", "-1", "--format=%cs", "HEAD"]),
    };
    println!(
        "cargo::rustc-env=QHUB_BUILD_COMMIT={}",
        commit.unwrap_or_default()
    );
    println!(
        "cargo::rustc-env=QHUB_BUILD_DATE={}",
        date.unwrap_or_default()
    );
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn day_of(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
