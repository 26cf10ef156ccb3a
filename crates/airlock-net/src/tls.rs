//! TLS for the hosts the gateway terminates: a certificate authority that signs a leaf
//! certificate per host (cached for the gateway's life), the roots upstream certificates are
//! verified against, and the rustls configurations of both sides.
//!
//! The authority is made once per install by the supervisor ([`Authority::generate`]) and kept
//! on the host (key 0600); the gateway gets its certificate and key in its spec and the guest
//! only ever gets the certificate. Leaf keys are made in memory and never written anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_policy::Target;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// ALPN protocol ids the gateway speaks on either side.
pub const H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN id.
pub const HTTP11: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Making or signing a certificate failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused a key or configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM text did not hold what it should.
    #[error("PEM: {0}")]
    Pem(String),
}

/// The authority's certificate and key, as PEM. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityPem {
    /// The CA certificate (goes to the guest's trust stores).
    pub cert: String,
    /// The CA private key (never leaves the host).
    pub key: String,
}

impl std::fmt::Debug for AuthorityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthorityPem([CA certificate and key])")
    }
}

/// A host and the ALPN protocols offered to its guests.
type ServerKey = (String, Vec<Vec<u8>>);

/// Signs leaf certificates for terminated hosts.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf of this gateway: leaves differ by name only.
    leaf_key: KeyPair,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Server configurations by host and protocols, kept so guest sessions resume.
    servers: Mutex<HashMap<ServerKey, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new authority: ECDSA P-256, valid ten years from yesterday.
    pub fn generate() -> Result<AuthorityPem, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        params.not_before = day(-1);
        params.not_after = day(3650);
        let cert = params.self_signed(&key)?;
        Ok(AuthorityPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// The authority in `pem` (made by [`generate`](Self::generate)).
    pub fn from_pem(pem: &AuthorityPem) -> Result<Authority, TlsError> {
        let key = KeyPair::from_pem(&pem.key)?;
        // Leaves name the issuer by its subject and key: the same fixed subject as at
        // generation, and the key from the PEM.
        let issuer = Issuer::new(ca_params(), key);
        Ok(Authority {
            issuer,
            leaf_key: KeyPair::generate()?,
            leaves: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
        })
    }

    /// The leaf certificate for `host` (made on first use, then cached).
    pub fn leaf(&self, host: &Target) -> Result<Arc<CertifiedKey>, TlsError> {
        let name = host.to_string();
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(leaf) = leaves.get(&name) {
            return Ok(leaf.clone());
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![match host {
            Target::Ip(ip) => SanType::IpAddress(*ip),
            Target::Name(h) => SanType::DnsName(h.as_str().try_into()?),
        }];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = day(-1);
        params.not_after = day(90);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&self.leaf_key, &self.issuer)?;
        let key_der = PrivateKeyDer::try_from(self.leaf_key.serialize_der())
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
        let leaf = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer));
        leaves.insert(name, leaf.clone());
        Ok(leaf)
    }

    /// The server side of a terminated connection to `host`, offering `alpn`.
    pub fn server_config(
        &self,
        host: &Target,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = (
            host.to_string(),
            alpn.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
        );
        if let Some(c) = self
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(c.clone());
        }
        let leaf = self.leaf(host)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(leaf)));
        config.alpn_protocols = key.1.clone();
        // Our order, not the guest's (OpenSSL and Node list AES-256 first).
        config.ignore_client_order = true;
        let config = Arc::new(config);
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, config.clone());
        Ok(config)
    }
}

/// The authority's subject and constraints (validity is set at generation).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "airlock sandbox egress CA");
    dn.push(DnType::OrganizationName, "airlock");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// ring's suites with AES-128-GCM first. The gateway does the crypto of both legs of a
/// terminated connection on the host's cores, beside the VM: AES-128-GCM costs about a
/// quarter less than AES-256-GCM per byte and is what TLS 1.3 requires every peer to have.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    });
    Arc::new(p)
}

/// Trust roots from PEM texts; returns them and how many certificates were unusable.
pub fn roots(pems: &[String]) -> (rustls::RootCertStore, usize) {
    let mut store = rustls::RootCertStore::empty();
    let mut bad = 0;
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let added = cert.map(|c| store.add(c).is_ok()).unwrap_or(false);
            if !added {
                bad += 1;
            }
        }
    }
    (store, bad)
}

/// The upstream side: certificates verified against `roots`, offering `alpn`.
pub fn client_config(
    roots: Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Midnight UTC `offset` days from today, as rcgen wants it.
fn day(offset: i64) -> time::OffsetDateTime {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        / 86_400;
    let days = i64::try_from(today).unwrap_or(0).saturating_add(offset);
    let (y, m, d) = civil_from_days(days);
    rcgen::date_time_ymd(y, m, d)
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01.
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(1970),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn leaves_chain_to_the_authority_and_are_cached() {
        let pem = Authority::generate().unwrap();
        let ca = Authority::from_pem(&pem).unwrap();
        let host = Target::parse("api.example.com").unwrap();
        let a = ca.leaf(&host).unwrap();
        let b = ca.leaf(&host).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let ip = ca.leaf(&Target::parse("127.0.0.1").unwrap()).unwrap();
        assert!(!Arc::ptr_eq(&a, &ip));
        // A client trusting only the authority accepts the leaf for its name.
        let (store, bad) = roots(std::slice::from_ref(&pem.cert));
        assert_eq!((store.len(), bad), (1, 0));
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        let leaf = a.cert.first().unwrap();
        assert!(
            verifier
                .verify_server_cert(leaf, &[], &name, &[], now)
                .is_ok()
        );
        let other = rustls::pki_types::ServerName::try_from("other.example.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(leaf, &[], &other, &[], now)
                .is_err()
        );
    }

    #[test]
    fn the_gateway_chooses_aes_128_gcm_whatever_the_guest_prefers() {
        let pem = Authority::generate().unwrap();
        let ca = Authority::from_pem(&pem).unwrap();
        let host = Target::parse("api.example.com").unwrap();
        let server = ca.server_config(&host, &[HTTP11]).unwrap();
        // A guest client listing AES-256 first, as OpenSSL and Node do.
        let mut guest = rustls::crypto::ring::default_provider();
        guest
            .cipher_suites
            .sort_by_key(|s| u8::from(s.suite() != rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));
        let (store, _) = roots(std::slice::from_ref(&pem.cert));
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(guest))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut wire.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut back = Vec::new();
            s.write_tls(&mut back).unwrap();
            c.read_tls(&mut back.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        let suite = s.negotiated_cipher_suite().map(|s| s.suite());
        assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        // And the upstream side offers it first.
        let up = client_config(Arc::new(rustls::RootCertStore::empty()), &[]).unwrap();
        let first = up
            .crypto_provider()
            .cipher_suites
            .first()
            .map(|s| s.suite());
        assert_eq!(first, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    }
}
