//! Service Quotas for EC2's vCPU quotas, which moto does not answer: moto 5.2.5's
//! `servicequotas/models.py` knows only the `vpc` service code and answers every other one
//! with `NoSuchResourceException`. The proxy serves `GetServiceQuota` for the EC2 On-Demand
//! vCPU quotas from values a test chooses ([`ServiceQuotas::set`]), so a test can play a new
//! account (0 vCPUs of G and VT instances, the case) and show preflight refusing a
//! group before anything is created. Requests use the awsJson1.1 protocol (`POST /`,
//! `X-Amz-Target: ServiceQuotasV20190624.<Operation>`); anything else is forwarded to moto.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::aws_rules::Refusal;

/// The `X-Amz-Target` prefix of Service Quotas operations.
pub const TARGET_PREFIX: &str = "ServiceQuotasV20190624.";

/// The EC2 vCPU quotas served: code, name (as the Service Quotas console names them), and the
/// value answered until a test sets another (an account whose limits were raised, so tests
/// that do not care pass).
pub const EC2_VCPU_QUOTAS: &[(&str, &str, f64)] = &[
    (
        "L-1216C47A",
        "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        512.0,
    ),
    ("L-DB2E81BA", "Running On-Demand G and VT instances", 64.0),
    ("L-417A185B", "Running On-Demand P instances", 192.0),
];

/// The quota values the proxy answers, by quota code.
#[derive(Debug, Clone, Default)]
pub struct ServiceQuotas {
    values: BTreeMap<String, f64>,
}

impl ServiceQuotas {
    /// Answers `value` for EC2 quota `code` from now on.
    pub fn set(&mut self, code: &str, value: f64) {
        self.values.insert(code.to_string(), value);
    }

    /// The value answered for EC2 quota `code`, if it is one served.
    pub fn value(&self, code: &str) -> Option<f64> {
        let (_, _, default) = EC2_VCPU_QUOTAS.iter().find(|(c, _, _)| *c == code)?;
        Some(self.values.get(code).copied().unwrap_or(*default))
    }

    /// Serves operation `target` (the `X-Amz-Target` header) with JSON `body`, or `None` to
    /// forward it.
    pub fn serve(&self, target: &str, body: &[u8]) -> Option<Result<Json, Refusal>> {
        let op = target.strip_prefix(TARGET_PREFIX)?;
        if op != "GetServiceQuota" {
            return None;
        }
        let body: Json = serde_json::from_slice(body).ok()?;
        if body["ServiceCode"] != "ec2" {
            return None;
        }
        let code = body["QuotaCode"].as_str()?;
        let (_, name, _) = EC2_VCPU_QUOTAS.iter().find(|(c, _, _)| *c == code)?;
        let value = self.value(code)?;
        Some(Ok(json!({"Quota": {
            "ServiceCode": "ec2",
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": format!("arn:aws:servicequotas:us-west-2:123456789012:ec2/{code}"),
            "QuotaCode": code,
            "QuotaName": name,
            "Value": value,
            "Unit": "None",
            "Adjustable": true,
            "GlobalQuota": false,
        }})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_chosen_value_and_forwards_the_rest() {
        let mut q = ServiceQuotas::default();
        let ask = |q: &ServiceQuotas, service: &str, code: &str| {
            q.serve(
                "ServiceQuotasV20190624.GetServiceQuota",
                json!({"ServiceCode": service, "QuotaCode": code})
                    .to_string()
                    .as_bytes(),
            )
        };
        assert_eq!(
            ask(&q, "ec2", "L-DB2E81BA").unwrap().unwrap()["Quota"]["Value"],
            64.0
        );
        q.set("L-DB2E81BA", 0.0);
        assert_eq!(
            ask(&q, "ec2", "L-DB2E81BA").unwrap().unwrap()["Quota"]["Value"],
            0.0
        );
        assert!(ask(&q, "vpc", "L-F678F1CE").is_none());
        assert!(ask(&q, "ec2", "L-0263D0A3").is_none());
        assert!(
            q.serve("ServiceQuotasV20190624.ListServices", b"{}")
                .is_none()
        );
    }
}
