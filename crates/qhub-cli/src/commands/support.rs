//! `qhub support`: a zip for a support request ([`qhub_core::support`]). Whatever part cannot
//! be read (no cluster yet, an API error) is named in the bundle's `errors.txt` instead of
//! failing the command: a bundle of a broken deployment is the one most needed.

use qhub_core::plan::{Plan, ResourceState};
use qhub_core::provider::Ownership;
use qhub_core::support::{self, Bundle, redact};
use serde_json::json;

use crate::build_info::{COMMIT, DATE, VERSION, known};
use crate::cli::{ApplyArgs, SupportArgs, TargetArgs};
use crate::output::OutputFormat;

/// Writes the bundle and says where, how big, and what is in it.
pub fn run(args: &SupportArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let loaded = super::lifecycle::load(&args.config)?;
    let target = TargetArgs {
        config: args.config.clone(),
        stage: None,
    };
    let s = super::lifecycle::session_with(
        &target,
        &ApplyArgs::default(),
        &[],
        qhub_core::engine::dns::DnsOptions::default(),
    )?;
    let ownership = Ownership::of(&s.config);
    let out = args.out.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(format!("qhub-support-{}.zip", ownership.prefix()))
    });
    let mut bundle = Bundle::new();
    let mut errors: Vec<String> = Vec::new();
    bundle.scrub(redact::secret_values(&loaded.config, &s.config));
    bundle.add_json(
        "version.json",
        &json!({
            "version": VERSION,
            "commit": known(COMMIT),
            "build_date": known(DATE),
            "qhub_config_version": qhub_core::config::QHUB_VERSION,
        }),
    );
    bundle.add_text("config.yaml", &redact::config_yaml(&loaded.config));
    let status = s.runtime.block_on(async {
        let observed = s.engine.observe_all(&s.config, qhub_core::engine::StageFilter::All).await?;
        let (plan, refused) = match s.engine.plan(&s.config, qhub_core::engine::StageFilter::All).await {
            Ok(plan) => (plan, None),
            Err(qhub_core::engine::EngineError::Refused(why)) => (Plan::default(), Some(why)),
            Err(e) => return Err(e),
        };
        let endpoints = s.engine.endpoints(&s.config).await.ok().flatten();
        Ok(json!({
            "deployment": ownership.prefix(),
            "provider": s.config.provider,
            "resources": observed.iter().map(|o| {
                let mut r = json!({"resource": o.id, "stage": o.stage, "state": o.state.word(), "cloud_id": o.cloud_id});
                if let ResourceState::Pending(d) | ResourceState::Failed(d) = &o.state {
                    r["detail"] = d.as_str().into();
                }
                r
            }).collect::<Vec<_>>(),
            "in_sync": plan.is_empty() && refused.is_none(),
            "pending": plan.summary(),
            "pending_changes": plan.changes.iter().map(|c| json!({"resource": c.id, "stage": c.stage, "action": c.action})).collect::<Vec<_>>(),
            "refused": refused,
            "endpoints": endpoints,
        }))
    });
    match status {
        Ok(doc) => bundle.add_json("status.json", &doc),
        Err(e) => errors.push(format!("reading the status: {e}")),
    }
    let namespace = s.config.namespace.clone();
    let provider = s.engine.provider().clone();
    s.runtime.block_on(async {
        if !provider.capabilities().cluster_access {
            errors.push(format!(
                "provider `{}` hands out no cluster access: no pod logs or events",
                provider.name()
            ));
            return;
        }
        let client = match provider.cluster_access(&ownership).await {
            Ok(access) => access.client().await,
            Err(e) => Err(e),
        };
        match client {
            Ok(client) => {
                let values =
                    support::cluster::secret_values(&client, &namespace, &mut errors).await;
                bundle.scrub(values);
                support::cluster::collect(&client, &namespace, args.tail, &mut bundle, &mut errors)
                    .await;
            }
            Err(e) => errors.push(format!("no pod logs or events: {e}")),
        }
    });
    if !errors.is_empty() {
        bundle.add_text("errors.txt", &format!("{}\n", errors.join("\n")));
    }
    let readme = format!(
        "qhub support bundle of deployment {} (provider {}, namespace {namespace}), made {} by qhub {VERSION}.\n\
         config.yaml: the config with every secret value replaced by <redacted>; status.json: what `qhub status` shows;\n\
         logs/POD/CONTAINER.log: the last {} lines of each container (at most {} KiB each); events.json, pods.json: the namespace's;\n\
         version.json: this qhub. No Secret's data is included; secret values found elsewhere are replaced by {}.\n",
        ownership.prefix(),
        s.config.provider,
        crate::output::now_rfc3339(),
        args.tail,
        support::MAX_LOG_BYTES / 1024,
        support::SCRUBBED,
    );
    let bytes = bundle.write(&out, &readme)?;
    match format {
        OutputFormat::Json => crate::output::json(&json!({
            "path": out,
            "bytes": bytes,
            "entries": bundle.names(),
            "left_out": bundle.left_out(),
            "errors": errors,
            "max_bytes": support::MAX_BUNDLE_BYTES,
        }))?,
        OutputFormat::Text => {
            crate::output::stdout(&format!(
                "wrote {} ({} bytes, {} entries; capped at {} MiB uncompressed)\n",
                out.display(),
                bytes,
                bundle.names().len() + 1,
                support::MAX_BUNDLE_BYTES / (1024 * 1024)
            ))?;
            for e in &errors {
                eprintln!("warning: {e}");
            }
        }
    }
    Ok(0)
}
