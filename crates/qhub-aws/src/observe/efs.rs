//! Observing EFS: file systems by tag; mount targets carry no tags and are ours when their file system is.

use super::*;

/// The deployment's EFS file systems and their mount targets (a mount target's
/// `file_system_id` is observed only, for the order of deletes).
pub async fn file_systems(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
    sg_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let efs = &p.clients().await?.efs;
    let names = Names::new(o.prefix());
    // Each file system, with its mount targets.
    let mut systems: Vec<(Found, Vec<Found>)> = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = efs
            .describe_file_systems()
            .set_marker(marker.clone())
            .send()
            .await
            .sent(p, "DescribeFileSystems")?;
        for fs in r.file_systems() {
            let tags: BTreeMap<String, String> = fs
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            if !o.owns(&tags) {
                continue;
            }
            let id = fs.file_system_id().to_string();
            let name = tags.get(NAME_TAG).cloned().unwrap_or_else(|| id.clone());
            let spec = FileSystemSpec {
                encrypted: fs.encrypted().unwrap_or(false),
                performance_mode: fs.performance_mode().as_str().to_string(),
            };
            let state = fs.life_cycle_state().as_str().to_lowercase();
            let system = Found::new(ResourceId::new(EFS, &name), id.clone(), &spec, state)?;
            let mut targets = Vec::new();
            let mts = efs
                .describe_mount_targets()
                .file_system_id(&id)
                .send()
                .await
                .sent(p, "DescribeMountTargets")?;
            for mt in mts.mount_targets() {
                let mt_id = mt.mount_target_id().to_string();
                let subnet = subnet_names
                    .get(mt.subnet_id())
                    .cloned()
                    .unwrap_or_else(|| mt.subnet_id().to_string());
                // A mount target deleted since the describe (a concurrent destroy) is gone.
                let sgs = match efs
                    .describe_mount_target_security_groups()
                    .mount_target_id(&mt_id)
                    .send()
                    .await
                    .unless_gone(p, "DescribeMountTargetSecurityGroups")?
                {
                    Some(r) => r,
                    None => continue,
                };
                let sg = sgs
                    .security_groups()
                    .first()
                    .map(|s| sg_names.get(s).cloned().unwrap_or_else(|| s.clone()));
                let mt_name = match Names::index_of(&subnet) {
                    Some(i) if subnet == names.subnet(i) => names.mount_target(i),
                    _ => format!("{name}-{mt_id}"),
                };
                let spec = MountTargetObserved {
                    subnet,
                    security_group: sg,
                    file_system_id: id.clone(),
                };
                let state = mt.life_cycle_state().as_str().to_lowercase();
                let found = Found::new(
                    ResourceId::new(EFS_MOUNT_TARGET, mt_name),
                    mt_id,
                    &spec,
                    state,
                )?;
                targets.push(found.within([id.as_str()]));
            }
            systems.push((system, targets));
        }
        match r.next_marker() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    let (fs, targets): (Vec<Found>, Vec<Vec<Found>>) = systems.into_iter().unzip();
    // The file system with the most mount targets is kept; an extra's mount targets are extras.
    let counts: BTreeMap<String, usize> = fs
        .iter()
        .zip(&targets)
        .map(|(f, t)| (f.cloud_id.clone(), t.len()))
        .collect();
    let fs = dedupe(fs, |f| counts.get(&f.cloud_id).copied().unwrap_or(0));
    let mut out = Vec::new();
    let mut all_targets = Vec::new();
    for (f, mut t) in fs.into_iter().zip(targets) {
        if is_extra(&f.id.name) {
            for mt in &mut t {
                mt.id.name = extra_name(&mt.id.name, &mt.cloud_id);
            }
        }
        out.push(f);
        all_targets.extend(t);
    }
    // One mount target per zone and file system, so two of one name are in two subnets of one
    // name (a duplicated subnet): the lowest id is kept.
    out.extend(dedupe(all_targets, |_| ()));
    Ok(out)
}
