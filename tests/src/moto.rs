//! A `moto_server` (PyPI `moto[server]`, the independent AWS emulator) on a loopback port.
//!
//! The binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it the tests that need it fail, loudly: they never
//! pass silently.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qhub_core::provider::Ownership;

/// The region the AWS tests deploy to.
pub const REGION: &str = "us-west-2";

/// A `moto_server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Where the `moto_server` binary is expected.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("QHUB_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
    }

    /// Starts moto (with `MOTO_IAM_LOAD_MANAGED_POLICIES=true`) and waits until it answers.
    ///
    /// # Panics
    /// When the binary is missing or moto does not answer within 60 s.
    pub fn start() -> Self {
        let bin = Self::binary();
        assert!(
            bin.exists(),
            "moto_server not found at {}: run scripts/test (it installs moto[server] into .venv) or set QHUB_MOTO_SERVER",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Self { child, port };
        let start = Instant::now();
        while moto.reset().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The loopback port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) -> std::io::Result<()> {
        self.post("/moto-api/reset").map(|_| ())
    }

    /// A minimal HTTP/1.1 POST to moto's control API (no client library needed).
    pub fn post(&self, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
            return Err(std::io::Error::other(format!("moto answered: {out}")));
        }
        Ok(out)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SDK config for moto at `endpoint` (static test credentials, [`REGION`]).
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "census",
        ))
        .load()
        .await
}

/// What moto holds, by kind: what carries the deployment's ownership tags, and what does not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Resources carrying the ownership tags, by kind.
    pub owned: BTreeMap<&'static str, usize>,
    /// Resources of the same kinds without them (moto's defaults, orphans), by kind.
    pub other: BTreeMap<&'static str, usize>,
}

impl Census {
    /// The owned resources with `String` kinds (to compare with expected maps).
    pub fn owned_by_kind(&self) -> BTreeMap<String, usize> {
        self.owned
            .iter()
            .map(|(k, n)| ((*k).to_string(), *n))
            .collect()
    }

    fn add(&mut self, kind: &'static str, owned: bool, n: usize) {
        let m = if owned {
            &mut self.owned
        } else {
            &mut self.other
        };
        if n > 0 {
            *m.entry(kind).or_insert(0) += n;
        }
    }
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn map_tags(tags: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.cloned().unwrap_or_default().into_iter().collect()
}

/// Counts every resource of the kinds the aws provider creates straight from moto (through the
/// SDK, not through the provider), told apart by the ownership tags.
/// Untagged ones are counted too, so that an orphan (created, then the process killed before it
/// was recorded or tagged) shows. A VPC's main route table and default security group are AWS's,
/// not ours, and are left out.
pub async fn census(sdk: &aws_config::SdkConfig, o: &Ownership) -> Census {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let eks = aws_sdk_eks::Client::new(sdk);
    let iam = aws_sdk_iam::Client::new(sdk);
    let efs = aws_sdk_efs::Client::new(sdk);
    let mut c = Census::default();

    for v in ec2.describe_vpcs().send().await.unwrap().vpcs() {
        c.add("vpc", o.owns(&ec2_tags(v.tags())), 1);
    }
    for s in ec2.describe_subnets().send().await.unwrap().subnets() {
        c.add("subnet", o.owns(&ec2_tags(s.tags())), 1);
    }
    for g in ec2
        .describe_internet_gateways()
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        c.add("internet_gateway", o.owns(&ec2_tags(g.tags())), 1);
    }
    for rt in ec2
        .describe_route_tables()
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        let main = rt.associations().iter().any(|a| a.main() == Some(true));
        let owned = o.owns(&ec2_tags(rt.tags()));
        if owned || !main {
            c.add("route_table", owned, 1);
        }
    }
    for sg in ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        let owned = o.owns(&ec2_tags(sg.tags()));
        if owned || sg.group_name() != Some("default") {
            c.add("security_group", owned, 1);
        }
    }
    // What Kubernetes leaves for the cluster (counted as ours, so "nothing left" covers them):
    // EBS volumes made for PersistentVolumeClaims (the cluster's tag and the claim's), and
    // network interfaces load balancers or the cluster left (`ELB …` description, cluster tag).
    let cluster_tag = format!("kubernetes.io/cluster/{}", o.prefix());
    for v in ec2.describe_volumes().send().await.unwrap().volumes() {
        let tags = ec2_tags(v.tags());
        if tags.get(&cluster_tag).is_some_and(|v| v == "owned")
            && tags.contains_key("kubernetes.io/created-for/pvc/name")
        {
            c.add("ebs_volume", true, 1);
        }
    }
    for eni in ec2
        .describe_network_interfaces()
        .send()
        .await
        .unwrap()
        .network_interfaces()
    {
        let tags = ec2_tags(eni.tag_set());
        let left = eni.description().is_some_and(|d| d.starts_with("ELB "))
            || tags.contains_key(&cluster_tag)
            || tags.get("cluster.k8s.amazonaws.com/name") == Some(&o.prefix());
        if left {
            c.add("network_interface", true, 1);
        }
    }
    // Every role of the account, whatever its path.
    for role in iam.list_roles().send().await.unwrap().roles() {
        let tags = iam
            .list_role_tags()
            .role_name(role.role_name())
            .send()
            .await
            .unwrap();
        let tags: BTreeMap<String, String> = tags
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        c.add("iam_role", o.owns(&tags), 1);
    }
    for name in eks.list_clusters().send().await.unwrap().clusters() {
        let d = eks.describe_cluster().name(name).send().await.unwrap();
        c.add(
            "eks_cluster",
            o.owns(&map_tags(d.cluster().and_then(|c| c.tags()))),
            1,
        );
        for g in eks
            .list_nodegroups()
            .cluster_name(name)
            .send()
            .await
            .unwrap()
            .nodegroups()
        {
            let d = eks
                .describe_nodegroup()
                .cluster_name(name)
                .nodegroup_name(g)
                .send()
                .await
                .unwrap();
            c.add(
                "node_group",
                o.owns(&map_tags(d.nodegroup().and_then(|g| g.tags()))),
                1,
            );
        }
    }
    for fs in efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
    {
        let tags: BTreeMap<String, String> = fs
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        let owned = o.owns(&tags);
        c.add("efs", owned, 1);
        let mts = efs
            .describe_mount_targets()
            .file_system_id(fs.file_system_id())
            .send()
            .await
            .unwrap();
        c.add("efs_mount_target", owned, mts.mount_targets().len());
    }
    c
}
