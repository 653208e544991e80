//! Parsers for the value formats the config uses: DNS names, Kubernetes versions, OCI image
//! references, resource quantities, e-mail addresses and QHub names. Each returns a message that
//! says what is wrong, for use in diagnostics.

/// Checks a DNS name (RFC 1123 labels, at most 253 characters; a trailing dot is allowed).
pub fn dns_name(name: &str) -> Result<(), String> {
    if let Some((scheme, _)) = name.split_once("://") {
        return Err(format!(
            "`{name}` includes a URL scheme (`{scheme}://`); give only the host name"
        ));
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("the domain is empty".into());
    }
    if trimmed.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{name}` has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{name}` contains `{c}`; DNS names use only letters, digits, `-` and `.`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

/// A parsed Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version, when given.
    pub patch: Option<u32>,
    /// Provider suffix such as `do.0` or `gke.1200`.
    pub suffix: Option<String>,
}

/// Parses `MAJOR.MINOR[.PATCH]` with an optional provider suffix (`-do.N`, `-gke.N`).
/// `allowed_suffix` is the suffix family the provider uses (`do`, `gke`), if any.
pub fn kubernetes_version(
    text: &str,
    allowed_suffix: Option<&str>,
) -> Result<KubernetesVersion, String> {
    let (numbers, suffix) = match text.split_once('-') {
        Some((n, s)) => (n, Some(s)),
        None => (text, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let expected = match allowed_suffix {
        Some(family) => format!("MAJOR.MINOR[.PATCH] or a slug like `1.33.1-{family}.0`"),
        None => "MAJOR.MINOR[.PATCH], e.g. `1.33`".to_string(),
    };
    let bad = || format!("`{text}` is not a Kubernetes version; expected {expected}");
    let (major, minor, patch) = match parts.as_slice() {
        [a, b] => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?, None),
        [a, b, c] => (
            num(a).ok_or_else(bad)?,
            num(b).ok_or_else(bad)?,
            Some(num(c).ok_or_else(bad)?),
        ),
        _ => return Err(bad()),
    };
    if major != 1 {
        return Err(format!("`{text}`: Kubernetes versions start with `1.`"));
    }
    let suffix = match (suffix, allowed_suffix) {
        (None, _) => None,
        (Some(s), Some(family)) => {
            let n = s
                .strip_prefix(family)
                .and_then(|r| r.strip_prefix('.'))
                .ok_or_else(bad)?;
            if patch.is_none() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            Some(s.to_string())
        }
        (Some(_), None) => return Err(bad()),
    };
    Ok(KubernetesVersion {
        major,
        minor,
        patch,
        suffix,
    })
}

/// A parsed OCI image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host (with port), when given.
    pub registry: Option<String>,
    /// Repository path.
    pub repository: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest, when given.
    pub digest: Option<String>,
}

/// Parses an image reference per the OCI distribution reference grammar
/// (`[registry[:port]/]path[:tag][@digest]`; registry ports are allowed).
pub fn image_reference(text: &str) -> Result<ImageReference, String> {
    if text.is_empty() {
        return Err("the image reference is empty".into());
    }
    if text.len() > 4096 {
        return Err("the image reference is too long".into());
    }
    let (rest, digest) = match text.split_once('@') {
        Some((r, d)) => {
            check_digest(d).map_err(|e| format!("`{text}`: {e}"))?;
            (r, Some(d.to_string()))
        }
        None => (text, None),
    };
    // A tag is after the last `:` that follows the last `/`.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let ok_first = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok_first || !ok_rest || tag.len() > 128 {
            return Err(format!(
                "`{text}`: tag `{tag}` must be 1-128 of letters, digits, `_`, `.`, `-` (not starting with `.` or `-`)"
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let registry = if components.len() > 1
        && (components[0].contains(['.', ':'])
            || components[0] == "localhost"
            || components[0].chars().any(|c| c.is_ascii_uppercase()))
    {
        let host = components.remove(0);
        check_registry(host).map_err(|e| format!("`{text}`: {e}"))?;
        Some(host.to_string())
    } else {
        None
    };
    for c in &components {
        check_path_component(c).map_err(|e| format!("`{text}`: {e}"))?;
    }
    Ok(ImageReference {
        registry,
        repository: components.join("/"),
        tag: tag.map(str::to_string),
        digest,
    })
}

fn check_registry(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, Some(p)),
        _ => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(format!("registry port `{port}` is not a port number"));
    }
    if name.starts_with('[') && name.ends_with(']') {
        return Ok(());
    }
    for comp in name.split('.') {
        let ok = !comp.is_empty()
            && comp.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !comp.starts_with('-')
            && !comp.ends_with('-');
        if !ok {
            return Err(format!("registry host `{name}` is not a valid host name"));
        }
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), String> {
    // alpha-numeric (separator alpha-numeric)*, separator := [_.] | __ | [-]+
    let bad = || {
        format!(
            "repository component `{c}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`"
        )
    };
    if c.is_empty() {
        return Err("the repository has an empty component (`//` or a trailing `/`)".into());
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest `{d}` must be `algorithm:hex`"))?;
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '-', '_']).all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "digest `{d}` must be `algorithm:hex` with at least 32 hex digits"
        ));
    }
    Ok(())
}

/// Parses a resource quantity: a Kubernetes quantity (`1.5`, `500m`, `8Gi`, `1e3`) or a
/// KubeSpawner byte size (`8G`, `512M`, `1K`). Returns the amount in base units.
pub fn quantity(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let bad = || {
        format!(
            "`{text}` is not a quantity; use a number with an optional suffix such as `1.5`, `500m`, `8G` or `8Gi`"
        )
    };
    if number.is_empty() || number.starts_with('+') && number.len() == 1 {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    if value < 0.0 {
        return Err(format!("`{text}` is negative"));
    }
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    Ok(value * factor)
}

/// Checks an e-mail address (`local@domain`, the domain a DNS name).
pub fn email(text: &str) -> Result<(), String> {
    match text.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !local.contains(char::is_whitespace) => {
            dns_name(domain).map_err(|e| format!("`{text}` is not an e-mail address: {e}"))?;
            if !domain.contains('.') {
                return Err(format!(
                    "`{text}` is not an e-mail address: `{domain}` has no dot"
                ));
            }
            Ok(())
        }
        _ => Err(format!("`{text}` is not an e-mail address")),
    }
}

/// Why a text is not an IAM role or user ARN, with the fix when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Checks an IAM role or user ARN (`arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, `…:user/…`),
/// the principals an EKS access entry takes, and returns its partition. An STS session ARN
/// (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`, what `aws sts get-caller-identity`
/// prints for a role) is refused with the role ARN to write instead, and so is a
/// service-linked role (`role/aws-service-role/…`).
pub fn iam_principal_arn(text: &str) -> Result<&str, ArnError> {
    let fail = |message: String, hint: Option<String>| Err(ArnError { message, hint });
    let example = "write `arn:aws:iam::111122223333:role/NAME` (a role, with its path if it has one) or `arn:aws:iam::111122223333:user/NAME`";
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return fail(format!("`{text}` is not an IAM ARN"), Some(example.into()));
    };
    if *arn != "arn" || !crate::cloud::aws_partition::IDS.contains(partition) {
        return fail(
            format!("`{text}` is not an ARN of an AWS partition"),
            Some(example.into()),
        );
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return fail(
            format!("`{text}`: `{account}` is not a 12-digit AWS account id"),
            Some(example.into()),
        );
    }
    if *service == "sts" {
        if let Some(role) = resource
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
        {
            return fail(
                format!(
                    "`{text}` is an STS session (an assumed role), which EKS cannot give an access entry"
                ),
                Some(format!(
                    "write the role's ARN, `arn:{partition}:iam::{account}:role/{role}` (with the role's path before its name, if it has one)"
                )),
            );
        }
        return fail(
            format!("`{text}` is not an IAM role or user ARN"),
            Some(example.into()),
        );
    }
    if *service != "iam" || !region.is_empty() {
        return fail(
            format!("`{text}` is not an IAM role or user ARN"),
            Some(example.into()),
        );
    }
    let Some((kind, name)) = resource.split_once('/') else {
        return fail(
            format!("`{text}` names no role or user"),
            Some(example.into()),
        );
    };
    if kind != "role" && kind != "user" {
        return fail(
            format!("`{text}` is an IAM {kind}; EKS access entries take roles and users"),
            Some(example.into()),
        );
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
    if name.is_empty() || name.ends_with('/') || name.starts_with('/') || !name.chars().all(ok) {
        return fail(
            format!(
                "`{text}`: `{name}` is not an IAM {kind} name (letters, digits and `+=,.@_-`, with an optional path)"
            ),
            Some(example.into()),
        );
    }
    if kind == "role" && name.starts_with("aws-service-role/") {
        return fail(
            format!("`{text}` is a service-linked role, which EKS access entries do not support"),
            Some("list the IAM roles and users that deploy".into()),
        );
    }
    Ok(partition)
}

/// QHub's name rule for `project_name` and `namespace`: letters, `-` and `_`, starting and ending
/// with a letter.
pub fn qhub_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphabetic() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{text}` contains `{c}`; use only letters, `-` and `_`"
        ));
    }
    let first = text.chars().next().unwrap_or('-');
    let last = text.chars().last().unwrap_or('-');
    if !first.is_ascii_alphabetic() || !last.is_ascii_alphabetic() {
        return Err(format!("`{text}` must start and end with a letter"));
    }
    Ok(())
}

/// Namespaces a cluster creates for itself, which a platform must not take as its own
/// (Kubernetes docs, "Namespaces": `default`, `kube-node-lease`, `kube-public`, `kube-system`;
/// the `kube-` prefix is reserved for Kubernetes system namespaces).
pub const RESERVED_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Checks a Kubernetes namespace name: an RFC 1123 label (lowercase letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters, here 52 so that
/// `<namespace>-privileged` is one too), as the API server
/// requires of a Namespace's name (apimachinery `validation.IsDNS1123Label`), and not one of
/// the cluster's own ([`RESERVED_NAMESPACES`], or any `kube-` name).
pub fn namespace_name(text: &str) -> Result<(), String> {
    // 63 for the label, less `-privileged`: qhub also makes `<namespace>-privileged` for the
    // pieces the `restricted` Pod Security level refuses.
    const MAX: usize = 63 - "-privileged".len();
    if text.len() > MAX {
        return Err(format!(
            "`{text}` has {} characters; at most {MAX} are allowed (a Kubernetes namespace has at most 63, and qhub also makes `<namespace>-privileged`)",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{text}` contains `{c}`, which a Kubernetes namespace cannot (an RFC 1123 label: lowercase letters, digits and `-`)"
        ));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(format!(
            "`{text}` must start and end with a letter or digit"
        ));
    }
    if RESERVED_NAMESPACES.contains(&text) || text.starts_with("kube-") {
        return Err(format!(
            "`{text}` is a namespace the cluster keeps for itself; the platform needs one of its own"
        ));
    }
    Ok(())
}

/// A namespace name close to `text` that [`namespace_name`] and [`qhub_name`] accept, for a
/// hint: lowercase, `_` turned into `-`.
pub fn suggest_namespace(text: &str) -> String {
    text.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_principal_arns() {
        for ok in [
            "arn:aws:iam::111122223333:role/ci",
            "arn:aws:iam::111122223333:role/development/apps/my-role",
            "arn:aws:iam::111122223333:user/alice@example.com",
            "arn:aws-cn:iam::111122223333:role/ci",
        ] {
            assert!(iam_principal_arn(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            iam_principal_arn("arn:aws-us-gov:iam::111122223333:role/ci"),
            Ok("aws-us-gov")
        );
        let session =
            iam_principal_arn("arn:aws:sts::111122223333:assumed-role/ci/gha-run").unwrap_err();
        assert!(session.message.contains("STS session"), "{session:?}");
        assert!(
            session
                .hint
                .unwrap()
                .contains("`arn:aws:iam::111122223333:role/ci`")
        );
        for bad in [
            "ci",
            "arn:aws:iam::1111:role/ci",
            "arn:aws:iam::111122223333:group/admins",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:s3:::bucket",
            "arn:azure:iam::111122223333:role/ci",
            "arn:aws:iam::111122223333:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
        ] {
            assert!(iam_principal_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_names() {
        assert!(namespace_name("dev").is_ok());
        assert!(namespace_name("data-sci").is_ok());
        assert!(
            namespace_name("Data_Sci")
                .unwrap_err()
                .contains("contains `D`")
        );
        assert!(namespace_name("a_b").unwrap_err().contains("contains `_`"));
        assert!(namespace_name(&"a".repeat(52)).is_ok());
        assert!(namespace_name(&"a".repeat(53)).is_err());
        for reserved in RESERVED_NAMESPACES {
            assert!(
                namespace_name(reserved)
                    .unwrap_err()
                    .contains("keeps for itself")
            );
        }
        assert!(namespace_name("kube-anything").is_err());
        assert_eq!(suggest_namespace("Data_Sci"), "data-sci");
    }

    #[test]
    fn dns_names() {
        assert!(dns_name("qhub.example.com").is_ok());
        assert!(dns_name("example.com.").is_ok());
        assert!(dns_name("localhost").is_ok());
        assert!(
            dns_name("https://qhub.example.com")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(dns_name("a..b").is_err());
        assert!(dns_name("-a.b").is_err());
        assert!(dns_name("a_b.com").is_err());
        assert!(dns_name(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn kubernetes_versions() {
        assert_eq!(kubernetes_version("1.29", None).unwrap().minor, 29);
        assert_eq!(kubernetes_version("1.29.3", None).unwrap().patch, Some(3));
        assert!(kubernetes_version("1.33.1-do.0", Some("do")).is_ok());
        assert!(kubernetes_version("1.29.1-gke.1589018", Some("gke")).is_ok());
        assert!(kubernetes_version("1.33.1-do.0", None).is_err());
        assert!(kubernetes_version("1.33-do.0", Some("do")).is_err());
        assert!(kubernetes_version("PLACEHOLDER", None).is_err());
        assert!(kubernetes_version("1", None).is_err());
        assert!(kubernetes_version("1.2.3.4", None).is_err());
        assert!(kubernetes_version("2.1", None).is_err());
        assert!(kubernetes_version("v1.29", None).is_err());
    }

    #[test]
    fn image_references() {
        let r = image_reference("host:5000/img:tag").unwrap();
        assert_eq!(r.registry.as_deref(), Some("host:5000"));
        assert_eq!(r.repository, "img");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        let r = image_reference("quansight/qhub-jupyterlab:v0.4.5").unwrap();
        assert_eq!(r.registry, None);
        assert_eq!(r.repository, "quansight/qhub-jupyterlab");
        let r = image_reference("localhost/a/b").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost"));
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(image_reference(&d).unwrap().tag, None);
        assert!(image_reference("upper/Case").is_err());
        assert!(image_reference("a//b").is_err());
        assert!(image_reference("img:").is_err());
        assert!(image_reference("img:-bad").is_err());
        assert!(image_reference("host:99999/img").is_err());
        assert!(image_reference("img@sha256:zz").is_err());
        assert!(image_reference("").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("1.5").unwrap(), 1.5);
        assert_eq!(quantity("500m").unwrap(), 0.5);
        assert_eq!(quantity("8G").unwrap(), 8e9);
        assert_eq!(quantity("1Gi").unwrap(), 1073741824.0);
        assert_eq!(quantity("1e3").unwrap(), 1000.0);
        assert!(quantity("8 GB").is_err());
        assert!(quantity("lots").is_err());
        assert!(quantity("").is_err());
        assert!(quantity("-1").is_err());
    }

    #[test]
    fn names_and_emails() {
        assert!(qhub_name("my-project_x").is_ok());
        assert!(qhub_name("-x").is_err());
        assert!(qhub_name("x1").is_err());
        assert!(email("ops@example.com").is_ok());
        assert!(email("ops@localhost").is_err());
        assert!(email("nobody").is_err());
    }
}
