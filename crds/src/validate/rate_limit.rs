//! Checks of an HTTPLocalRateLimitPolicy the schema cannot express, with Linkerd's rules: some limit to apply,
//! limits of at least one request per second, a per-identity or override limit no larger than the total, callers
//! named as ServiceAccounts; and, as for AuthorizationPolicy, one way of choosing workloads, Services as targets.

use super::authorization_policy::check_workloads;
use crate::FieldError;
use crate::field_path::Path;
use crate::rate_limit::{HttpLocalRateLimitPolicySpec, Limit};

/// Every problem in an HTTPLocalRateLimitPolicy spec; empty when it is valid.
pub fn validate_rate_limit(spec: &HttpLocalRateLimitPolicySpec) -> Vec<FieldError> {
    let root = Path::root("spec");
    let mut errors = Vec::new();
    check_workloads(spec, &mut errors);
    if spec.port == Some(0) {
        errors.push(root.field("port").error("port 0 must be a number between 1 and 65535"));
    }
    if spec.total.is_none() && spec.identity.is_none() && spec.overrides.is_empty() {
        errors.push(root.error("set at least one of total, identity and overrides"));
    }
    let total = spec.total.map(|t| t.requests_per_second);
    check_limit(&root.field("total"), spec.total, None, &mut errors);
    check_limit(&root.field("identity"), spec.identity, total, &mut errors);
    for (i, entry) in spec.overrides.iter().enumerate() {
        let path = root.field("overrides").index(i);
        let limit = Limit { requests_per_second: entry.requests_per_second };
        check_limit(&path, Some(limit), total, &mut errors);
        if entry.client_refs.is_empty() {
            errors.push(path.field("clientRefs").error("an override names at least one client"));
        }
        for (j, client) in entry.client_refs.iter().enumerate() {
            if !client.is_service_account() {
                errors.push(
                    path.field("clientRefs")
                        .index(j)
                        .error(format!("kind {:?} is not supported: clients are named by ServiceAccount", client.kind)),
                );
            }
        }
    }
    errors
}

/// The highest rate a limit may name: far more than one workload's port serves.
pub const MAX_REQUESTS_PER_SECOND: u32 = 1_000_000;

fn check_limit(path: &Path, limit: Option<Limit>, total: Option<u32>, errors: &mut Vec<FieldError>) {
    let Some(Limit { requests_per_second: rate }) = limit else { return };
    let path = path.field("requestsPerSecond");
    if rate == 0 {
        errors.push(path.error("requestsPerSecond must be at least 1"));
    }
    if rate > MAX_REQUESTS_PER_SECOND {
        // The proxy's buckets count in nanoseconds per token: far above this their rate would be inexact.
        errors.push(path.error(format!(
            "requestsPerSecond must be at most {MAX_REQUESTS_PER_SECOND} (leave the limit out for no limit)"
        )));
    }
    if let Some(total) = total.filter(|total| rate > *total) {
        errors.push(path.error(format!("{rate} is more than the total's {total} requests per second")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: HttpLocalRateLimitPolicySpec = serde_saphyr::from_str(yaml).expect("the test's YAML parses");
        validate_rate_limit(&spec).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn linkerd_s_example_is_valid() {
        let example = "targetRef: {kind: Service, name: web}\ntotal: {requestsPerSecond: 100}\n\
                       identity: {requestsPerSecond: 20}\noverrides: [{requestsPerSecond: 25, clientRefs: \
                       [{kind: ServiceAccount, namespace: emojivoto, name: special-client}]}]";
        assert_eq!(problems(example), Vec::<String>::new());
        assert_eq!(
            problems("selector: {matchLabels: {app: web}}\nport: 8080\nidentity: {requestsPerSecond: 5}"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn limits_are_checked_against_each_other() {
        assert_eq!(problems("port: 0\ntotal: {requestsPerSecond: 0}").len(), 2);
        assert_eq!(
            problems("total: {requestsPerSecond: 4000000000}"),
            [
                "spec.total.requestsPerSecond: requestsPerSecond must be at most 1000000 (leave the limit out for no limit)"
            ]
        );
        assert_eq!(problems("{}"), ["spec: set at least one of total, identity and overrides"]);
        let errors = problems(
            "total: {requestsPerSecond: 10}\nidentity: {requestsPerSecond: 20}\noverrides: [{requestsPerSecond: 30, \
             clientRefs: [{kind: User, name: bob}]}, {requestsPerSecond: 5, clientRefs: []}]",
        );
        assert_eq!(
            errors,
            [
                "spec.identity.requestsPerSecond: 20 is more than the total's 10 requests per second",
                "spec.overrides[0].requestsPerSecond: 30 is more than the total's 10 requests per second",
                "spec.overrides[0].clientRefs[0]: kind \"User\" is not supported: clients are named by ServiceAccount",
                "spec.overrides[1].clientRefs: an override names at least one client",
            ]
        );
    }
}
