//! SOPS's own test vector for a value, and the envelope's rules.

use super::*;

#[test]
fn sops_test_vector_opens_only_at_its_path() {
    // From SOPS's aes/cipher_test.go: key "f" × 32, path `bar:`, plaintext `foo`.
    let key = [b'f'; 32];
    let text = "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]";
    let value = Encrypted::parse(text).unwrap();
    assert_eq!(value.kind, ValueType::Str);
    assert_eq!(value.open(&key, "bar:").unwrap(), b"foo");
    assert_eq!(value.open(&key, ""), Err(SopsError::Open(String::new())));
    assert_eq!(value.to_text(), text);
}

#[test]
fn a_sealed_value_round_trips_and_binds_its_path() {
    let key = [7u8; 32];
    let aad = path_aad(&["spec", "data", "password"]);
    assert_eq!(aad, "spec:data:password:");
    let sealed = Encrypted::seal(b"hunter2", ValueType::Str, &key, &aad).unwrap();
    assert_eq!(sealed.iv.len(), NONCE_BYTES);
    let reread = Encrypted::parse(&sealed.to_text()).unwrap();
    assert_eq!(reread.open(&key, &aad).unwrap(), b"hunter2");
    assert!(reread.open(&key, "spec:data:username:").is_err());
    assert!(!sealed.to_text().contains("hunter2"));
}

#[test]
fn malformed_envelopes_say_what_is_wrong() {
    let short_iv = "ENC[AES256_GCM,data:oYyi,iv:AAAA,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]";
    assert_eq!(
        Encrypted::parse(short_iv).unwrap_err().to_string(),
        "not a SOPS value: `iv` is 3 bytes, SOPS writes 32 (expected `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`)"
    );
    assert!(Encrypted::parse("plain").is_err());
    assert!(!is_encrypted("plain"));
}

#[test]
fn the_mac_is_the_upper_case_sha512_of_the_leaves_in_order_and_is_checked_encrypted() {
    let leaves: [&[u8]; 2] = [b"foo", b"bar"];
    let computed = mac(leaves);
    assert_eq!(computed.len(), 128);
    assert!(
        computed
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert_ne!(
        computed,
        mac([b"bar".as_slice(), b"foo".as_slice()]),
        "order matters"
    );
    let key = [9u8; 32];
    let when = "2026-12-03T00:00:00Z";
    let stored = Encrypted::seal(computed.as_bytes(), ValueType::Str, &key, when)
        .unwrap()
        .to_text();
    assert_eq!(verify_mac(&stored, &key, when, &computed), Ok(()));
    assert_eq!(
        verify_mac(&stored, &key, "2026-12-04T00:00:00Z", &computed),
        Err(SopsError::Mac)
    );
    assert_eq!(
        verify_mac(&stored, &key, when, &mac([b"changed".as_slice()])),
        Err(SopsError::Mac)
    );
}
