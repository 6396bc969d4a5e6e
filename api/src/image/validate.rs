//! Glance's rules for image attributes: which a client may set, their types and values.

use orchestrator::image::{Image, VISIBILITIES};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Disk formats glance accepts (checked against the content on upload by the `images` store).
pub const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
/// Container formats glance accepts (not interpreted).
pub const CONTAINER_FORMATS: [&str; 9] = [
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
    "none",
];
/// Attributes only the server sets.
pub const READ_ONLY: [&str; 13] = [
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];
/// Attributes nobody sets.
pub const RESERVED: [&str; 3] = ["deleted", "deleted_at", "location"];

fn bad_type(attr: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid value for '{attr}': expected {want}."))
}

fn opt_string(attr: &str, v: &Value, max: usize) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= max => Ok(Some(s.clone())),
        _ => Err(bad_type(
            attr,
            &format!("a string of at most {max} characters or null"),
        )),
    }
}

fn non_negative(attr: &str, v: &Value) -> ApiResult<i64> {
    v.as_i64()
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad_type(attr, "an integer >= 0"))
}

fn boolean(attr: &str, v: &Value) -> ApiResult<bool> {
    v.as_bool().ok_or_else(|| bad_type(attr, "true or false"))
}

/// A tag: 1 to 255 characters.
pub fn check_tag(tag: &str) -> ApiResult<()> {
    if tag.is_empty() || tag.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "Invalid tag {tag:?}: 1 to 255 characters."
        )));
    }
    Ok(())
}

/// Sets one attribute of `img` from a client value, with glance's checks. Visibility policy
/// (who may make an image public) is the caller's business.
pub fn set_attr(img: &mut Image, attr: &str, v: &Value, is_admin: bool) -> ApiResult<()> {
    if READ_ONLY.contains(&attr) {
        return Err(ApiError::forbidden(format!(
            "Attribute '{attr}' is read-only."
        )));
    }
    if RESERVED.contains(&attr) {
        return Err(ApiError::forbidden(format!(
            "Attribute '{attr}' is reserved."
        )));
    }
    match attr {
        "id" => return Err(ApiError::forbidden("Attribute 'id' is read-only.")),
        "name" => img.name = opt_string(attr, v, 255)?,
        "visibility" => {
            let s = v
                .as_str()
                .filter(|s| VISIBILITIES.contains(s))
                .ok_or_else(|| bad_type(attr, "one of public, private, shared, community"))?;
            img.visibility = s.into();
        }
        "protected" => img.protected = boolean(attr, v)?,
        "os_hidden" => img.os_hidden = boolean(attr, v)?,
        "min_ram" => img.min_ram = non_negative(attr, v)?,
        "min_disk" => img.min_disk = non_negative(attr, v)?,
        "disk_format" => {
            let f = opt_string(attr, v, 255)?;
            if let Some(f) = &f
                && !DISK_FORMATS.contains(&f.as_str())
            {
                return Err(bad_type(
                    attr,
                    &format!("one of {}", DISK_FORMATS.join(", ")),
                ));
            }
            img.disk_format = f;
        }
        "container_format" => {
            let f = opt_string(attr, v, 255)?;
            if let Some(f) = &f
                && !CONTAINER_FORMATS.contains(&f.as_str())
            {
                return Err(bad_type(
                    attr,
                    &format!("one of {}", CONTAINER_FORMATS.join(", ")),
                ));
            }
            img.container_format = f;
        }
        "owner" => {
            let o = opt_string(attr, v, 255)?.ok_or_else(|| bad_type(attr, "a project id"))?;
            if o != img.owner && !is_admin {
                return Err(ApiError::forbidden(
                    "Only an admin may set the owner of an image.",
                ));
            }
            img.owner = o;
        }
        "tags" => {
            let arr = v
                .as_array()
                .ok_or_else(|| bad_type(attr, "a list of strings"))?;
            let mut tags = Vec::with_capacity(arr.len());
            for t in arr {
                let t = t
                    .as_str()
                    .ok_or_else(|| bad_type(attr, "a list of strings"))?;
                check_tag(t)?;
                if !tags.iter().any(|x: &String| x == t) {
                    tags.push(t.to_string());
                }
            }
            tags.sort();
            img.tags = tags;
        }
        _ => {
            if attr.is_empty() || attr.chars().count() > 255 {
                return Err(ApiError::bad_request(format!(
                    "Invalid property name {attr:?}: 1 to 255 characters."
                )));
            }
            // Glance keeps extra properties as strings.
            let s = v
                .as_str()
                .ok_or_else(|| bad_type(attr, "a string (extra properties are strings)"))?;
            if s.len() > 65535 {
                return Err(bad_type(attr, "a string of at most 65535 bytes"));
            }
            img.properties
                .0
                .insert(attr.into(), Value::String(s.into()));
        }
    }
    Ok(())
}

/// Whether `attr` is one of the image's own attributes rather than an extra property.
pub fn is_base_attr(attr: &str) -> bool {
    matches!(
        attr,
        "id" | "name"
            | "visibility"
            | "protected"
            | "os_hidden"
            | "min_ram"
            | "min_disk"
            | "disk_format"
            | "container_format"
            | "owner"
            | "tags"
    ) || READ_ONLY.contains(&attr)
}
