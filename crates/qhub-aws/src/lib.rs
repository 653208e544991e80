//! `qhub-aws`: the Amazon Web Services provider (EKS, VPC, IAM, EFS through the AWS SDK).
//!
//! Not built yet: this crate will implement `qhub-core`'s `Provider` trait for
//! `provider: aws`, tested against moto. Until then it exports only what it will hold.

/// The provider name this crate serves (`provider: aws` in qhub-config.yaml).
pub const PROVIDER: &str = "aws";
