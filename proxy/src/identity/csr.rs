//! A fresh key and a certificate signing request for the workload's SPIFFE id (its only SAN). Pure apart from
//! the key's randomness.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use weft_xds::SpiffeId;

/// The request and the key it is for (PKCS#8 DER, kept in memory only).
pub struct Request {
    pub csr_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

pub fn new_request(id: &SpiffeId) -> Result<Request, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok(Request { csr_pem: csr.pem()?, key_der: key.serialize_der(), key_pem: key.serialize_pem() })
}
