//! Kubernetes mode's CA store: the Secret `weft-ca` (by default) in the operator's namespace, holding the same
//! files as a CA directory ([`super::store`]). The first replica to start without one creates it; the others, or
//! a replica that lost the race (`409 Conflict`), read the winner's, so every replica signs with one key. A
//! Secret the user created (their own intermediate, Istio's `cacerts` layout) is used as it is.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::authority::{Authority, CaError, CaFiles};
use super::store::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the CA Secret {0}: {1}")]
    Api(String, kube::Error),
    #[error("the CA Secret {0}: {1}")]
    Ca(String, CaError),
    #[error("the CA Secret {0} has no {1}")]
    Missing(String, &'static str),
}

/// The CA of Secret `name` in `namespace`, created first when there is none.
pub async fn load_or_create(
    client: kube::Client,
    namespace: &str,
    name: &str,
    trust_domain: &str,
) -> Result<Authority, SecretError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let label = format!("{namespace}/{name}");
    let api = |e| SecretError::Api(label.clone(), e);
    let secret = match secrets.get_opt(name).await.map_err(api)? {
        Some(secret) => secret,
        None => {
            let files =
                Authority::generate(trust_domain, SystemTime::now()).map_err(|e| SecretError::Ca(label.clone(), e))?;
            match secrets.create(&PostParams::default(), &to_secret(name, namespace, &files)).await {
                Ok(created) => {
                    tracing::info!(secret = %label, trust_domain, "created a new self-signed root CA");
                    created
                }
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(status)) if status.code == 409 => secrets.get(name).await.map_err(api)?,
                Err(err) => return Err(api(err)),
            }
        }
    };
    let files = from_secret(&secret).map_err(|missing| SecretError::Missing(label.clone(), missing))?;
    Authority::from_files(files).map_err(|e| SecretError::Ca(label, e))
}

fn to_secret(name: &str, namespace: &str, files: &CaFiles) -> Secret {
    let entry = |key: &str, text: &str| (key.to_string(), ByteString(text.as_bytes().to_vec()));
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "weft-operator".to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            entry(CA_CERT, &files.ca_cert),
            entry(CA_KEY, &files.ca_key),
            entry(ROOT_CERT, &files.root_cert),
        ])),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    }
}

/// The CA files of a Secret; `Err`: the name of a required key it lacks.
pub fn from_secret(secret: &Secret) -> Result<CaFiles, &'static str> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| data.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let ca_cert = text(CA_CERT).ok_or(CA_CERT)?;
    Ok(CaFiles {
        ca_key: text(CA_KEY).ok_or(CA_KEY)?,
        root_cert: text(ROOT_CERT).unwrap_or_else(|| ca_cert.clone()),
        cert_chain: text(CERT_CHAIN).unwrap_or_default(),
        ca_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_the_ca_files() {
        let files = Authority::generate("cluster.local", SystemTime::now()).unwrap();
        let secret = to_secret("weft-ca", "weft-system", &files);
        assert_eq!(from_secret(&secret).unwrap(), files);
        let mut broken = secret.clone();
        broken.data.as_mut().unwrap().remove(CA_KEY);
        assert_eq!(from_secret(&broken), Err(CA_KEY));
    }
}
