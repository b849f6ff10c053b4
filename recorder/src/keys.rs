//! The server's Ed25519 evidence key (RFC 8032 via `ring::signature`).
//!
//! Stored as a PKCS#8 v2 DER document (RFC 5958 / RFC 8410 §7, as produced by
//! `ring::signature::Ed25519KeyPair::generate_pkcs8`) in
//! `<data_dir>/keys/evidence-ed25519.pk8`, mode 0600, made on first use. The
//! public key is exported as SPKI (RFC 8410 §4) in PEM and as 32 raw bytes in hex;
//! see `docs/evidence.md` § "Keys".

use crate::hash::sha256;
use crate::{to_hex, RecorderError};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// File name of the private key inside the keys folder.
pub const KEY_FILE: &str = "evidence-ed25519.pk8";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): SEQUENCE,
/// AlgorithmIdentifier id-Ed25519 (1.3.101.112), BIT STRING of 33 bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The private evidence key; signs manifests.
pub struct EvidenceKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceKey").field("key_id", &self.public.key_id()).finish_non_exhaustive()
    }
}

impl EvidenceKey {
    /// Loads `<keys_dir>/evidence-ed25519.pk8`, or generates a new key there
    /// (folder created if needed, file created exclusively with mode 0600).
    ///
    /// # Errors
    /// [`RecorderError::Io`] on file-system failure; [`RecorderError::BadKey`] when
    /// the file is not an Ed25519 PKCS#8 v2 document; [`RecorderError::Rng`].
    pub fn load_or_generate(keys_dir: &Path) -> Result<Self, RecorderError> {
        let path = keys_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_pkcs8(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(keys_dir).map_err(RecorderError::io(keys_dir))?;
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| RecorderError::Rng)?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                match opts.open(&path) {
                    Ok(mut f) => {
                        f.write_all(doc.as_ref()).map_err(RecorderError::io(&path))?;
                        f.sync_all().map_err(RecorderError::io(&path))?;
                        Self::from_pkcs8(doc.as_ref(), &path)
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let bytes = std::fs::read(&path).map_err(RecorderError::io(&path))?;
                        Self::from_pkcs8(&bytes, &path)
                    }
                    Err(e) => Err(RecorderError::io(&path)(e)),
                }
            }
            Err(e) => Err(RecorderError::io(&path)(e)),
        }
    }

    /// Loads an existing key without creating one.
    ///
    /// # Errors
    /// [`RecorderError::Io`] (including not found) or [`RecorderError::BadKey`].
    pub fn load(keys_dir: &Path) -> Result<Self, RecorderError> {
        let path = keys_dir.join(KEY_FILE);
        let bytes = std::fs::read(&path).map_err(RecorderError::io(&path))?;
        Self::from_pkcs8(&bytes, &path)
    }

    /// A fresh key in memory only (tests, tools).
    ///
    /// # Errors
    /// [`RecorderError::Rng`].
    pub fn generate_ephemeral() -> Result<Self, RecorderError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| RecorderError::Rng)?;
        Self::from_pkcs8(doc.as_ref(), Path::new("<memory>"))
    }

    /// A deterministic key from a 32-byte Ed25519 seed (the RFC 8032 §5.1.5
    /// private key). For test vectors, such as the one in `docs/evidence.md`;
    /// real keys come from [`EvidenceKey::load_or_generate`].
    ///
    /// # Errors
    /// [`RecorderError::BadKey`] if ring rejects the seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, RecorderError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| RecorderError::BadKey { path: PathBuf::from("<seed>"), reason: e.to_string() })?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        Ok(Self { pair, public: PublicKey(raw) })
    }

    fn from_pkcs8(bytes: &[u8], path: &Path) -> Result<Self, RecorderError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|e| RecorderError::BadKey {
            path: path.to_owned(),
            reason: format!("not an Ed25519 PKCS#8 v2 document ({e})"),
        })?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        Ok(Self { pair, public: PublicKey(raw) })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Ed25519 signature (64 bytes, RFC 8032 §5.1.6) of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut o = [0u8; 64];
        o.copy_from_slice(self.pair.sign(msg).as_ref());
        o
    }
}

/// An Ed25519 public key: 32 bytes (RFC 8032 §5.1.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", to_hex(&self.0))
    }
}

impl PublicKey {
    /// Key id: the first 8 bytes of SHA-256(32 raw public-key bytes), as 16
    /// lower-case hex digits (`docs/evidence.md` § "Keys").
    pub fn key_id(&self) -> String {
        to_hex(&sha256(&self.0)[..8])
    }

    /// The 32 raw bytes as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// SubjectPublicKeyInfo DER (RFC 8410 §4), 44 bytes: what WebCrypto
    /// `importKey("spki", …, {name: "Ed25519"})` takes.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut v = SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.0);
        v
    }

    /// PEM of the SPKI (RFC 7468 §13, label `PUBLIC KEY`), ending in a newline.
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.to_spki_der());
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Parses a public key given as 64 hex digits (raw key) or as a PEM
    /// `PUBLIC KEY` block (SPKI), ignoring surrounding whitespace and any text
    /// outside the PEM block.
    ///
    /// # Errors
    /// [`RecorderError::BadKey`] (with `path` set to `<text>`) for anything else.
    pub fn parse(text: &str) -> Result<Self, RecorderError> {
        let bad = |r: &str| RecorderError::BadKey { path: PathBuf::from("<text>"), reason: r.to_owned() };
        let t = text.trim();
        if let Some(raw) = crate::from_hex32(&t.to_ascii_lowercase()) {
            return Ok(Self(raw));
        }
        let begin = "-----BEGIN PUBLIC KEY-----";
        let end = "-----END PUBLIC KEY-----";
        let (Some(b), Some(e)) = (t.find(begin), t.find(end)) else {
            return Err(bad("expected 64 hex digits or a PEM PUBLIC KEY block"));
        };
        if e < b {
            return Err(bad("PEM END before BEGIN"));
        }
        let body: String = t[b + begin.len()..e].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| bad("PEM body is not base64"))?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(bad("not an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4)"));
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[12..]);
        Ok(Self(raw))
    }

    /// Whether `sig` is a valid Ed25519 signature of `msg` under this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(msg, sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_mode_0600_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let keys = d.path().join("keys");
        let k1 = EvidenceKey::load_or_generate(&keys).unwrap();
        let k2 = EvidenceKey::load_or_generate(&keys).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(keys.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
        }
        let sig = k1.sign(b"x");
        assert!(k2.public_key().verify(b"x", &sig));
        assert!(!k2.public_key().verify(b"y", &sig));
    }

    #[test]
    fn garbage_key_file_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(KEY_FILE), b"not a key").unwrap();
        let e = EvidenceKey::load_or_generate(d.path()).unwrap_err();
        assert!(matches!(e, RecorderError::BadKey { .. }), "{e}");
    }

    #[test]
    fn pem_and_hex_round_trip() {
        let k = EvidenceKey::generate_ephemeral().unwrap();
        let p = k.public_key();
        assert_eq!(PublicKey::parse(&p.to_pem()).unwrap(), *p);
        assert_eq!(PublicKey::parse(&p.to_hex()).unwrap(), *p);
        assert_eq!(p.key_id().len(), 16);
        assert!(PublicKey::parse("zz").is_err());
        assert!(PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }
}
