//! EFS: the encrypted shared file system and one mount target per subnet.

use std::collections::BTreeMap;

use aws_sdk_efs::types::PerformanceMode;
use qhub_core::plan::Resource;
use qhub_core::provider::{Ownership, ProviderError};

use super::token::request_token;
use super::{Sent, failed, names_by_id, need, spec_of, tags_with_name, wait_for, wait_gone};
use crate::AwsProvider;
use crate::desired::{EFS, EFS_MOUNT_TARGET, Names};
use crate::observe::{self, Found};
use crate::spec::MountTargetSpec;

async fn file_system(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<Option<Found>, ProviderError> {
    Ok(
        observe::file_systems(p, o, &BTreeMap::new(), &BTreeMap::new())
            .await?
            .into_iter()
            .find(|f| f.id.kind == EFS && f.id.name == name),
    )
}

pub(super) async fn ensure_file_system(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let efs = &p.clients().await?.efs;
    let id = match file_system(p, o, &r.id.name).await? {
        Some(f) => f.cloud_id,
        None => {
            let tags = tags_with_name(o, &r.id.name)
                .into_iter()
                .map(|(k, v)| {
                    aws_sdk_efs::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|e| failed(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The creation token makes CreateFileSystem idempotent on AWS's side: a repeat
            // answers FileSystemAlreadyExists instead of making a second file system. It is
            // unique among the file systems that exist, and destroy waits until ours is gone,
            // so a re-deploy after a destroy never meets the old one.
            let token = request_token(
                o,
                p.region(),
                "CreateFileSystem",
                &serde_json::json!({
                    "name": r.id.name,
                    "encrypted": true,
                    "performance_mode": "generalPurpose",
                    "tags": tags_with_name(o, &r.id.name),
                }),
            );
            efs.create_file_system()
                .creation_token(&token)
                .encrypted(true)
                .performance_mode(PerformanceMode::GeneralPurpose)
                .set_tags(Some(tags))
                .send()
                .await
                .created(
                    p,
                    "CreateFileSystem",
                    &format!("an EFS file system with creation token {token}"),
                )?
                .file_system_id()
                .to_string()
        }
    };
    let id = id.as_str();
    wait_for(p, "file system to become available", move || async move {
        let r = efs
            .describe_file_systems()
            .file_system_id(id)
            .send()
            .await
            .sent(p, "DescribeFileSystems")?;
        Ok(r.file_systems()
            .first()
            .filter(|f| f.life_cycle_state().as_str() == "available")
            .map(|_| ()))
    })
    .await
}

pub(super) async fn ensure_mount_target(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let subnets = observe::subnets(p, o).await?;
    let sgs = observe::security_groups(p, o).await?;
    let found = observe::file_systems(p, o, &names_by_id(&subnets), &names_by_id(&sgs)).await?;
    let is = |f: &&Found, kind: &str, name: &str| f.id.kind == kind && f.id.name == name;
    if found.iter().any(|f| is(&f, EFS_MOUNT_TARGET, &r.id.name)) {
        return Ok(());
    }
    let fs_name = Names::new(o.prefix()).efs();
    let fs = need(
        "the EFS file system",
        found.iter().find(|f| is(f, EFS, &fs_name)),
    )?;
    let want: MountTargetSpec = spec_of(r)?;
    let subnet = need(
        &format!("subnet {}", want.subnet),
        subnets.iter().find(|s| s.id.name == want.subnet),
    )?;
    let sg = need(
        "the security group",
        sgs.iter().find(|s| s.id.name == want.security_group),
    )?;
    p.clients()
        .await?
        .efs
        .create_mount_target()
        .file_system_id(&fs.cloud_id)
        .subnet_id(&subnet.cloud_id)
        .security_groups(&sg.cloud_id)
        .send()
        .await
        // One mount target per AZ: a lost response's mount target is already there.
        .sent_unless(p, "CreateMountTarget", |e| {
            e.code.as_deref() == Some("MountTargetConflict")
        })?;
    Ok(())
}

pub(super) async fn delete_file_system(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    if let Some(f) = file_system(p, o, name).await? {
        let efs = &p.clients().await?.efs;
        efs.delete_file_system()
            .file_system_id(&f.cloud_id)
            .send()
            .await
            .unless_gone(p, "DeleteFileSystem")?;
        // Until it is gone its creation token is taken: a re-deploy must not meet it.
        let id = f.cloud_id.as_str();
        wait_gone(
            p,
            "file system to be deleted",
            "DescribeFileSystems",
            || efs.describe_file_systems().file_system_id(id).send(),
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn delete_mount_target(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
    observed_id: Option<&str>,
) -> Result<(), ProviderError> {
    let subnets = observe::subnets(p, o).await?;
    let found = observe::file_systems(p, o, &names_by_id(&subnets), &BTreeMap::new()).await?;
    let target = found.iter().find(|f| {
        f.id.kind == EFS_MOUNT_TARGET
            && (f.id.name == name || observed_id == Some(f.cloud_id.as_str()))
    });
    if let Some(f) = target {
        p.clients()
            .await?
            .efs
            .delete_mount_target()
            .mount_target_id(&f.cloud_id)
            .send()
            .await
            .unless_gone(p, "DeleteMountTarget")?;
    }
    Ok(())
}
