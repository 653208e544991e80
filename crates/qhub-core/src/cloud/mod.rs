//! The cloud toolkit: the generic half of a provider, shared by every cloud crate so that none
//! writes it again. Read it with `docs/writing-a-provider.md`.
//!
//! - [`poll`]: wait for a cloud operation with a deadline, reporting what it waits for.
//! - [`duplicates`]: keep one copy of a resource and name every other copy so the plan
//!   deletes it.
//! - [`stats`]: API call counters (reads vs mutations), for tests and benchmarks.
//! - [`endpoint`]: the loopback rule for anonymous credentials.
//! - [`http`]: the REST toolkit of the hand-written clients (base URL, credentials, counters,
//!   retries with `Retry-After`, error envelopes).
//! - [`kubeconfig`]: kubeconfigs with a bearer token or an `exec` stanza.
//! - [`drain`]: delete a cluster's LoadBalancer Services (and wait) before the network goes.
//! - [`lock`]: the cloud-side deploy lock, a lease on one object with compare-and-swap.
//! - [`s3_lock`]: that lock on an S3-compatible store (S3, Spaces), whatever signs the calls.
//! - [`aws_partition`]: AWS partitions by region (ARN partition ids, endpoint DNS suffixes).
//! - [`retry()`]: the one retry policy, for reads outside the engine.

pub mod aws_partition;
pub mod drain;
pub mod duplicates;
pub mod endpoint;
pub mod http;
pub mod kubeconfig;
pub mod lock;
pub mod poll;
pub mod s3_lock;
pub mod stats;

pub use crate::retry::{RetryPolicy, retry};
