//! Signed manifests, in minisign's format.
//!
//! `hotswap build --sign <secret key>` writes, beside each `X.manifest.json`, a detached
//! signature `X.manifest.json.minisig` over the manifest's exact bytes. The manifest
//! holds the library's sha256, so a valid signature vouches for the library too: a host
//! with trusted keys checks the signature when it scans the directory and the sha256
//! before `dlopen`. The files are minisign's own, so the standard tool verifies them as
//! well (`minisign -Vm X.manifest.json -p key.pub`, then `sha256sum` the library).
//!
//! Keys are minisign key pairs: [`generate`] makes one (the secret key unencrypted, for
//! build machines; protect it with file permissions), [`SecretKey::parse`] and
//! [`TrustedKey::parse`] read the files, [`sign`] signs, [`verify`] checks a signature
//! against several trusted keys at once (key rotation).

use std::fmt;

/// Suffix added to a manifest's file name for its signature (minisign's convention).
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// A minisign key id: 8 bytes, printed as minisign prints it (16 upper-case hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(keynum: &[u8]) -> KeyId {
        let mut id = [0u8; 8];
        let n = keynum.len().min(8);
        id[..n].copy_from_slice(&keynum[..n]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // minisign prints the key number as a little-endian u64.
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// Why a key file could not be read or a manifest could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a minisign public key (`untrusted comment: …` then base64, or
    /// the base64 line alone).
    #[error("not a minisign public key: {0}")]
    PublicKey(String),
    /// The text is not an unencrypted minisign secret key.
    #[error("not an unencrypted minisign secret key (make one with `hotswap keygen`): {0}")]
    SecretKey(String),
    /// Key generation or signing failed (no randomness, …).
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A public key a host trusts to sign plugins.
#[derive(Clone)]
pub struct TrustedKey {
    id: KeyId,
    key: minisign::PublicKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({})", self.id)
    }
}

impl TrustedKey {
    /// Parses a public key: the contents of a minisign `.pub` file (as `hotswap keygen`
    /// or `minisign -G` write it), or its base64 line alone. Fails with
    /// [`KeyError::PublicKey`] on anything else.
    pub fn parse(text: &str) -> Result<TrustedKey, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| KeyError::PublicKey("no key line".to_owned()))?;
        let key = minisign::PublicKey::from_base64(line)
            .map_err(|e| KeyError::PublicKey(e.to_string()))?;
        Ok(TrustedKey {
            id: KeyId::of(key.keynum()),
            key,
        })
    }

    /// Reads and parses the public key file at `path` (see [`TrustedKey::parse`]).
    /// Fails when the file cannot be read or holds no public key.
    pub fn from_file(path: &std::path::Path) -> Result<TrustedKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError::PublicKey(format!("cannot read {}: {e}", path.display())))?;
        TrustedKey::parse(&text)
    }

    /// The key's id, as minisign prints it.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// A secret key that signs manifests.
pub struct SecretKey {
    id: KeyId,
    key: minisign::SecretKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// Parses an unencrypted minisign secret key file's contents (as `hotswap keygen`
    /// writes it). Fails with [`KeyError::SecretKey`] otherwise: an encrypted key (a
    /// build has no one to ask for the password), or a key without its checksum (what
    /// `minisign -G -W` 0.11 writes).
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let boxed = minisign::SecretKeyBox::from_string(text)
            .map_err(|e| KeyError::SecretKey(e.to_string()))?;
        let key = boxed
            .into_unencrypted_secret_key()
            .map_err(|e| KeyError::SecretKey(e.to_string()))?;
        Ok(SecretKey {
            id: KeyId::of(key.keynum()),
            key,
        })
    }

    /// The key's id, as minisign prints it.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// A fresh key pair: the public key file's text and the secret key file's text.
pub struct KeyPairText {
    /// The public key, in minisign's `.pub` format.
    pub public: String,
    /// The secret key, unencrypted, in minisign's `.key` format.
    pub secret: String,
    /// The pair's key id.
    pub id: KeyId,
}

/// Makes a new key pair. Fails only without a source of randomness.
pub fn generate() -> Result<KeyPairText, KeyError> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    let id = KeyId::of(pair.pk.keynum());
    let public = pair
        .pk
        .to_box()
        .map_err(|e| KeyError::Sign(e.to_string()))?
        .into_string();
    let secret = pair
        .sk
        .to_box(Some("hotswap secret key (unencrypted)"))
        .map_err(|e| KeyError::Sign(e.to_string()))?
        .into_string();
    Ok(KeyPairText { public, secret, id })
}

/// Signs `data` (a manifest's bytes) with `key`; returns the text of the `.minisig`
/// file. `trusted_comment` is signed too and shown by `minisign -V` (one line).
pub fn sign(key: &SecretKey, data: &[u8], trusted_comment: &str) -> Result<String, KeyError> {
    let comment = trusted_comment.replace(['\n', '\r'], " ");
    let sig = minisign::sign(
        None,
        &key.key,
        std::io::Cursor::new(data),
        Some(&comment),
        Some(&format!("signature from hotswap key {}", key.id)),
    )
    .map_err(|e| KeyError::Sign(e.to_string()))?;
    Ok(sig.into_string())
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature file is not a minisign signature.
    #[error("the signature is not in minisign's format: {0}")]
    Malformed(String),
    /// Signed by a key that is not among the trusted ones.
    #[error("signed by key {key_id}, which is not a trusted key (trusted: {trusted})")]
    UntrustedKey {
        /// The key that signed.
        key_id: KeyId,
        /// The trusted keys, listed for the message.
        trusted: String,
    },
    /// Made by a trusted key, but not over these bytes: the manifest was changed after
    /// signing (or the signature was).
    #[error(
        "the signature by key {key_id} does not match the manifest: it was changed after signing"
    )]
    Mismatch {
        /// The trusted key that claims the signature.
        key_id: KeyId,
    },
}

/// Checks that `signature` (a `.minisig` file's text) is a valid signature of `data`
/// by one of `keys`, and returns that key's id.
pub fn verify(keys: &[TrustedKey], data: &[u8], signature: &str) -> Result<KeyId, SignatureError> {
    let sig = minisign::SignatureBox::from_string(signature)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let signer = KeyId::of(sig.keynum());
    let Some(key) = keys.iter().find(|k| k.id == signer) else {
        let trusted = keys
            .iter()
            .map(|k| k.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SignatureError::UntrustedKey {
            key_id: signer,
            trusted,
        });
    };
    // Legacy (not prehashed) signatures are refused: minisign has not made them by
    // default for years, and we never do.
    minisign::verify(
        &key.key,
        &sig,
        std::io::Cursor::new(data),
        true,
        false,
        false,
    )
    .map(|()| signer)
    .map_err(|_| SignatureError::Mismatch { key_id: signer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_only_over_its_bytes() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        let sk = SecretKey::parse(&a.secret).unwrap();
        let pa = TrustedKey::parse(&a.public).unwrap();
        let pb = TrustedKey::parse(&b.public).unwrap();
        assert_eq!(sk.id(), a.id);
        assert_eq!(pa.id(), a.id);
        let sig = sign(&sk, b"manifest", "plugin world").unwrap();
        assert_eq!(
            verify(&[pb.clone(), pa.clone()], b"manifest", &sig),
            Ok(a.id)
        );
        assert!(matches!(
            verify(std::slice::from_ref(&pb), b"manifest", &sig),
            Err(SignatureError::UntrustedKey { key_id, .. }) if key_id == a.id
        ));
        assert_eq!(
            verify(std::slice::from_ref(&pa), b"manifesT", &sig),
            Err(SignatureError::Mismatch { key_id: a.id })
        );
        assert!(matches!(
            verify(&[pa], b"manifest", "garbage"),
            Err(SignatureError::Malformed(_))
        ));
        // The base64 line alone is a key too.
        let line = a.public.lines().nth(1).unwrap();
        assert_eq!(TrustedKey::parse(line).unwrap().id(), a.id);
        assert!(TrustedKey::parse("nonsense").is_err());
        assert!(SecretKey::parse(&a.public).is_err());
    }

    /// Made by the standard tool (minisign 0.11): `minisign -G -W`, then
    /// `minisign -S -m msg -t tc` over the five bytes `hello`. (Its `-W` secret key has
    /// no checksum, which the minisign crate refuses: sign with `hotswap keygen`'s keys.)
    const MINISIGN_PUBLIC: &str = "untrusted comment: minisign public key 5D50D301263E3BA1
RWShOz4mAdNQXQldTexYgsYVL9eefWNLmDrOtATNhh+M9F0+PTT7fxj4
";
    const MINISIGN_SIGNATURE: &str = "untrusted comment: signature from minisign secret key
RUShOz4mAdNQXWWOkaHFjlsd5bN9nBOjGHFrcsexyBgdAoesFljJWOq3FWn8qpBdrXLtoneM3Km1AAyf4eiE4KRs0UcEqrT7AQY=
trusted comment: tc
Q20e6RzMD4BTGZArL93vkvT5x3hYv8UooY2AdNb5WgWbZRdi3EbmxUlbX4dDqqdSdisHA9HkrII6KCoioxFfCw==
";

    #[test]
    fn keys_and_signatures_of_the_standard_minisign_tool_work() {
        let public = TrustedKey::parse(MINISIGN_PUBLIC).unwrap();
        assert_eq!(
            public.id().to_string(),
            "5D50D301263E3BA1",
            "ids print as minisign's"
        );
        let id = public.id();
        assert_eq!(
            verify(std::slice::from_ref(&public), b"hello", MINISIGN_SIGNATURE),
            Ok(id)
        );
        assert_eq!(
            verify(std::slice::from_ref(&public), b"hellO", MINISIGN_SIGNATURE),
            Err(SignatureError::Mismatch { key_id: id })
        );
    }
}
