//! AWS partitions: a region belongs to one, and the partition decides the DNS suffix of its
//! service endpoints and the partition name inside ARNs. The table lives in qhub-core
//! ([`qhub_core::cloud::aws_partition`]), which config validation uses too.

pub use qhub_core::cloud::aws_partition::{AWS, IDS, Partition};
