//! Keystone's JSON shapes for identity resources.

use orchestrator::identity::{Domain, Endpoint, Extra, Project, Region, Role, Service, User};
use serde_json::{Map, Value, json};

/// `{"self": url}` links of one resource.
fn links(url: String) -> Value {
    json!({ "self": url })
}

/// Adds the client's own attributes (the known ones went to columns, so these are only
/// unknown keys and the `tags`/`options` defaults they replace).
fn with_extra(mut v: Value, extra: &Extra) -> Value {
    if let Value::Object(obj) = &mut v {
        for (k, x) in &extra.0 {
            obj.insert(k.clone(), x.clone());
        }
    }
    v
}

/// A collection: `{"<key>": [...], "links": {"self", "previous", "next"}}`.
pub fn collection(key: &str, items: Vec<Value>, self_url: String) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), Value::Array(items));
    m.insert(
        "links".into(),
        json!({"self": self_url, "previous": null, "next": null}),
    );
    Value::Object(m)
}

/// A domain.
pub fn domain(base: &str, d: &Domain) -> Value {
    with_extra(
        json!({
            "id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
            "tags": [], "options": {},
            "links": links(format!("{base}/identity/v3/domains/{}", d.id)),
        }),
        &d.extra,
    )
}

/// A project.
pub fn project(base: &str, p: &Project) -> Value {
    with_extra(
        json!({
            "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
            "enabled": p.enabled, "parent_id": p.parent_id.clone().unwrap_or_else(|| p.domain_id.clone()),
            "is_domain": false, "tags": [], "options": {},
            "links": links(format!("{base}/identity/v3/projects/{}", p.id)),
        }),
        &p.extra,
    )
}

/// A user (never its password).
pub fn user(base: &str, u: &User) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "password_expires_at": null, "options": {},
        "links": links(format!("{base}/identity/v3/users/{}", u.id)),
    });
    if let (Some(p), Value::Object(o)) = (&u.default_project_id, &mut v) {
        o.insert("default_project_id".into(), json!(p));
    }
    with_extra(v, &u.extra)
}

/// A role.
pub fn role(base: &str, r: &Role) -> Value {
    with_extra(
        json!({
            "id": r.id, "name": r.name, "domain_id": null, "description": r.description,
            "options": {},
            "links": links(format!("{base}/identity/v3/roles/{}", r.id)),
        }),
        &r.extra,
    )
}

/// A region.
pub fn region(base: &str, r: &Region) -> Value {
    with_extra(
        json!({
            "id": r.id, "description": r.description, "parent_region_id": r.parent_region_id,
            "links": links(format!("{base}/identity/v3/regions/{}", r.id)),
        }),
        &r.extra,
    )
}

/// A service.
pub fn service(base: &str, s: &Service) -> Value {
    with_extra(
        json!({
            "id": s.id, "type": s.service_type, "name": s.name, "description": s.description,
            "enabled": s.enabled,
            "links": links(format!("{base}/identity/v3/services/{}", s.id)),
        }),
        &s.extra,
    )
}

/// An endpoint (`region` is keystone's deprecated twin of `region_id`; clients still read it).
pub fn endpoint(base: &str, e: &Endpoint) -> Value {
    with_extra(
        json!({
            "id": e.id, "service_id": e.service_id, "region_id": e.region_id,
            "region": e.region_id, "interface": e.interface, "url": e.url, "enabled": e.enabled,
            "links": links(format!("{base}/identity/v3/endpoints/{}", e.id)),
        }),
        &e.extra,
    )
}

/// The catalog as a token shows it.
pub fn catalog(entries: &[(Service, Vec<Endpoint>)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(s, eps)| {
                json!({
                    "id": s.id, "type": s.service_type, "name": s.name,
                    "endpoints": eps.iter().map(|e| json!({
                        "id": e.id, "interface": e.interface, "region": e.region_id,
                        "region_id": e.region_id, "url": e.url,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Attributes a client may not set directly on any resource.
pub const RESERVED: [&str; 2] = ["id", "links"];

/// The client's unknown attributes, less reserved ones.
pub fn extra_from(mut m: Map<String, Value>) -> Extra {
    for k in RESERVED {
        m.remove(k);
    }
    Extra(m)
}
