//! The encrypted store's file format: a fixed header, then the AES-256-GCM sealed JSON map of
//! secrets. The header is authenticated too (it is the AEAD's associated data), so changing the
//! key kind or the salt is detected like any other change.
//!
//! ```text
//! magic "APSECRT1" (8) | key kind (1: 0 key file, 1 Argon2id passphrase) | salt (16) | nonce (12) | ciphertext+tag
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"APSECRT1";
/// Bytes of a salt.
pub const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 1 + SALT_LEN + NONCE_LEN;
/// Bytes of an AES-256 key.
pub const KEY_LEN: usize = 32;

/// Argon2id cost for a passphrase: OWASP's minimum (19 MiB, 2 passes, 1 lane).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;

/// A 256-bit key, zeroed when dropped.
pub type SecretKey = Zeroizing<[u8; KEY_LEN]>;

/// Where the store's key comes from, as recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A random key kept in the key file beside the store.
    KeyFile,
    /// Derived from a passphrase (`APIARY_SECRETS_PASSWORD`) and the header's salt by Argon2id.
    Passphrase,
}

impl KeyKind {
    fn byte(self) -> u8 {
        match self {
            KeyKind::KeyFile => 0,
            KeyKind::Passphrase => 1,
        }
    }
}

/// What is wrong with a sealed file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not our format at all (too short, wrong magic, unknown key kind).
    #[error("{0}")]
    Format(&'static str),
    /// Authentication failed: the wrong key, or the bytes were changed.
    #[error("decryption failed")]
    Decrypt,
    /// The system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// Argon2 refused its inputs.
    #[error("cannot derive a key from the passphrase: {0}")]
    Kdf(String),
}

/// The header of a sealed file, read without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Where the key comes from.
    pub kind: KeyKind,
    /// Salt for [`KeyKind::Passphrase`] (random, unused, for a key file).
    pub salt: [u8; SALT_LEN],
}

/// Fills `buf` from the OS random source.
pub fn random(buf: &mut [u8]) -> Result<(), SealError> {
    getrandom::fill(buf).map_err(|e| SealError::Random(e.to_string()))
}

/// A fresh random key.
pub fn random_key() -> Result<SecretKey, SealError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    random(key.as_mut())?;
    Ok(key)
}

/// A fresh random salt.
pub fn random_salt() -> Result<[u8; SALT_LEN], SealError> {
    let mut salt = [0u8; SALT_LEN];
    random(&mut salt)?;
    Ok(salt)
}

/// The key Argon2id derives from `passphrase` and `salt`.
pub fn derive_key(passphrase: &[u8], salt: &[u8; SALT_LEN]) -> Result<SecretKey, SealError> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(KEY_LEN))
        .map_err(|e| SealError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    argon.hash_password_into(passphrase, salt, key.as_mut()).map_err(|e| SealError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Reads the header of `bytes`.
pub fn header(bytes: &[u8]) -> Result<Header, SealError> {
    if !bytes.starts_with(MAGIC) {
        return Err(SealError::Format("not an Apiary secret store (unknown format)"));
    }
    if bytes.len() < HEADER_LEN + 16 {
        return Err(SealError::Format("truncated (shorter than a header and a tag)"));
    }
    let kind = match bytes[MAGIC.len()] {
        0 => KeyKind::KeyFile,
        1 => KeyKind::Passphrase,
        _ => return Err(SealError::Format("unknown key kind in the secret store's header")),
    };
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[MAGIC.len() + 1..MAGIC.len() + 1 + SALT_LEN]);
    Ok(Header { kind, salt })
}

/// Seals `plaintext` under `key`, recording `kind` and `salt` in the header; a fresh random nonce
/// every time.
pub fn seal(kind: KeyKind, salt: &[u8; SALT_LEN], key: &SecretKey, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.extend_from_slice(MAGIC);
    out.push(kind.byte());
    out.extend_from_slice(salt);
    out.extend_from_slice(&nonce);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &out[..HEADER_LEN] })
        .map_err(|_| SealError::Decrypt)?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens `bytes` sealed by [`seal`] with `key`.
pub fn open(key: &SecretKey, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    header(bytes)?;
    let nonce = &bytes[MAGIC.len() + 1 + SALT_LEN..HEADER_LEN];
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_ref()));
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: &bytes[HEADER_LEN..], aad: &bytes[..HEADER_LEN] })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_change() {
        let key = random_key().unwrap();
        let salt = random_salt().unwrap();
        let sealed = seal(KeyKind::KeyFile, &salt, &key, b"{\"a\":\"b\"}").unwrap();
        assert_eq!(header(&sealed).unwrap(), Header { kind: KeyKind::KeyFile, salt });
        assert_eq!(open(&key, &sealed).unwrap().as_slice(), b"{\"a\":\"b\"}");
        // Every single-bit flip (header or body) is refused, never silently accepted.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&key, &bad).is_err(), "flip at byte {i} accepted");
        }
        let other = random_key().unwrap();
        assert_eq!(open(&other, &sealed).unwrap_err(), SealError::Decrypt);
        assert!(matches!(open(&key, &sealed[..10]), Err(SealError::Format(_))));
        assert!(matches!(open(&key, b"hello world, this is not a store at all"), Err(SealError::Format(_))));
    }

    #[test]
    fn passphrase_keys_depend_on_passphrase_and_salt() {
        let salt = [7u8; SALT_LEN];
        let a = derive_key(b"correct horse", &salt).unwrap();
        assert_eq!(*a, *derive_key(b"correct horse", &salt).unwrap());
        assert_ne!(*a, *derive_key(b"correct horsf", &salt).unwrap());
        assert_ne!(*a, *derive_key(b"correct horse", &[8u8; SALT_LEN]).unwrap());
    }
}
