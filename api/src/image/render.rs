//! Glance's JSON shapes for images and members.

use chrono::{DateTime, Utc};
use orchestrator::image::{Image, Member};
use serde_json::{Value, json};

/// Glance's timestamp format, e.g. `2026-01-02T03:04:05Z`.
pub fn iso_secs(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// One image, extra properties at the top level as glance puts them.
pub fn image(img: &Image) -> Value {
    let mut v = json!({
        "id": img.id,
        "name": img.name,
        "status": img.status,
        "visibility": img.visibility,
        "protected": img.protected,
        "os_hidden": img.os_hidden,
        "owner": img.owner,
        "disk_format": img.disk_format,
        "container_format": img.container_format,
        "min_ram": img.min_ram,
        "min_disk": img.min_disk,
        "size": img.size,
        "virtual_size": img.virtual_size,
        "checksum": img.checksum,
        "os_hash_algo": img.os_hash_algo,
        "os_hash_value": img.os_hash_value,
        "tags": img.tags,
        "created_at": iso_secs(img.created_at),
        "updated_at": iso_secs(img.updated_at),
        "self": format!("/v2/images/{}", img.id),
        "file": format!("/v2/images/{}/file", img.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(o) = &mut v {
        for (k, x) in &img.properties.0 {
            o.entry(k.clone()).or_insert_with(|| x.clone());
        }
    }
    v
}

/// One member.
pub fn member(m: &Member) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": iso_secs(m.created_at),
        "updated_at": iso_secs(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}
