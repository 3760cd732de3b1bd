//! `admission.k8s.io/v1` AdmissionReview on the wire: reading the API server's request and writing the response in
//! the documented shape (`patchType: "JSONPatch"`, `patch` as a base64 string of the JSON Patch array).
//!
//! Own serde types rather than kube-core's: its `AdmissionResponse` writes the patch as a JSON array of numbers.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of the AdmissionReview this webhook speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of the review object.
pub const KIND: &str = "AdmissionReview";

/// What the API server asks about: one operation on one object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Copied into the response so the API server can match it.
    pub uid: String,
    /// Type of the object, e.g. `{group: "", version: "v1", kind: "Pod"}`.
    pub kind: GroupVersionKind,
    /// Absent for pods created by controllers (they only have `generateName`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    /// The new object; `None` (JSON `null`) for DELETE.
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// Group, version and kind of an object. The core group is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// The operation under review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// The webhook's answer, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    /// Why the request was denied; `None` when allowed.
    pub status: Option<Status>,
    /// Changes to the object (mutating webhook only).
    pub patch: Option<json_patch::Patch>,
    /// Shown to the `kubectl` user.
    pub warnings: Vec<String>,
}

/// The `status` of a denied request (a `metav1.Status` subset): an HTTP-like code and the message users see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

impl AdmissionResponse {
    /// Allowed, unchanged.
    pub fn allow(uid: &str) -> Self {
        Self { uid: uid.to_string(), allowed: true, status: None, patch: None, warnings: Vec::new() }
    }

    /// Allowed with these changes.
    pub fn patch(uid: &str, patch: json_patch::Patch) -> Self {
        Self { patch: Some(patch), ..Self::allow(uid) }
    }

    /// Denied; `code` is returned to the client (400 for a bad request, 422 for an invalid object).
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        Self { allowed: false, status: Some(Status { code, message: message.into() }), ..Self::allow(uid) }
    }

    /// Adds a warning for the client.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// The complete AdmissionReview response body.
    pub fn to_review_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let patch = match &self.patch {
            Some(patch) => Some(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(patch)?)),
            None => None,
        };
        let response = WireResponse {
            uid: &self.uid,
            allowed: self.allowed,
            status: self.status.as_ref(),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &self.warnings,
        };
        serde_json::to_vec(&WireReview { api_version: API_VERSION, kind: KIND, response })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// Why a body is not an AdmissionReview request; answered with HTTP 400 and this message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected apiVersion {API_VERSION:?} kind {KIND:?}, got apiVersion {api_version:?} kind {kind:?}")]
    WrongKind { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request is malformed: {0}")]
    BadRequest(serde_json::Error),
}

/// Reads an AdmissionReview body sent by the API server.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest, ReviewError> {
    let review: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
    let text = |field: &str| review.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version != API_VERSION || kind != KIND {
        return Err(ReviewError::WrongKind { api_version, kind });
    }
    match review.get("request") {
        None | Some(Value::Null) => Err(ReviewError::NoRequest),
        Some(request) => AdmissionRequest::deserialize(request).map_err(ReviewError::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_is_written_as_base64_with_its_type() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/metadata/annotations/a~1b", "value": "c"}])).unwrap();
        let body = AdmissionResponse::patch("705ab4f5-6393-11e8-b7cc-42010a800002", patch).to_review_json().unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2Fubm90YXRpb25zL2F+MWIiLCJ2YWx1ZSI6ImMifV0="}}"#
        );
    }

    #[test]
    fn a_denial_carries_code_message_and_warnings() {
        let body =
            AdmissionResponse::deny("u", 422, "spec.hosts: required").with_warning("w").to_review_json().unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":422,"message":"spec.hosts: required"},"warnings":["w"]}}"#
        );
    }

    #[test]
    fn an_allowed_request_without_changes_is_minimal() {
        let body = AdmissionResponse::allow("u").to_review_json().unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}"#
        );
    }

    #[test]
    fn malformed_reviews_are_told_apart() {
        let err = |body: &str| parse_review(body.as_bytes()).unwrap_err().to_string();
        assert!(err("not json").starts_with("body is not JSON"));
        assert!(err(r#"{"apiVersion":"v1","kind":"Pod"}"#).starts_with("expected apiVersion"));
        assert_eq!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            "AdmissionReview has no request"
        );
        let no_uid =
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#;
        assert!(err(no_uid).contains("missing field `uid`"), "{}", err(no_uid));
    }
}
