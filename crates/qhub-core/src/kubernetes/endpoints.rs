//! Where the platform answers once deployed: the ingress load balancer's address, the DNS
//! record the domain needs, and each component's URL (what `qhub status` and `qhub deploy`
//! print).

use serde::Serialize;
use serde_json::Value as Json;

use super::KubeError;
use super::components::{self, ingress};
use super::health::Check;
use crate::config::{Config, ProviderKind};

/// A component's URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceUrl {
    /// The component.
    pub component: String,
    /// Its URL.
    pub url: String,
    /// Its health check through the front door (printed in the health table, not here).
    #[serde(skip)]
    pub check: Check,
}

/// A DNS record the domain needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// The name (the config's `domain`).
    pub name: String,
    /// `A` for an IP address, `CNAME` for a host name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The load balancer's address.
    pub value: String,
}

/// The platform's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// The load balancer's address, once the cloud has given it one.
    pub load_balancer: Option<String>,
    /// The record to create (none until the load balancer has an address).
    pub dns: Option<DnsRecord>,
    /// Each component's URL.
    pub urls: Vec<ServiceUrl>,
    /// What to do when the platform cannot be reached yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The URLs of the enabled components reachable through the ingress: the routes they list
/// ([`components::Route::listed`]). A config whose components cannot be built lists none (the
/// plan reports why).
pub fn urls(config: &Config) -> Vec<ServiceUrl> {
    let scheme = if ingress::tls::enabled(config) {
        "https"
    } else {
        "http"
    };
    let listed = components::listed_routes(config).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "the components cannot be built: no URL to list");
        Vec::new()
    });
    listed
        .into_iter()
        .map(|(component, listing)| ServiceUrl {
            component: component.to_string(),
            url: listing.url(scheme, &config.domain),
            check: listing.health,
        })
        .collect()
}

/// The endpoints given the live ingress Service (`None`: not deployed).
pub fn from_service(config: &Config, service: Option<&Json>) -> Endpoints {
    let ingress_entry = service
        .and_then(|s| s.pointer("/status/loadBalancer/ingress/0"))
        .cloned()
        .unwrap_or(Json::Null);
    let (address, kind) = match (
        ingress_entry.get("ip").and_then(Json::as_str),
        ingress_entry.get("hostname").and_then(Json::as_str),
    ) {
        (_, Some(host)) => (Some(host.to_string()), "CNAME"),
        (Some(ip), None) => (Some(ip.to_string()), "A"),
        (None, None) => (None, "A"),
    };
    let dns = address.as_ref().map(|value| DnsRecord {
        name: config.domain.clone(),
        kind: kind.to_string(),
        value: value.clone(),
    });
    let hint = match (service, &address) {
        (None, _) => Some("the ingress is not deployed yet: run `qhub deploy`".to_string()),
        (Some(_), None) if config.provider == ProviderKind::Local => Some(format!(
            "a local cluster has no load balancer: reach the platform with `kubectl -n {} port-forward svc/{} 8443:443` and https://localhost:8443/ (or run `minikube tunnel`)",
            config.namespace,
            ingress::NAME
        )),
        (Some(_), None) => Some(
            "the load balancer has no address yet: the cloud is still provisioning it; run `qhub status` again in a minute"
                .to_string(),
        ),
        (Some(_), Some(_)) => None,
    };
    Endpoints {
        load_balancer: address,
        dns,
        urls: urls(config),
        hint,
    }
}

/// Reads the ingress Service through `client`.
pub async fn read(client: kube::Client, config: &Config) -> Result<Endpoints, KubeError> {
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, &config.namespace);
    let live = services
        .get_opt(ingress::NAME)
        .await
        .map_err(|source| KubeError::Api {
            what: "reading the ingress Service".into(),
            source,
        })?;
    let live = live
        .map(|s| serde_json::to_value(&s))
        .transpose()
        .map_err(|e| KubeError::Invalid(e.to_string()))?;
    Ok(from_service(config, live.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_record_follows_the_load_balancer_address() {
        let config = crate::kubernetes::components::test_config(ProviderKind::Aws);
        let host = json!({"status": {"loadBalancer": {"ingress": [{"hostname": "a1.elb.amazonaws.com"}]}}});
        let e = from_service(&config, Some(&host));
        assert_eq!(e.dns.as_ref().unwrap().kind, "CNAME");
        assert_eq!(e.dns.unwrap().value, "a1.elb.amazonaws.com");
        let ip = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}});
        assert_eq!(from_service(&config, Some(&ip)).dns.unwrap().kind, "A");
        let pending = from_service(&config, Some(&json!({"status": {"loadBalancer": {}}})));
        assert!(pending.dns.is_none() && pending.hint.unwrap().contains("no address yet"));
        assert!(
            from_service(&config, None)
                .hint
                .unwrap()
                .contains("qhub deploy")
        );
        assert!(
            e.urls
                .iter()
                .any(|u| u.url == "https://demo.example.com/auth/")
        );
    }
}
