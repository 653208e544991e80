//! The integrations a QHub 0.4.5 config can switch on that qhub-rs does not deploy, and why.
//!
//! An enabled one is a validation error (so `qhub validate`, `plan` and `deploy` stop, naming
//! the key), never a silent no-op; `qhub init` writes each of them switched off and `qhub
//! upgrade` switches them off with a note saying why. Remove an entry when its component joins
//! the registry (`crate::kubernetes::components::REGISTRY`): `init` then writes it on again.

/// One integration qhub-rs does not deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBuilt {
    /// The top-level config section (`cdsdashboards`, …).
    pub key: &'static str,
    /// What QHub 0.4.5 deployed for it.
    pub what: &'static str,
    /// Why it is not deployed: what its upstream project says today (cited).
    pub why: &'static str,
    /// What the user can do instead, after switching it off.
    pub instead: &'static str,
}

impl NotBuilt {
    /// The fix a diagnostic offers: switch the section off, and what to do instead.
    pub fn fix(&self) -> String {
        format!("set `{}.enabled: false`; {}", self.key, self.instead)
    }
}

/// Every integration qhub-rs does not deploy, in config order.
pub const NOT_BUILT: &[NotBuilt] = &[
    NotBuilt {
        key: "cdsdashboards",
        what: "ContainDS Dashboards in JupyterHub",
        why: "ContainDS Dashboards supports JupyterHub 1.x only (its last release, cdsdashboards 0.6.3 on PyPI; nebari-dev/jhub-apps#2: \"requires JupyterHub < 2.0\") and is unmaintained; Nebari removed it (nebari-dev/nebari#1854, #1856). On the JupyterHub 5.5 qhub-rs deploys its hub extension does not even import (it needs `async_generator`, which JupyterHub no longer installs)",
        instead: "its successor is jhub-apps (nebari-dev/jhub-apps), which qhub-rs does not deploy either",
    },
    NotBuilt {
        key: "prefect",
        what: "a Prefect 1 Kubernetes agent authenticated to Prefect Cloud 1 with `prefect.token`",
        why: "QHub's integration targets Prefect 1, whose documentation is archived at docs-v1.prefect.io behind a pointer to Prefect 2+, and Nebari removed the integration (nebari-dev/nebari#2101)",
        instead: "run a current Prefect worker as a `tf_extensions` entry or outside the platform",
    },
    NotBuilt {
        key: "clearml",
        what: "ClearML server (apiserver, webserver, fileserver with Elasticsearch, MongoDB and Redis) behind forward-auth",
        why: "qhub-rs does not deploy it, and Nebari, QHub's successor, removed the integration (nebari-dev/nebari#2101)",
        instead: "install ClearML server from its own Helm chart (allegroai/clearml-helm-charts) beside the platform",
    },
];

/// The entry for a config section, when qhub-rs does not deploy it.
pub fn find(key: &str) -> Option<&'static NotBuilt> {
    NOT_BUILT.iter().find(|n| n.key == key)
}

/// Whether qhub-rs deploys the integration a config section switches on.
pub fn is_built(key: &str) -> bool {
    find(key).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_names_a_config_section_and_says_why() {
        let schema = serde_json::to_value(schemars::schema_for!(crate::config::Config))
            .expect("schema serialises");
        let sections = schema["properties"].as_object().expect("top-level keys");
        for n in NOT_BUILT {
            assert!(
                sections.contains_key(n.key),
                "{} is no config section",
                n.key
            );
            assert!(!n.why.is_empty() && !n.instead.is_empty(), "{}", n.key);
            assert!(n.fix().contains(&format!("`{}.enabled: false`", n.key)));
        }
        assert!(is_built("monitoring"));
        assert!(!is_built("cdsdashboards"));
    }
}
