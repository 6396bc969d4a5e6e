//! The guest's JSON scanner (`guest/configdrive/json.rs`, included as is) on the host.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[allow(dead_code)]
#[path = "../guest/configdrive/json.rs"]
mod json;

use json::{JsonError, MAX_DEPTH, Str, Value, members};

fn decode(s: Str) -> String {
    String::from_utf8(s.bytes().collect()).unwrap()
}

/// Members as (key, kind, decoded string value).
fn collect(doc: &str) -> Result<Vec<(String, &'static str, String)>, JsonError> {
    let mut out = Vec::new();
    members(doc.as_bytes(), |k, v| {
        out.push(match v {
            Value::Str(s) => (decode(k), "str", decode(s)),
            Value::Object(o) => (decode(k), "object", String::from_utf8_lossy(o).into()),
            Value::Other => (decode(k), "other", String::new()),
        })
    })?;
    Ok(out)
}

#[test]
fn walks_a_nova_meta_data_document() {
    // The shape Nova writes (keys trimmed).
    let doc = r#"{"random_seed": "yu5ZnkqF2CqnDZVAfZgarG==", "uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38",
      "availability_zone": "nova", "keys": [{"data": "ssh-rsa AAAA mykey", "type": "ssh", "name": "mykey"}],
      "hostname": "vm1", "launch_index": 0, "devices": [], "project_id": "6b4c4d4e",
      "public_keys": {"mykey": "ssh-rsa AAAA mykey\n"}, "name": "vm1", "meta": {"k": "v"}}"#;
    let got = collect(doc).unwrap();
    let find = |key: &str| got.iter().find(|(k, _, _)| k == key).unwrap();
    assert_eq!(find("hostname").2, "vm1");
    assert_eq!(find("public_keys").1, "object");
    assert_eq!(
        find("public_keys").2,
        r#"{"mykey": "ssh-rsa AAAA mykey\n"}"#
    );
    assert_eq!(find("keys").1, "other");
    assert_eq!(find("launch_index").1, "other");
    let keys = collect(&find("public_keys").2).unwrap();
    assert_eq!(
        keys,
        [("mykey".into(), "str", "ssh-rsa AAAA mykey\n".into())]
    );
    assert_eq!(got.len(), 11);
}

#[test]
fn decodes_escapes() {
    let got = collect(r#"{"a\"b": "x\\y\/z\t\u00e9\ud83d\ude00\ud800!"}"#).unwrap();
    assert_eq!(got[0].0, "a\"b");
    assert_eq!(got[0].2, "x\\y/z\t\u{e9}\u{1f600}\u{fffd}!");
    let mut members_seen = 0;
    members(br#"{"hostname": "vm1"}"#, |k, v| {
        members_seen += 1;
        assert!(k.is(b"hostname") && !k.is(b"hostnam") && !k.is(b"hostname1"));
        let Value::Str(s) = v else { panic!() };
        let mut small = [0u8; 2];
        assert_eq!(s.decode_into(&mut small), 2);
        assert_eq!(&small, b"vm");
    })
    .unwrap();
    assert_eq!(members_seen, 1);
}

#[test]
fn refuses_malformed_documents_with_the_offset() {
    for (doc, what, at) in [
        ("", "expected an object", 0),
        ("[]", "expected an object", 0),
        ("{", "expected a key", 1),
        (r#"{"a" 1}"#, "expected ':'", 5),
        (r#"{"a": 1,}"#, "expected a key", 8),
        (r#"{"a": tru}"#, "bad literal", 6),
        (r#"{"a": 01x}"#, "expected ',' or a closing bracket", 8),
        (r#"{"a": -}"#, "bad number", 7),
        (r#"{"a": 1.}"#, "bad number", 8),
        (r#"{"a": "x}"#, "unterminated string", 9),
        (r#"{"a": "\q"}"#, "bad escape", 8),
        (r#"{"a": "\u12"}"#, "bad \\u escape", 8),
        ("{\"a\": \"\n\"}", "control character in a string", 7),
        (r#"{"a": 1} x"#, "text after the object", 9),
        (r#"{"a": [1 2]}"#, "expected ',' or a closing bracket", 9),
    ] {
        let err = collect(doc).unwrap_err();
        assert_eq!((err.what, err.at), (what, at), "{doc:?}");
    }
    let deep = format!(
        r#"{{"a": {}{}}}"#,
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    assert_eq!(collect(&deep).unwrap_err().what, "nested too deeply");
    let ok = format!(
        r#"{{"a": {}{}}}"#,
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(collect(&ok).is_ok());
}

#[test]
fn a_refused_document_calls_nothing() {
    let mut called = false;
    assert!(members(br#"{"hostname": "vm1", "x": }"#, |_, _| called = true).is_err());
    assert!(!called);
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let alphabet = br#"{}[]":,\u0123456789abcdefnrtl -.eE"#;
    for _ in 0..20000 {
        let len = (state % 40) as usize;
        let doc: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        let _ = members(&doc, |k, v| {
            let _ = k.bytes().count();
            if let Value::Str(s) = v {
                let _ = s.bytes().count();
            }
        });
    }
}
