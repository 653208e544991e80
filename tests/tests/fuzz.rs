//! Property tests: hostile or random input never panics the YAML parser, the loader or the
//! upgrade, and the emitter writes YAML that reads back as the same value.

use proptest::prelude::*;
use qhub_core::config::upgrade::migrate;
use qhub_core::config::{check_str, yaml};
use qhub_tests::fixture;
use serde_json::{Map, Value as Json};

fn config() -> ProptestConfig {
    qhub_tests::proptest_config(384)
}

/// Keys that configs use, plus some that collide with YAML syntax.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "project_name",
            "provider",
            "domain",
            "security",
            "authentication",
            "users",
            "groups",
            "profiles",
            "jupyterlab",
            "dask_worker",
            "node_groups",
            "general",
            "min_nodes",
            "max_nodes",
            "instance",
            "digital_ocean",
            "amazon_web_services",
            "kubernetes_version",
            "environments",
            "dependencies",
            "certificate",
            "type",
            "ci_cd",
            "monitoring",
            "enabled",
            "access",
            "kubespawner_override",
            "cpu_limit",
            "mem_limit",
            "qhub_version",
            "<<",
            "?",
            "-",
            "a b",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

/// Scalars as they are written in YAML text (not necessarily valid on their own).
fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "do",
            "aws",
            "gcp",
            "azure",
            "local",
            "existing",
            "sandbox",
            "1.20",
            "1.21.5-do.0",
            "true",
            "no",
            "~",
            "null",
            "''",
            "\"\"",
            "0x1F",
            "-1",
            "1e400",
            ".nan",
            "8G",
            "[]",
            "{}",
            "[a, {b: c}]",
            "&x 1",
            "*x",
            "!!str 5",
            "!custom x",
            "|\n  block",
            ">-\n  fold",
            "QHUB_SECRET_X",
            "a: b",
            "'unterminated",
            "\"esc \\u00e9\"",
            "- item",
            "? k",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,16}",
        any::<i64>().prop_map(|i| i.to_string()),
    ]
}

/// YAML-ish text: nested block maps and lists of random keys and scalars, sometimes with the
/// indentation deliberately off by one.
fn yamlish() -> impl Strategy<Value = String> {
    #[derive(Debug, Clone)]
    enum T {
        Leaf(String),
        Map(Vec<(String, T)>),
        Seq(Vec<T>),
    }
    fn render(t: &T, indent: usize, jitter: &mut impl Iterator<Item = bool>, out: &mut String) {
        let pad = |j: &mut dyn Iterator<Item = bool>| {
            let off = usize::from(j.next().unwrap_or(false));
            " ".repeat(indent + off)
        };
        match t {
            T::Leaf(s) => {
                out.push(' ');
                out.push_str(s);
                out.push('\n');
            }
            T::Map(entries) => {
                out.push('\n');
                for (k, v) in entries {
                    out.push_str(&pad(jitter));
                    out.push_str(k);
                    out.push(':');
                    render(v, indent + 2, jitter, out);
                }
            }
            T::Seq(items) => {
                out.push('\n');
                for v in items {
                    out.push_str(&pad(jitter));
                    out.push('-');
                    render(v, indent + 2, jitter, out);
                }
            }
        }
    }
    let leaf = yaml_scalar().prop_map(T::Leaf);
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(T::Map),
            prop::collection::vec(inner, 0..5).prop_map(T::Seq),
        ]
    });
    (
        prop::collection::vec((key(), tree), 0..8),
        prop::collection::vec(prop::bool::weighted(0.03), 64),
    )
        .prop_map(|(top, jitter)| {
            let mut out = String::new();
            let mut j = jitter.into_iter().cycle();
            for (k, v) in &top {
                out.push_str(k);
                out.push(':');
                render(v, 2, &mut j, &mut out);
            }
            out
        })
}

/// A real config with a random edit: a span replaced by random text.
fn mutated_fixture() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec!["qhub-0.3.10-do.yaml", "qhub-0.4.0-aws.yaml"]);
    (
        names,
        any::<prop::sample::Index>(),
        0usize..40,
        prop_oneof!["[ -~\n\t]{0,12}", yaml_scalar()],
    )
        .prop_map(|(name, at, len, insert)| {
            let text = fixture(name);
            let chars: Vec<char> = text.chars().collect();
            let start = at.index(chars.len());
            let end = (start + len).min(chars.len());
            let mut out: String = chars[..start].iter().collect();
            out.push_str(&insert);
            out.extend(&chars[end..]);
            out
        })
}

/// Any text: unicode, raw bytes read lossily, YAML punctuation soup, YAML-ish trees and
/// mutated configs.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[-:{}\\[\\],&*!|>'\"%@`#?\n\t a-c0-9.]{0,80}",
        yamlish(),
        mutated_fixture(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_and_check_never_panic(text in any_text()) {
        let parsed = yaml::parse(&text);
        let (loaded, report) = check_str(&text);
        // A syntax error is reported as exactly that, and nothing is loaded.
        if parsed.is_err() {
            prop_assert!(loaded.is_none());
            prop_assert!(report.has_errors());
        }
        // Anything loaded has no errors.
        if loaded.is_some() {
            prop_assert!(!report.has_errors(), "{}", report);
        }
    }

    #[test]
    fn migrate_never_panics(text in any_text()) {
        if let Ok(m) = migrate(&text) {
            // Whatever it produced must itself be a finished upgrade.
            if let Some(out) = m.text {
                let again = migrate(&out);
                prop_assert!(again.is_ok(), "re-migrating failed: {:?}\n{}", again.err(), out);
                let again = again.unwrap();
                prop_assert!(again.changes.is_empty(), "{:?}\n{}", again.changes, out);
            }
        }
    }
}

/// Strings that are awkward for YAML: indicators, type look-alikes, spaces, breaks, unicode.
fn awkward_string() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "",
        "a",
        "x y",
        ": ",
        ":",
        "#",
        " #",
        "# c",
        "'",
        "\"",
        "\\",
        "\n",
        "\r\n",
        "\t",
        " ",
        "yes",
        "no",
        "on",
        "off",
        "true",
        "False",
        "null",
        "~",
        "1.20",
        "1",
        "-1",
        "+1",
        "0x1F",
        "0o17",
        "1e3",
        ".inf",
        "-.inf",
        ".nan",
        "1_000",
        "-",
        "- ",
        "--",
        "---",
        "...",
        "?",
        "? ",
        "!",
        "&a",
        "*a",
        "|",
        ">",
        "%",
        "@",
        "`",
        "{",
        "}",
        "[",
        "]",
        ",",
        "<<",
        "=",
        "é",
        "日本",
        "\u{85}",
        "\u{a0}",
        "\u{2028}",
        "\u{feff}",
        "\u{7f}",
        "\u{1b}",
        "\u{0}",
        "\u{fffe}",
        "🦀",
        "QHUB_SECRET_X",
        "$2b$12$abc",
        "http://x/y?a=b#f",
        "8G",
        "1.33.1-do.0",
    ]);
    prop_oneof![
        10 => prop::collection::vec(atoms, 0..5).prop_map(|v| v.concat()),
        10 => any::<String>(),
        10 => "[ -~]{0,20}",
        // Around YAML's 1024-character limit on implicit keys.
        1 => "[a-z :#]{990,1030}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::from),
        prop_oneof![Just(0.5), Just(1.0), Just(-0.0), Just(1e300), Just(5e-324)]
            .prop_map(Json::from),
        awkward_string().prop_map(Json::String),
    ]
}

fn json_tree() -> impl Strategy<Value = Json> {
    json_leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((awkward_string(), inner), 0..6)
                .prop_map(|entries| Json::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn emit_round_trips(v in json_tree()) {
        let text = yaml::emit(&yaml::Node::from_json(&v));
        let back = yaml::parse(&text);
        prop_assert!(back.is_ok(), "emitted text does not parse: {:?}\n{}", back.err(), text);
        prop_assert_eq!(back.unwrap().to_json(), v, "emitted:\n{}", text);
    }

    /// The same through a config-shaped wrapper: the value sits two levels deep in a map and
    /// inside a list, where the emitter's indentation paths differ.
    #[test]
    fn emit_round_trips_nested(v in json_tree(), k in awkward_string()) {
        let mut inner = Map::new();
        inner.insert(k, v.clone());
        let doc = serde_json::json!({"theme": {"jupyterhub": Json::Object(inner)}, "list": [v, [v]]});
        let text = yaml::emit(&yaml::Node::from_json(&doc));
        let back = yaml::parse(&text);
        prop_assert!(back.is_ok(), "emitted text does not parse: {:?}\n{}", back.err(), text);
        prop_assert_eq!(back.unwrap().to_json(), doc, "emitted:\n{}", text);
    }
}

/// Fixed cases found by, or worth pinning beside, the properties above.
#[test]
fn emit_round_trips_known_awkward_values() {
    let cases = [
        serde_json::json!("---"),
        serde_json::json!("--- x"),
        serde_json::json!("..."),
        serde_json::json!("... x"),
        serde_json::json!({"--- x": 1, "... y": 2, "---": 3}),
        serde_json::json!(["\u{7f}", "\u{85}", "\u{2028}", "\u{feff}x", "\u{fffe}"]),
        serde_json::json!({"k": "a\u{85}b", "\u{85}": "\u{2028}"}),
        serde_json::json!({"k": "yes\u{feff}", "\u{feff}": "-\u{feff}"}),
        // YAML caps implicit keys at 1024 characters.
        serde_json::json!({"a".repeat(1100): {"b".repeat(2000): 1}, "c": [{"d".repeat(1025): [1]}]}),
        serde_json::json!({"日".repeat(1020): 1, "\n".repeat(600): 2}),
    ];
    for v in cases {
        let text = yaml::emit(&yaml::Node::from_json(&v));
        let back = yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{v}: emitted text does not parse: {e}\n{text}"));
        assert_eq!(back.to_json(), v, "emitted:\n{text}");
    }
}
