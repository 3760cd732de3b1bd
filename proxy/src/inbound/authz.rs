//! Inbound authorization: each HTTP request, and each connection that is not HTTP, is decided by the
//! AuthorizationPolicies in force ([`weft_xds::authz`]: the pure evaluation over the rules the operator sent)
//! before anything of it reaches the application. Every decision is counted
//! (`weft_proxy_authz_decisions_total{action,result,policy}`) and logged at debug with the rule that made it;
//! what a dry-run policy would have denied, and what an `AUDIT` policy matched, is logged at info.

use weft_xds::authz::{Authorization, Decision, HttpRequest, Peer, Verdict};

use crate::metrics::{AuthzLabels, Metrics};

/// Whether `authz` allows `request` (or, without one, the connection) from `peer`; reported either way.
pub fn allows(authz: &Authorization, peer: &Peer<'_>, request: Option<&HttpRequest<'_>>, metrics: &Metrics) -> bool {
    if authz.is_empty() {
        return true;
    }
    let verdict = authz.decide(peer, request);
    report(&verdict, peer, request, metrics);
    verdict.decision.allowed
}

fn report(verdict: &Verdict<'_>, peer: &Peer<'_>, request: Option<&HttpRequest<'_>>, metrics: &Metrics) {
    let Verdict { decision, dry_run, audited } = verdict;
    count(decision, if decision.allowed { "allowed" } else { "denied" }, metrics);
    let (method, path) = request.map_or(("", ""), |r| (r.method, r.path));
    let (ip, principal, port) = (peer.ip, peer.principal.unwrap_or(""), peer.port);
    tracing::debug!(
        allowed = decision.allowed,
        policy = decision.by.map_or("", |rule| &rule.policy),
        rule = decision.by.map(|rule| rule.index),
        %ip, principal, port, method, path,
        "inbound authorization"
    );
    if let Some(dry_run) = dry_run {
        count(dry_run, if dry_run.allowed { "dry_run_allowed" } else { "dry_run_denied" }, metrics);
        if !dry_run.allowed {
            let policy = dry_run.by.map_or("(no ALLOW rule matched)", |rule| &rule.policy);
            tracing::info!(policy, %ip, principal, port, method, path, "dry run: a policy would have denied this");
        }
    }
    if let Some(rule) = audited {
        let labels = AuthzLabels { action: "audit", result: "audited", policy: Some(rule.policy.clone()) };
        metrics.authz_decision(&labels);
        tracing::info!(policy = &*rule.policy, rule = rule.index, %ip, principal, port, method, path, "audit");
    }
}

fn count(decision: &Decision<'_>, result: &'static str, metrics: &Metrics) {
    if let Some(action) = decision.action {
        let labels = AuthzLabels { action: action.as_str(), result, policy: decision.by.map(|r| r.policy.clone()) };
        metrics.authz_decision(&labels);
    }
}
