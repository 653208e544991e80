//! AWS partitions: a region belongs to one, and the partition decides the DNS suffix of its
//! service endpoints and the partition name inside ARNs. Here rather than in `qhub-aws` because
//! config validation needs it too (an IAM ARN in `amazon_web_services.cluster_admins` must be
//! in the region's partition).
//!
//! The table follows the SDK's own `partitions.json` (shipped in every `aws-sdk-*` crate's
//! `endpoint_lib`, version 1.1): the region patterns, their `dnsSuffix` and partition ids.

/// The partition a region belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The partition id as ARNs spell it: `aws`, `aws-cn`, `aws-us-gov`, …
    pub id: &'static str,
    /// The DNS suffix of the partition's regional endpoints: `amazonaws.com`,
    /// `amazonaws.com.cn`, …
    pub dns_suffix: &'static str,
}

/// Region-name prefixes of the partitions other than `aws`, most specific first
/// (`us-isob-` before `us-iso-`, both before the commercial `us-`).
const PARTITIONS: &[(&str, Partition)] = &[
    (
        "cn-",
        Partition {
            id: "aws-cn",
            dns_suffix: "amazonaws.com.cn",
        },
    ),
    (
        "us-gov-",
        Partition {
            id: "aws-us-gov",
            dns_suffix: "amazonaws.com",
        },
    ),
    (
        "us-isob-",
        Partition {
            id: "aws-iso-b",
            dns_suffix: "sc2s.sgov.gov",
        },
    ),
    (
        "us-isof-",
        Partition {
            id: "aws-iso-f",
            dns_suffix: "csp.hci.ic.gov",
        },
    ),
    (
        "us-iso-",
        Partition {
            id: "aws-iso",
            dns_suffix: "c2s.ic.gov",
        },
    ),
    (
        "eu-isoe-",
        Partition {
            id: "aws-iso-e",
            dns_suffix: "cloud.adc-e.uk",
        },
    ),
    (
        "eusc-",
        Partition {
            id: "aws-eusc",
            dns_suffix: "amazonaws.eu",
        },
    ),
];

/// The commercial partition, which every other region name belongs to.
pub const AWS: Partition = Partition {
    id: "aws",
    dns_suffix: "amazonaws.com",
};

impl Partition {
    /// The partition of `region` (`cn-north-1` → `aws-cn`); unknown names are commercial.
    pub fn of(region: &str) -> Partition {
        PARTITIONS
            .iter()
            .find(|(prefix, _)| region.starts_with(prefix))
            .map_or(AWS, |(_, p)| *p)
    }

    /// The regional endpoint host of `service` in `region`: `sts.cn-north-1.amazonaws.com.cn`.
    pub fn host(service: &str, region: &str) -> String {
        format!("{service}.{region}.{}", Self::of(region).dns_suffix)
    }
}

/// The partition ids ARNs may name.
pub const IDS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-f",
    "aws-iso-e",
    "aws-eusc",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_their_partition() {
        let cases = [
            ("eu-west-1", "aws", "amazonaws.com"),
            ("us-east-1", "aws", "amazonaws.com"),
            ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
            ("cn-northwest-1", "aws-cn", "amazonaws.com.cn"),
            ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
            ("us-iso-east-1", "aws-iso", "c2s.ic.gov"),
            ("us-isob-east-1", "aws-iso-b", "sc2s.sgov.gov"),
            ("us-isof-south-1", "aws-iso-f", "csp.hci.ic.gov"),
            ("eu-isoe-west-1", "aws-iso-e", "cloud.adc-e.uk"),
            ("eusc-de-east-1", "aws-eusc", "amazonaws.eu"),
        ];
        for (region, id, suffix) in cases {
            let p = Partition::of(region);
            assert_eq!((p.id, p.dns_suffix), (id, suffix), "{region}");
        }
    }
}
