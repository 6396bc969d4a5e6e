//! Image updates in both JSON-patch dialects glance accepts:
//! `application/openstack-images-v2.1-json-patch` (RFC 6902 style: `{"op": "replace",
//! "path": "/name", "value": ...}`) and `application/openstack-images-v2.0-json-patch`
//! (`{"replace": "/name", "value": ...}`). Paths are one level deep.

use orchestrator::image::Image;
use serde_json::Value;

use super::validate::{is_base_attr, set_attr};
use crate::error::{ApiError, ApiResult};

/// The newer dialect's media type.
pub const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";
/// The older dialect's media type.
pub const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";

#[derive(Debug, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// One change of a patch.
#[derive(Debug)]
pub struct Change {
    op: Op,
    attr: String,
    value: Option<Value>,
}

fn op_of(name: &str) -> ApiResult<Op> {
    match name {
        "add" => Ok(Op::Add),
        "replace" => Ok(Op::Replace),
        "remove" => Ok(Op::Remove),
        other => Err(ApiError::bad_request(format!(
            "Unsupported patch operation {other:?}: add, replace or remove."
        ))),
    }
}

/// The attribute a one-level JSON pointer names (`~1` is `/`, `~0` is `~`).
fn attr_of(path: &str) -> ApiResult<String> {
    let rest = path.strip_prefix('/').ok_or_else(|| {
        ApiError::bad_request(format!("Invalid patch path {path:?}: must start with '/'."))
    })?;
    if rest.is_empty() || rest.contains('/') {
        return Err(ApiError::bad_request(format!(
            "Invalid patch path {path:?}: one attribute, no nested paths."
        )));
    }
    Ok(rest.replace("~1", "/").replace("~0", "~"))
}

/// Parses a patch body of the given media type.
pub fn parse(content_type: &str, body: &[u8]) -> ApiResult<Vec<Change>> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let v21 = match media {
        PATCH_V21 => true,
        PATCH_V20 => false,
        other => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Unsupported Content-Type {other:?} for an image update; use {PATCH_V21} or {PATCH_V20}."
                ),
            ));
        }
    };
    let ops: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "Malformed patch (expected a JSON list of objects): {e}"
        ))
    })?;
    ops.into_iter()
        .map(|mut o| {
            let (op, path) = if v21 {
                let op = o
                    .get("op")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("Each patch operation needs an 'op'."))?;
                let path = o
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("Each patch operation needs a 'path'."))?;
                (op_of(op)?, path.to_string())
            } else {
                let found = ["add", "replace", "remove"]
                    .into_iter()
                    .find_map(|k| o.get(k).and_then(Value::as_str).map(|p| (k, p.to_string())));
                let (k, p) = found.ok_or_else(|| {
                    ApiError::bad_request("Each patch operation needs one of add, replace, remove.")
                })?;
                (op_of(k)?, p)
            };
            let value = o.remove("value");
            if op != Op::Remove && value.is_none() {
                return Err(ApiError::bad_request(format!(
                    "Patch operation on {path} needs a 'value'."
                )));
            }
            Ok(Change {
                op,
                attr: attr_of(&path)?,
                value,
            })
        })
        .collect()
}

/// Applies the changes to `img` in order; any failure leaves the stored image unchanged
/// because the caller saves only on success.
pub fn apply(img: &mut Image, changes: Vec<Change>, is_admin: bool) -> ApiResult<()> {
    for c in changes {
        let base = is_base_attr(&c.attr);
        match c.op {
            Op::Remove => {
                if base {
                    return Err(ApiError::forbidden(format!(
                        "Attribute '{}' cannot be removed.",
                        c.attr
                    )));
                }
                if img.properties.0.remove(&c.attr).is_none() {
                    return Err(ApiError::conflict(format!(
                        "Property {} does not exist.",
                        c.attr
                    )));
                }
            }
            Op::Replace if !base && !img.properties.0.contains_key(&c.attr) => {
                return Err(ApiError::conflict(format!(
                    "Property {} does not exist.",
                    c.attr
                )));
            }
            Op::Add | Op::Replace => {
                let v = c.value.unwrap_or(Value::Null);
                set_attr(img, &c.attr, &v, is_admin)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Image {
        Image::new("i".into(), "p".into())
    }

    #[test]
    fn both_dialects_apply() {
        let mut i = img();
        let v21 = br#"[{"op":"replace","path":"/name","value":"a"},{"op":"add","path":"/k~1x","value":"v"}]"#;
        apply(&mut i, parse(PATCH_V21, v21).unwrap(), false).unwrap();
        assert_eq!(i.name.as_deref(), Some("a"));
        assert_eq!(i.properties.0["k/x"], "v");
        let v20 = br#"[{"replace":"/name","value":"b"},{"remove":"/k~1x"}]"#;
        apply(&mut i, parse(PATCH_V20, v20).unwrap(), false).unwrap();
        assert_eq!(i.name.as_deref(), Some("b"));
        assert!(i.properties.0.is_empty());
    }

    #[test]
    fn bad_patches_are_refused_precisely() {
        let st = |ct: &str, body: &[u8]| parse(ct, body).unwrap_err().status.as_u16();
        assert_eq!(st("application/json", b"[]"), 415);
        assert_eq!(st(PATCH_V21, b"{"), 400);
        assert_eq!(st(PATCH_V21, br#"[{"op":"move","path":"/a"}]"#), 400);
        assert_eq!(
            st(PATCH_V21, br#"[{"op":"add","path":"/a/b","value":"x"}]"#),
            400
        );
        assert_eq!(st(PATCH_V21, br#"[{"op":"add","path":"/a"}]"#), 400);
        let code = |body: &[u8]| {
            let mut i = img();
            apply(&mut i, parse(PATCH_V21, body).unwrap(), false)
                .unwrap_err()
                .status
                .as_u16()
        };
        assert_eq!(
            code(br#"[{"op":"replace","path":"/nope","value":"x"}]"#),
            409
        );
        assert_eq!(code(br#"[{"op":"remove","path":"/name"}]"#), 403);
        assert_eq!(
            code(br#"[{"op":"replace","path":"/status","value":"active"}]"#),
            403
        );
        assert_eq!(
            code(br#"[{"op":"replace","path":"/min_ram","value":-1}]"#),
            400
        );
        assert_eq!(
            code(br#"[{"op":"replace","path":"/disk_format","value":"exe"}]"#),
            400
        );
        assert_eq!(code(br#"[{"op":"add","path":"/k","value":1}]"#), 400);
        assert_eq!(
            code(br#"[{"op":"replace","path":"/owner","value":"other"}]"#),
            403
        );
    }
}
