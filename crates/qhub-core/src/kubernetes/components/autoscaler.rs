//! The cluster autoscaler, on clouds that do not scale node groups themselves (EKS; GKE and
//! DOKS autoscale natively). It discovers the node groups' autoscaling groups by the tags EKS
//! puts on them (`k8s.io/cluster-autoscaler/enabled`, `k8s.io/cluster-autoscaler/<cluster>`).

use k8s_openapi::api::core::v1::{EnvVar, PodSpec, ServiceAccount};

use super::{Built, Component, Context, KubeError, manifest};
use crate::config::ProviderKind;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = super::rbac::CLUSTER_AUTOSCALER.service_account;

/// The cluster autoscaler.
#[derive(Debug, Clone, Copy)]
pub struct ClusterAutoscaler;

impl Component for ClusterAutoscaler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        // Only AWS's autoscaling groups are supported by the autoscaler as we configure it.
        ctx.config.provider == ProviderKind::Aws && !ctx.facts.native_autoscaling
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    /// Its status ConfigMap (`--namespace` puts it in ours).
    fn leaves_behind(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[("v1", "ConfigMap", super::rbac::STATUS_CONFIGMAP)]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let ns = ctx.namespace().to_string();
        let aws = ctx.config.amazon_web_services.as_ref().ok_or_else(|| {
            KubeError::Invalid("amazon_web_services: the section is missing".into())
        })?;
        let cluster = ctx.cluster_name();
        let account = ServiceAccount {
            metadata: ctx.meta(NAME, NAME),
            ..ServiceAccount::default()
        };
        let rbac = super::rbac::objects(ctx, NAME, &super::rbac::CLUSTER_AUTOSCALER)?;
        let image = versions::cluster_autoscaler(&aws.kubernetes_version);
        let mut container = pods::container(
            NAME,
            image.reference(),
            pods::resources("100m", "300Mi", "600Mi"),
        );
        container.command = Some(vec!["./cluster-autoscaler".into()]);
        container.args = Some(vec![
            "--cloud-provider=aws".into(),
            format!(
                "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{cluster}"
            ),
            "--balance-similar-node-groups".into(),
            "--skip-nodes-with-system-pods=false".into(),
            "--skip-nodes-with-local-storage=false".into(),
            "--expander=least-waste".into(),
            format!("--leader-elect-resource-namespace={ns}"),
            // Its status ConfigMap goes to our namespace, where its Role lets it write
            // ConfigMaps, instead of kube-system (where it could rewrite aws-auth or CoreDNS).
            format!("--namespace={ns}"),
        ]);
        container.env = Some(vec![EnvVar {
            name: "AWS_REGION".into(),
            value: Some(aws.region.clone()),
            ..EnvVar::default()
        }]);
        let mut pod = PodSpec {
            service_account_name: Some(NAME.into()),
            containers: vec![container],
            security_context: Some(pods::non_root_pod(65534)),
            priority_class_name: Some("system-cluster-critical".into()),
            ..PodSpec::default()
        };
        Placement::on_group(ctx.facts, "general").place(&mut pod);
        let deployment = super::deployment(ctx, NAME, pod, false);
        let mut out = vec![manifest(&account)?];
        out.extend(rbac);
        out.push(manifest(&deployment)?);
        Ok(Built::new(out).image(image))
    }
}
