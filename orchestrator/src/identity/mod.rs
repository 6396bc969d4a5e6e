//! Identity records (keystone's model, reduced to what the clients use): domains, projects,
//! users with argon2 password hashes, global roles with implied roles, role assignments, the
//! service catalog (regions, services, endpoints) and token revocation events. Tokens themselves
//! are made and checked in the `api` crate; this module keeps what they refer to.

mod bootstrap;
mod catalog;
mod password;
pub(crate) mod resources;
mod revocation;
mod roles;

use serde_json::{Map, Value};

pub use bootstrap::{BootstrapReport, BootstrapSpec};
pub use password::{PasswordError, hash_password, verify_password};
pub(crate) use resources::found as resources_found;
pub use resources::{ProjectFilter, UserFilter};
pub use revocation::RevocationEvent;
pub use roles::{Assignment, AssignmentFilter, Target};

/// The id of the domain every installation has.
pub const DEFAULT_DOMAIN_ID: &str = "default";

/// Attributes a client set that have no column of their own (keystone keeps them too).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra(pub Map<String, Value>);

impl TryFrom<String> for Extra {
    type Error = serde_json::Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Extra)
    }
}

impl Extra {
    /// The JSON text stored in an `extra` column.
    pub fn to_text(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

/// A domain: a namespace for projects and users.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Domain {
    /// Id (`default` for the default domain).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Disabled domains cannot be used to authenticate.
    pub enabled: bool,
    /// Other attributes.
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// A project (tenant): owns resources, the target of role assignments.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Project {
    /// Id.
    pub id: String,
    /// Name, unique in its domain.
    pub name: String,
    /// Owning domain.
    pub domain_id: String,
    /// Parent project (keystone's hierarchy; kept, not interpreted).
    pub parent_id: Option<String>,
    /// Free text.
    pub description: String,
    /// Disabled projects cannot be scoped to.
    pub enabled: bool,
    /// Other attributes (tags and options are kept here).
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// A user. The password hash never leaves this module's queries.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    /// Id.
    pub id: String,
    /// Name, unique in its domain.
    pub name: String,
    /// Owning domain.
    pub domain_id: String,
    /// Disabled users cannot authenticate.
    pub enabled: bool,
    /// Project an unscoped authentication is scoped to, if any.
    pub default_project_id: Option<String>,
    /// Other attributes (email, description, ...).
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// A role (global: keystone's domain-specific roles are not supported).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Role {
    /// Id.
    pub id: String,
    /// Unique name: policy checks use names (`admin`, `member`, `reader`).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Other attributes.
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// A region of the catalog.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Region {
    /// Id, chosen by the client (`RegionOne`).
    pub id: String,
    /// Free text.
    pub description: String,
    /// Parent region, if any.
    pub parent_region_id: Option<String>,
    /// Other attributes.
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// A service of the catalog (`identity`, `image`, ...).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Service {
    /// Id.
    pub id: String,
    /// Service type, how clients find it.
    #[sqlx(rename = "type")]
    pub service_type: String,
    /// Name (`keystone`, `glance`).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Disabled services are left out of token catalogs.
    pub enabled: bool,
    /// Other attributes.
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// An endpoint: where one interface of a service is reached in a region.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Endpoint {
    /// Id.
    pub id: String,
    /// The service.
    pub service_id: String,
    /// The region, if any.
    pub region_id: Option<String>,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Base URL.
    pub url: String,
    /// Disabled endpoints are left out of token catalogs.
    pub enabled: bool,
    /// Other attributes.
    #[sqlx(try_from = "String")]
    pub extra: Extra,
}

/// The endpoint interfaces keystone accepts.
pub const INTERFACES: [&str; 3] = ["public", "internal", "admin"];
