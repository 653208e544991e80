//! GKE's JSON quirks: enums travel as names or, when the client asks for
//! `$alt=json;enum-encoding=int` (google-cloud-rust always does), as integers; int64 fields
//! travel as strings (proto3 JSON mapping), int32 as numbers. Requests may use either form.
//!
//! The emulator stores every object in one canonical form (enum names, int64 strings, int32
//! numbers) and converts on the way in ([`normalize_cluster`], [`normalize_pool`]) and out
//! ([`encode`]). The integer values are those of google/container/v1/cluster_service.proto.

use serde_json::{Map, Value};

/// An enum of the container/v1 API: its names, in proto order, with their numbers.
#[derive(Debug, Clone, Copy)]
pub struct EnumDef {
    /// The proto type, for error messages (`TYPE_ENUM` values are named by field anyway).
    pub name: &'static str,
    /// `(name, number)` pairs.
    pub values: &'static [(&'static str, i64)],
}

impl EnumDef {
    /// The number of a name.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The name of a number.
    pub fn name_of(&self, number: i64) -> Option<&'static str> {
        self.values
            .iter()
            .find(|(_, v)| *v == number)
            .map(|(n, _)| *n)
    }
}

/// `Cluster.Status`.
pub const CLUSTER_STATUS: EnumDef = EnumDef {
    name: "Cluster.Status",
    values: &[
        ("STATUS_UNSPECIFIED", 0),
        ("PROVISIONING", 1),
        ("RUNNING", 2),
        ("RECONCILING", 3),
        ("STOPPING", 4),
        ("ERROR", 5),
        ("DEGRADED", 6),
    ],
};

/// `NodePool.Status` (numbered differently from the cluster's).
pub const POOL_STATUS: EnumDef = EnumDef {
    name: "NodePool.Status",
    values: &[
        ("STATUS_UNSPECIFIED", 0),
        ("PROVISIONING", 1),
        ("RUNNING", 2),
        ("RUNNING_WITH_ERROR", 3),
        ("RECONCILING", 4),
        ("STOPPING", 5),
        ("ERROR", 6),
    ],
};

/// `Operation.Status`.
pub const OPERATION_STATUS: EnumDef = EnumDef {
    name: "Operation.Status",
    values: &[
        ("STATUS_UNSPECIFIED", 0),
        ("PENDING", 1),
        ("RUNNING", 2),
        ("DONE", 3),
        ("ABORTING", 4),
    ],
};

/// `Operation.Type`.
pub const OPERATION_TYPE: EnumDef = EnumDef {
    name: "Operation.Type",
    values: &[
        ("TYPE_UNSPECIFIED", 0),
        ("CREATE_CLUSTER", 1),
        ("DELETE_CLUSTER", 2),
        ("UPGRADE_MASTER", 3),
        ("UPGRADE_NODES", 4),
        ("REPAIR_CLUSTER", 5),
        ("UPDATE_CLUSTER", 6),
        ("CREATE_NODE_POOL", 7),
        ("DELETE_NODE_POOL", 8),
        ("SET_NODE_POOL_MANAGEMENT", 9),
        ("AUTO_REPAIR_NODES", 10),
        ("AUTO_UPGRADE_NODES", 11),
        ("SET_LABELS", 12),
        ("SET_MASTER_AUTH", 13),
        ("SET_NODE_POOL_SIZE", 14),
        ("SET_NETWORK_POLICY", 15),
        ("SET_MAINTENANCE_POLICY", 16),
        ("RESIZE_CLUSTER", 18),
        ("FLEET_FEATURE_UPGRADE", 19),
    ],
};

/// `NodeTaint.Effect`.
pub const TAINT_EFFECT: EnumDef = EnumDef {
    name: "NodeTaint.Effect",
    values: &[
        ("EFFECT_UNSPECIFIED", 0),
        ("NO_SCHEDULE", 1),
        ("PREFER_NO_SCHEDULE", 2),
        ("NO_EXECUTE", 3),
    ],
};

/// `ReleaseChannel.Channel`.
pub const CHANNEL: EnumDef = EnumDef {
    name: "ReleaseChannel.Channel",
    values: &[
        ("UNSPECIFIED", 0),
        ("RAPID", 1),
        ("REGULAR", 2),
        ("STABLE", 3),
        ("EXTENDED", 4),
    ],
};

/// `GPUDriverInstallationConfig.GPUDriverVersion`.
pub const GPU_DRIVER_VERSION: EnumDef = EnumDef {
    name: "GPUDriverInstallationConfig.GPUDriverVersion",
    values: &[
        ("GPU_DRIVER_VERSION_UNSPECIFIED", 0),
        ("INSTALLATION_DISABLED", 1),
        ("DEFAULT", 2),
        ("LATEST", 3),
    ],
};

/// A request field GKE would refuse: `(field path, message)`, answered as 400
/// INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub String);

fn invalid_value(path: &str, kind: &str, v: &Value) -> Invalid {
    // GKE's wording for a value that does not parse: `Invalid value at 'cluster.x' (TYPE_ENUM), "FOO"`.
    Invalid(format!("Invalid value at '{path}' ({kind}), {v}"))
}

/// An enum field in either form, as its name.
pub fn enum_in(def: &EnumDef, path: &str, v: &Value) -> Result<&'static str, Invalid> {
    let found = match v {
        Value::String(s) => def
            .values
            .iter()
            .find(|(n, _)| n == s)
            .map(|(n, _)| *n)
            // A number in a string is accepted by ESF's JSON transcoding too.
            .or_else(|| s.parse::<i64>().ok().and_then(|n| def.name_of(n))),
        Value::Number(n) => n.as_i64().and_then(|n| def.name_of(n)),
        _ => None,
    };
    found.ok_or_else(|| invalid_value(path, "TYPE_ENUM", v))
}

/// An int32 field (number or string) as a number.
pub fn int32_in(path: &str, v: &Value) -> Result<i64, Invalid> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| i32::try_from(*n).is_ok())
        .ok_or_else(|| invalid_value(path, "TYPE_INT32", v))
}

/// An int64 field (number or string) as a number.
pub fn int64_in(path: &str, v: &Value) -> Result<i64, Invalid> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid_value(path, "TYPE_INT64", v))
}

fn set_enum(
    obj: &mut Map<String, Value>,
    key: &str,
    def: &EnumDef,
    path: &str,
) -> Result<(), Invalid> {
    if let Some(v) = obj.get(key) {
        let name = enum_in(def, &format!("{path}.{key}"), v)?;
        obj.insert(key.to_string(), Value::String(name.to_string()));
    }
    Ok(())
}

fn set_int32(obj: &mut Map<String, Value>, key: &str, path: &str) -> Result<(), Invalid> {
    if let Some(v) = obj.get(key) {
        let n = int32_in(&format!("{path}.{key}"), v)?;
        obj.insert(key.to_string(), Value::from(n));
    }
    Ok(())
}

fn set_int64(obj: &mut Map<String, Value>, key: &str, path: &str) -> Result<(), Invalid> {
    if let Some(v) = obj.get(key) {
        let n = int64_in(&format!("{path}.{key}"), v)?;
        // Canonical proto3 JSON: int64 as a string.
        obj.insert(key.to_string(), Value::String(n.to_string()));
    }
    Ok(())
}

fn each_object(v: Option<&mut Value>) -> impl Iterator<Item = (usize, &mut Map<String, Value>)> {
    v.and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut().enumerate())
        .filter_map(|(i, x)| x.as_object_mut().map(|o| (i, o)))
}

/// Normalises a `NodeConfig` in place.
pub fn normalize_node_config(c: &mut Map<String, Value>, path: &str) -> Result<(), Invalid> {
    set_int32(c, "diskSizeGb", path)?;
    for (i, t) in each_object(c.get_mut("taints")) {
        set_enum(t, "effect", &TAINT_EFFECT, &format!("{path}.taints[{i}]"))?;
    }
    for (i, a) in each_object(c.get_mut("accelerators")) {
        let p = format!("{path}.accelerators[{i}]");
        set_int64(a, "acceleratorCount", &p)?;
        if let Some(g) = a
            .get_mut("gpuDriverInstallationConfig")
            .and_then(Value::as_object_mut)
        {
            set_enum(
                g,
                "gpuDriverVersion",
                &GPU_DRIVER_VERSION,
                &format!("{p}.gpu_driver_installation_config"),
            )?;
        }
    }
    Ok(())
}

/// Normalises a `NodePool` in place.
pub fn normalize_pool(p: &mut Map<String, Value>, path: &str) -> Result<(), Invalid> {
    set_int32(p, "initialNodeCount", path)?;
    if let Some(a) = p.get_mut("autoscaling").and_then(Value::as_object_mut) {
        normalize_autoscaling(a, &format!("{path}.autoscaling"))?;
    }
    if let Some(c) = p.get_mut("config").and_then(Value::as_object_mut) {
        normalize_node_config(c, &format!("{path}.config"))?;
    }
    set_enum(p, "status", &POOL_STATUS, path)?;
    Ok(())
}

/// Normalises a `NodePoolAutoscaling` in place.
pub fn normalize_autoscaling(a: &mut Map<String, Value>, path: &str) -> Result<(), Invalid> {
    for k in [
        "minNodeCount",
        "maxNodeCount",
        "totalMinNodeCount",
        "totalMaxNodeCount",
    ] {
        set_int32(a, k, path)?;
    }
    Ok(())
}

/// Normalises a `Cluster` in place.
pub fn normalize_cluster(c: &mut Map<String, Value>, path: &str) -> Result<(), Invalid> {
    set_int32(c, "initialNodeCount", path)?;
    if let Some(r) = c.get_mut("releaseChannel").and_then(Value::as_object_mut) {
        set_enum(r, "channel", &CHANNEL, &format!("{path}.release_channel"))?;
    }
    if let Some(nc) = c.get_mut("nodeConfig").and_then(Value::as_object_mut) {
        normalize_node_config(nc, &format!("{path}.node_config"))?;
    }
    for (i, p) in each_object(c.get_mut("nodePools")) {
        normalize_pool(p, &format!("{path}.node_pools[{i}]"))?;
    }
    set_enum(c, "status", &CLUSTER_STATUS, path)?;
    Ok(())
}

/// Which object a JSON document is, for encoding its enums on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `Cluster`.
    Cluster,
    /// A `NodePool`.
    NodePool,
    /// An `Operation`.
    Operation,
    /// A `ServerConfig`.
    ServerConfig,
    /// Anything else (lists are encoded by their items' kind).
    Other,
}

fn enum_out(obj: &mut Map<String, Value>, key: &str, def: &EnumDef, ints: bool) {
    if !ints {
        return;
    }
    if let Some(Value::String(s)) = obj.get(key)
        && let Some(n) = def.number(s)
    {
        obj.insert(key.to_string(), Value::from(n));
    }
}

fn encode_node_config(c: &mut Map<String, Value>, ints: bool) {
    for (_, t) in each_object(c.get_mut("taints")) {
        enum_out(t, "effect", &TAINT_EFFECT, ints);
    }
    for (_, a) in each_object(c.get_mut("accelerators")) {
        if let Some(g) = a
            .get_mut("gpuDriverInstallationConfig")
            .and_then(Value::as_object_mut)
        {
            enum_out(g, "gpuDriverVersion", &GPU_DRIVER_VERSION, ints);
        }
    }
}

fn encode_pool(p: &mut Map<String, Value>, ints: bool) {
    enum_out(p, "status", &POOL_STATUS, ints);
    if let Some(c) = p.get_mut("config").and_then(Value::as_object_mut) {
        encode_node_config(c, ints);
    }
}

/// Encodes a canonical document for the wire: enum names become numbers when `ints`.
pub fn encode(kind: Kind, v: &mut Value, ints: bool) {
    let Some(obj) = v.as_object_mut() else { return };
    match kind {
        Kind::Cluster => {
            enum_out(obj, "status", &CLUSTER_STATUS, ints);
            if let Some(r) = obj.get_mut("releaseChannel").and_then(Value::as_object_mut) {
                enum_out(r, "channel", &CHANNEL, ints);
            }
            if let Some(nc) = obj.get_mut("nodeConfig").and_then(Value::as_object_mut) {
                encode_node_config(nc, ints);
            }
            for (_, p) in each_object(obj.get_mut("nodePools")) {
                encode_pool(p, ints);
            }
        }
        Kind::NodePool => encode_pool(obj, ints),
        Kind::Operation => {
            enum_out(obj, "status", &OPERATION_STATUS, ints);
            enum_out(obj, "operationType", &OPERATION_TYPE, ints);
        }
        Kind::ServerConfig => {
            for (_, c) in each_object(obj.get_mut("channels")) {
                enum_out(c, "channel", &CHANNEL, ints);
            }
        }
        Kind::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_and_int64_are_accepted_in_both_forms_and_stored_canonically() {
        let mut c = json!({
            "name": "c",
            "releaseChannel": {"channel": 2},
            "nodePools": [{
                "name": "p", "initialNodeCount": "1",
                "autoscaling": {"enabled": true, "maxNodeCount": 5},
                "config": {
                    "taints": [{"key": "k", "value": "v", "effect": "NO_SCHEDULE"}, {"key": "k2", "effect": 3}],
                    "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1,
                        "gpuDriverInstallationConfig": {"gpuDriverVersion": 2}}]
                }
            }]
        });
        normalize_cluster(c.as_object_mut().unwrap(), "cluster").unwrap();
        assert_eq!(c["releaseChannel"]["channel"], "REGULAR");
        let p = &c["nodePools"][0];
        assert_eq!(p["initialNodeCount"], 1);
        assert_eq!(p["config"]["taints"][1]["effect"], "NO_EXECUTE");
        assert_eq!(p["config"]["accelerators"][0]["acceleratorCount"], "1");
        assert_eq!(
            p["config"]["accelerators"][0]["gpuDriverInstallationConfig"]["gpuDriverVersion"],
            "DEFAULT"
        );
        let mut out = c.clone();
        encode(Kind::Cluster, &mut out, true);
        assert_eq!(out["nodePools"][0]["config"]["taints"][0]["effect"], 1);
        assert_eq!(out["releaseChannel"]["channel"], 2);
    }

    #[test]
    fn a_bad_enum_is_named_by_its_path() {
        let mut c = json!({"nodePools": [{"config": {"taints": [{"effect": "SOMETIMES"}]}}]});
        let e = normalize_cluster(c.as_object_mut().unwrap(), "cluster").unwrap_err();
        assert!(
            e.0.contains("cluster.node_pools[0].config.taints[0].effect"),
            "{e:?}"
        );
        assert!(e.0.contains("TYPE_ENUM"), "{e:?}");
    }
}
