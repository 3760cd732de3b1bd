//! The mesh's certificate authority: signs workload certificates (SPIFFE id as the only SAN, short-lived) and the
//! operator's own serving certificate. Pure apart from key generation: the current time comes in as a value.
//! Keys and certificates come from Istio's plug-in CA file names ([`CaFiles`]), so a user's intermediate from
//! their own PKI (or cert-manager) drops in unchanged.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use weft_xds::SpiffeId;

/// A generated root's lifetime (Istio's self-signed root: 10 years).
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start this much before "now", so a peer whose clock is a little behind accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The PEM texts a CA is made of, by Istio's plug-in CA names (`cacerts`): `ca-cert.pem` (the signing
/// certificate), `ca-key.pem`, `root-cert.pem` (the trust bundle: one or more roots), `cert-chain.pem` (from the
/// signing certificate up to the root; empty for a self-signed root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub ca_cert: String,
    pub ca_key: String,
    pub root_cert: String,
    pub cert_chain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA key does not parse: {0}")]
    Key(rcgen::Error),
    #[error("the CA certificate does not parse: {0}")]
    Certificate(rcgen::Error),
    #[error("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa,
    #[error("root-cert.pem holds no certificate")]
    NoRoot,
    #[error("ca-key.pem is not the key of ca-cert.pem")]
    KeyMismatch,
    #[error("ca-cert.pem is not signed by root-cert.pem or a certificate of cert-chain.pem")]
    NotChained,
    #[error("making the certificate: {0}")]
    Generate(rcgen::Error),
}

/// Why a CSR is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the CSR does not parse or its signature is wrong: {0}")]
    Csr(rcgen::Error),
    #[error("the CSR asks for {asked:?}; the caller is {allowed}")]
    WrongIdentity { asked: Vec<String>, allowed: String },
    #[error("signing: {0}")]
    Sign(rcgen::Error),
}

/// The signing certificate and key, with the chain and trust bundle to hand out.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    files: CaFiles,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("ca_cert", &self.files.ca_cert).finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed root for `trust_domain` (an ECDSA P-256 key).
    pub fn generate(trust_domain: &str, now: SystemTime) -> Result<CaFiles, CaError> {
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("Weft root CA ({trust_domain})"), trust_domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        (params.not_before, params.not_after) = validity(now, ROOT_LIFETIME);
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        Ok(CaFiles {
            ca_cert: cert.pem(),
            ca_key: key.serialize_pem(),
            root_cert: cert.pem(),
            cert_chain: String::new(),
        })
    }

    pub fn from_files(files: CaFiles) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(&files.ca_key).map_err(CaError::Key)?;
        if !is_ca(&files.ca_cert)? {
            return Err(CaError::NotACa);
        }
        if !files.root_cert.contains("-----BEGIN CERTIFICATE-----") {
            return Err(CaError::NoRoot);
        }
        check_pair_and_chain(&files, &key)?;
        let issuer = Issuer::from_ca_cert_pem(&files.ca_cert, key).map_err(CaError::Certificate)?;
        Ok(Self { issuer, files })
    }

    /// The trust bundle: every root a peer's certificate may chain to.
    pub fn roots_pem(&self) -> &str {
        &self.files.root_cert
    }

    /// Signs `csr_pem` for `identity`, valid for `lifetime` from `now`. The CSR must ask for that identity and
    /// nothing else; whatever else it asks for (CA, key usages, subject) is ignored. Returns the chain, the
    /// workload's certificate first and the root last.
    pub fn sign_workload(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(SignError::Csr)?;
        let wanted = identity.to_string();
        let asked: Vec<String> = csr.params.subject_alt_names.iter().map(san_text).collect();
        if asked != [format!("URI:{wanted}")] {
            return Err(SignError::WrongIdentity { asked, allowed: wanted });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = csr.params.subject_alt_names.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        (params.not_before, params.not_after) = validity(now, lifetime);
        let signed = CertificateSigningRequestParams { params, public_key: csr.public_key };
        let cert = signed.signed_by(&self.issuer).map_err(SignError::Sign)?;
        Ok(self.chain_after(cert.pem()))
    }

    /// A certificate and new key for the operator's TLS port, valid for `names` (DNS names or IP addresses).
    pub fn sign_server(&self, names: &[String], lifetime: Duration, now: SystemTime) -> Result<ServerCert, CaError> {
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(CaError::Generate)?;
        params.distinguished_name = name("weft-operator", "weft");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        (params.not_before, params.not_after) = validity(now, lifetime);
        let cert = params.signed_by(&key, &self.issuer).map_err(CaError::Generate)?;
        Ok(ServerCert { chain_pem: self.chain_after(cert.pem()).concat(), key_pem: key.serialize_pem() })
    }

    /// `leaf`, then the signing certificate up to the root (the root once, last).
    fn chain_after(&self, leaf: String) -> Vec<String> {
        let roots = pem_blocks(&self.files.root_cert);
        let mut chain = vec![leaf];
        chain.extend(pem_blocks(&self.files.ca_cert).into_iter().take(1));
        // A self-signed CA that is one of the bundle's roots ends the chain (during a root rotation the bundle
        // holds other roots too, which are not this chain's).
        if chain.get(1).is_some_and(|ca| roots.contains(ca)) {
            return chain;
        }
        for certificate in pem_blocks(&self.files.cert_chain) {
            if !chain.contains(&certificate) {
                chain.push(certificate);
            }
        }
        if let Some(root) = roots.first()
            && !chain.iter().any(|c| roots.contains(c))
        {
            chain.push(root.clone());
        }
        chain
    }
}

/// The operator's serving certificate chain and key, PEM.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub chain_pem: String,
    pub key_pem: String,
}

/// The key must be the signing certificate's, and that certificate must be a root of the bundle or be signed by
/// a certificate of the chain or the bundle: a mistake here would otherwise show only as every proxy refusing
/// every peer.
fn check_pair_and_chain(files: &CaFiles, key: &KeyPair) -> Result<(), CaError> {
    let unparsable = || CaError::Certificate(rcgen::Error::CouldNotParseCertificate);
    let ders: Vec<Vec<u8>> = pem_blocks(&format!("{}{}{}", files.ca_cert, files.cert_chain, files.root_cert))
        .iter()
        .filter_map(|pem| x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok().map(|(_, block)| block.contents))
        .collect();
    let parsed: Vec<_> =
        ders.iter().filter_map(|der| x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c)).collect();
    let ca = parsed.first().ok_or_else(unparsable)?;
    if ca.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CaError::KeyMismatch);
    }
    let is_root = pem_blocks(&files.root_cert).iter().any(|root| pem_blocks(&files.ca_cert).first() == Some(root));
    let signed = parsed.iter().skip(1).any(|issuer| ca.verify_signature(Some(issuer.public_key())).is_ok());
    if is_root || signed { Ok(()) } else { Err(CaError::NotChained) }
}

/// Whether the first certificate of `pem` says `CA:TRUE`.
fn is_ca(pem: &str) -> Result<bool, CaError> {
    let unparsable = || CaError::Certificate(rcgen::Error::CouldNotParseCertificate);
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| unparsable())?;
    let cert = block.parse_x509().map_err(|_| unparsable())?;
    Ok(cert.basic_constraints().ok().flatten().is_some_and(|constraints| constraints.value.ca))
}

fn name(common_name: &str, organization: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, organization);
    name
}

fn validity(now: SystemTime, lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let from = OffsetDateTime::from(now - CLOCK_SKEW);
    (from, OffsetDateTime::from(now + lifetime))
}

/// 16 random bytes, top bit clear (a positive serial, as RFC 5280 asks).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn san_text(san: &SanType) -> String {
    match san {
        SanType::URI(uri) => format!("URI:{}", uri.as_str()),
        SanType::DnsName(name) => format!("DNS:{}", name.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
        _ => "otherName".to_string(),
    }
}

/// Each `-----BEGIN CERTIFICATE-----` block of `text`, normalised to end with a newline.
pub fn pem_blocks(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else { break };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
