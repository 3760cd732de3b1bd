//! Kubernetes mode checks a workload's token with a TokenReview for Weft's audience: the reviewed identity names
//! the workload, and a token the API server does not authenticate, or authenticates for another audience or as
//! something other than a service account, gets no identity (and so no certificate).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_client;
use weft_operator::ca::Authenticator;

/// An API server answering every TokenReview with `status`.
fn reviewing(status: Value) -> Authenticator {
    let (client, _) = fake_client(move |request| {
        let mut review = request.body.clone();
        review["status"] = status.clone();
        (http::StatusCode::CREATED, review)
    });
    Authenticator::TokenReview { client, audience: "weft-ca".into() }
}

#[tokio::test]
async fn only_an_authenticated_service_account_token_for_weft_s_audience_names_a_workload() {
    let user = |name: &str| json!({"username": name});
    let good = reviewing(
        json!({"authenticated": true, "audiences": ["weft-ca"], "user": user("system:serviceaccount:shop:reviews")}),
    );
    let caller = good.authenticate("token").await.unwrap();
    assert_eq!((caller.namespace.as_str(), caller.service_account.as_str()), ("shop", "reviews"));

    let refusals = [
        (
            "another audience",
            json!({"authenticated": true, "audiences": ["kubernetes"], "user": user("system:serviceaccount:shop:reviews")}),
        ),
        ("not authenticated", json!({"authenticated": false, "error": "token expired"})),
        (
            "a person, not a workload",
            json!({"authenticated": true, "audiences": ["weft-ca"], "user": user("jane@example.com")}),
        ),
    ];
    for (what, status) in refusals {
        let result = reviewing(status).authenticate("token").await;
        assert!(result.is_err(), "{what}: {result:?}");
    }
}
