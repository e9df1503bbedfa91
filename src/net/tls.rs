//! Mutual TLS 1.3 where each node presents a self-signed certificate for its ed25519 node key.
//!
//! There is no certificate authority: the dialer checks that the server's key is exactly the node id it
//! meant to reach, and the acceptor accepts any well-formed ed25519 certificate, learns the peer's id from
//! it, and then requires proof of the cluster secret (see `netapp::authenticate`), bound to this TLS session
//! through the exporter. Signatures on the handshake are always verified against the certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::NetError;
use super::identity::{NodeId, NodeKey};

/// DER prefix of an ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node id (ed25519 public key) a certificate was issued for, if it is an ed25519 certificate.
pub fn node_id_of_cert(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = ee.subject_public_key_info();
    let bytes: &[u8] = spki.as_ref();
    let key = bytes
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .or_else(|| bytes.strip_prefix(&ED25519_SPKI_PREFIX[2..]))?;
    Some(NodeId(key.try_into().ok()?))
}

/// Certificate and key material of this node, built once at startup.
pub struct TlsIdentity {
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    algs: WebPkiSupportedAlgorithms,
}

impl TlsIdentity {
    pub fn new(key: &NodeKey) -> Result<TlsIdentity, NetError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let tls = |e: String| NetError::Tls(e);
        let der = key
            .signing_key()
            .to_pkcs8_der()
            .map_err(|e| tls(e.to_string()))?;
        let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|e| tls(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["grenier".to_string()])
            .map_err(|e| tls(e.to_string()))?;
        let cert = params.self_signed(&kp).map_err(|e| tls(e.to_string()))?;
        Ok(TlsIdentity {
            cert: cert.der().clone(),
            key_der: der.as_bytes().to_vec(),
            algs: provider().signature_verification_algorithms,
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Client configuration that only accepts a server whose key is `expected`.
    pub fn client_config(&self, expected: NodeId) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let verifier = Arc::new(PeerVerifier {
            expected: Some(expected),
            algs: self.algs,
        });
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.key())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        Ok(Arc::new(cfg))
    }

    /// Server configuration that requires a client certificate for an ed25519 node key.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, NetError> {
        let verifier = Arc::new(PeerVerifier {
            expected: None,
            algs: self.algs,
        });
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct PeerVerifier {
    expected: Option<NodeId>,
    algs: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = node_id_of_cert(cert).ok_or_else(|| {
            rustls::Error::General("peer certificate is not an ed25519 node certificate".into())
        })?;
        match self.expected {
            Some(exp) if exp != id => Err(rustls::Error::General(format!(
                "peer is node {} but node {} was expected",
                id.short(),
                exp.short()
            ))),
            _ => Ok(()),
        }
    }
    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
