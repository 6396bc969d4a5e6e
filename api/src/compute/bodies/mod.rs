//! Typed request bodies of the compute API, after nova's JSON schemas. A key nova's schema does
//! not list is refused (`deny_unknown_fields`, nova's `additionalProperties: false`); scalars
//! take the shapes nova takes (`lenient`); what a type cannot say (lengths, ranges, required
//! fields with nova's own words) is checked by the helpers below, with a 400 that names the
//! field. A body that does not parse is a 400 naming the field's path (`extract::JsonBody`).
//!
//! Keys nova accepts that Virga does not act on yet are typed `IgnoredAny`: accepted, read by
//! nobody (`networks` and `security_groups` until networking, `personality`, the legacy
//! `block_device_mapping`, a mapping's volume keys until volumes).

pub mod lenient;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use lenient::{Bool, Id, Int};

/// nova's words for a required field that is missing.
pub fn required<T>(field: &str, v: Option<T>) -> ApiResult<T> {
    v.ok_or_else(|| ApiError::bad_request(format!("'{field}' is a required property")))
}

/// A string field of at most `max` characters (and not blank when `nonempty`).
pub fn text<'a>(
    field: &str,
    v: Option<&'a str>,
    max: usize,
    nonempty: bool,
) -> ApiResult<Option<&'a str>> {
    match v {
        Some(s) if s.chars().count() > max || (nonempty && s.trim().is_empty()) => {
            Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {field}. Value: {s:?}. It must be a{} string of at most {max} characters.",
                if nonempty { " non-empty" } else { "" }
            )))
        }
        other => Ok(other),
    }
}

/// An integer field of at least `min`.
pub fn at_least(field: &str, v: Option<Int>, min: i64) -> ApiResult<Option<i64>> {
    match v {
        Some(Int(n)) if n < min => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {n}. It must be an integer of at least {min}."
        ))),
        other => Ok(other.map(|Int(n)| n)),
    }
}

/// `OS-DCF:diskConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DiskConfig {
    /// The guest grows its root partition to the disk.
    #[serde(rename = "AUTO")]
    Auto,
    /// The disk is left as the image made it.
    #[serde(rename = "MANUAL")]
    Manual,
}

impl DiskConfig {
    /// nova's word.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskConfig::Auto => "AUTO",
            DiskConfig::Manual => "MANUAL",
        }
    }
}

/// `POST /servers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServerBody {
    /// The server.
    pub server: NewServer,
}

/// The `server` of a create (nova's `base_create` schema, v2.1 keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    pub name: Option<String>,
    #[serde(rename = "imageRef")]
    pub image_ref: Option<String>,
    #[serde(rename = "flavorRef")]
    pub flavor_ref: Option<Id>,
    #[serde(rename = "adminPass")]
    pub admin_pass: Option<String>,
    pub metadata: Option<Value>,
    pub networks: Option<IgnoredAny>,
    pub personality: Option<IgnoredAny>,
    pub block_device_mapping: Option<IgnoredAny>,
    pub block_device_mapping_v2: Option<Vec<BlockDeviceMapping>>,
    /// The host decides (`[agent] config_drive`); accepted as nova does.
    pub config_drive: Option<IgnoredAny>,
    pub key_name: Option<String>,
    pub min_count: Option<Int>,
    pub max_count: Option<Int>,
    pub return_reservation_id: Option<Bool>,
    pub security_groups: Option<IgnoredAny>,
    pub user_data: Option<String>,
    pub availability_zone: Option<String>,
    #[serde(rename = "accessIPv4")]
    pub access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6")]
    pub access_ipv6: Option<String>,
    #[serde(rename = "OS-DCF:diskConfig")]
    pub disk_config: Option<DiskConfig>,
}

impl NewServer {
    /// The keys given that nova would act on and Virga does not yet (for the log: the caller
    /// asked for something it will not get).
    pub fn not_acted_on(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = [
            ("networks", self.networks.is_some()),
            ("personality", self.personality.is_some()),
            ("block_device_mapping", self.block_device_mapping.is_some()),
            ("config_drive", self.config_drive.is_some()),
            ("security_groups", self.security_groups.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect();
        for d in self.block_device_mapping_v2.iter().flatten() {
            keys.extend(d.not_acted_on());
        }
        keys.dedup();
        keys
    }
}

/// One `block_device_mapping_v2` entry (nova's `block_device_mapping_new_item` keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDeviceMapping {
    pub source_type: Option<String>,
    pub destination_type: Option<String>,
    pub uuid: Option<String>,
    /// A number, a digit string, or null (not bootable).
    pub boot_index: Option<Int>,
    pub device_name: Option<IgnoredAny>,
    pub volume_size: Option<IgnoredAny>,
    pub delete_on_termination: Option<IgnoredAny>,
    pub guest_format: Option<IgnoredAny>,
    pub device_type: Option<IgnoredAny>,
    pub disk_bus: Option<IgnoredAny>,
    pub volume_type: Option<IgnoredAny>,
    pub no_device: Option<IgnoredAny>,
    pub tag: Option<IgnoredAny>,
}

impl BlockDeviceMapping {
    fn not_acted_on(&self) -> impl Iterator<Item = &'static str> {
        [
            ("device_name", self.device_name.is_some()),
            ("volume_size", self.volume_size.is_some()),
            (
                "delete_on_termination",
                self.delete_on_termination.is_some(),
            ),
            ("guest_format", self.guest_format.is_some()),
            ("device_type", self.device_type.is_some()),
            ("disk_bus", self.disk_bus.is_some()),
            ("volume_type", self.volume_type.is_some()),
            ("no_device", self.no_device.is_some()),
            ("tag", self.tag.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
    }
}

/// `PUT /servers/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerBody {
    /// What changes.
    pub server: ServerUpdate,
}

/// The `server` of an update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerUpdate {
    pub name: Option<String>,
    #[serde(rename = "accessIPv4")]
    pub access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6")]
    pub access_ipv6: Option<String>,
    #[serde(rename = "OS-DCF:diskConfig")]
    pub disk_config: Option<DiskConfig>,
}

/// `POST /servers/{id}/action`: exactly one action key.
#[derive(Debug, Deserialize)]
pub enum ServerAction {
    /// Boot a stopped server.
    #[serde(rename = "os-start")]
    Start(IgnoredAny),
    /// Shut a server down.
    #[serde(rename = "os-stop")]
    Stop(IgnoredAny),
    /// Reboot, soft (the guest's ACPI) or hard (a new VMM).
    #[serde(rename = "reboot")]
    Reboot(Reboot),
    /// Stop the vCPUs.
    #[serde(rename = "pause")]
    Pause(IgnoredAny),
    /// Run the vCPUs again.
    #[serde(rename = "unpause")]
    Unpause(IgnoredAny),
    /// Save the guest and stop its VMM.
    #[serde(rename = "suspend")]
    Suspend(IgnoredAny),
    /// Restore a suspended guest.
    #[serde(rename = "resume")]
    Resume(IgnoredAny),
    /// Snapshot the root disk into a new image.
    #[serde(rename = "createImage")]
    CreateImage(CreateImage),
    /// The tail of the serial console.
    #[serde(rename = "os-getConsoleOutput")]
    ConsoleOutput(ConsoleOutput),
}

impl ServerAction {
    /// The action's key, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ServerAction::Start(_) => "os-start",
            ServerAction::Stop(_) => "os-stop",
            ServerAction::Reboot(_) => "reboot",
            ServerAction::Pause(_) => "pause",
            ServerAction::Unpause(_) => "unpause",
            ServerAction::Suspend(_) => "suspend",
            ServerAction::Resume(_) => "resume",
            ServerAction::CreateImage(_) => "createImage",
            ServerAction::ConsoleOutput(_) => "os-getConsoleOutput",
        }
    }
}

/// `reboot`'s argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reboot {
    /// SOFT or HARD.
    #[serde(rename = "type")]
    pub kind: RebootKind,
}

/// nova's reboot types, in the spellings its schema lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RebootKind {
    /// Through the guest.
    #[serde(rename = "SOFT", alias = "Soft")]
    Soft,
    /// A new VMM.
    #[serde(rename = "HARD", alias = "Hard")]
    Hard,
}

/// `createImage`'s argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    /// The new image's name.
    pub name: Option<String>,
    /// Properties of the new image.
    pub metadata: Option<Value>,
}

/// `os-getConsoleOutput`'s argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOutput {
    /// The last this many lines; -1 or null for all.
    #[serde(default)]
    pub length: Option<Int>,
}

/// `POST /flavors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFlavorBody {
    /// The flavor.
    pub flavor: NewFlavor,
}

/// The `flavor` of a create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFlavor {
    pub name: Option<String>,
    /// A string, "auto", or null (both: a new UUID).
    pub id: Option<String>,
    pub ram: Option<Int>,
    pub vcpus: Option<Int>,
    pub disk: Option<Int>,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral")]
    pub ephemeral: Option<Int>,
    pub swap: Option<Int>,
    pub rxtx_factor: Option<f64>,
    #[serde(rename = "os-flavor-access:is_public")]
    pub is_public: Option<Bool>,
}

/// `POST /os-keypairs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeypairBody {
    /// The key pair.
    pub keypair: NewKeypair,
}

/// The `keypair` of a create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeypair {
    /// Its name, unique per user.
    pub name: Option<String>,
    /// An OpenSSH public key line to import; none: a pair is made.
    pub public_key: Option<String>,
}

/// `POST /flavors/{id}/os-extra_specs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraSpecsBody {
    /// Spec name to value (strings, numbers or booleans; checked by the handler).
    pub extra_specs: serde_json::Map<String, Value>,
}

/// `PUT /os-quota-sets/{project}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSetBody {
    /// The new limits.
    pub quota_set: QuotaUpdate,
}

/// The `quota_set` of an update: `force` and resource limits (the handler knows the resources).
#[derive(Debug, Deserialize)]
pub struct QuotaUpdate {
    /// Set limits below what is in use.
    pub force: Option<Bool>,
    /// Resource name to limit (-1: unlimited).
    #[serde(flatten)]
    pub limits: std::collections::BTreeMap<String, Int>,
}

/// `PUT /os-services/{enable,disable,disable-log-reason}` (the v2.1 form, by host and binary).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUpdateBody {
    /// The service's host.
    pub host: Option<String>,
    /// Its binary (`nova-compute`).
    pub binary: Option<String>,
    /// Why it is disabled (`disable-log-reason`).
    pub disabled_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_create_takes_nova_shapes_and_refuses_unknown_keys() {
        let b: CreateServerBody = parse(
            r#"{"server": {"name": "a", "flavorRef": 1, "imageRef": "x", "min_count": "2",
                "networks": "auto", "return_reservation_id": "True",
                "OS-DCF:diskConfig": "AUTO"}}"#,
        )
        .unwrap();
        let s = b.server;
        assert_eq!(s.flavor_ref, Some(Id("1".into())));
        assert_eq!(s.min_count, Some(Int(2)));
        assert_eq!(s.return_reservation_id, Some(Bool(true)));
        assert_eq!(s.disk_config, Some(DiskConfig::Auto));
        let e =
            parse::<CreateServerBody>(r#"{"server": {"name": "a", "colour": "red"}}"#).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e =
            parse::<CreateServerBody>(r#"{"server": {"OS-DCF:diskConfig": "auto"}}"#).unwrap_err();
        assert!(e.contains("unknown variant `auto`"), "{e}");
        assert!(parse::<CreateServerBody>(r#"{"server": {}, "extra": 1}"#).is_err());
    }

    #[test]
    fn an_action_is_exactly_one_known_key() {
        let a: ServerAction = parse(r#"{"os-stop": null}"#).unwrap();
        assert_eq!(a.name(), "os-stop");
        let a: ServerAction = parse(r#"{"reboot": {"type": "Hard"}}"#).unwrap();
        assert!(matches!(
            a,
            ServerAction::Reboot(Reboot {
                kind: RebootKind::Hard
            })
        ));
        assert!(parse::<ServerAction>(r#"{"reboot": {"type": "hard"}}"#).is_err());
        assert!(parse::<ServerAction>(r#"{"reboot": {}}"#).is_err());
        assert!(parse::<ServerAction>(r#"{"os-stop": null, "os-start": null}"#).is_err());
        assert!(parse::<ServerAction>(r#"{}"#).is_err());
        let e = parse::<ServerAction>(r#"{"levitate": null}"#).unwrap_err();
        assert!(e.contains("unknown variant `levitate`"), "{e}");
        let a: ServerAction = parse(r#"{"os-getConsoleOutput": {"length": null}}"#).unwrap();
        assert!(matches!(
            a,
            ServerAction::ConsoleOutput(ConsoleOutput { length: None })
        ));
    }

    #[test]
    fn checks_name_the_field() {
        let e = text("name", Some("  "), 255, true).unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        assert_eq!(text("name", Some("ok"), 255, true).unwrap(), Some("ok"));
        assert!(at_least("min_count", Some(Int(0)), 1).is_err());
        assert_eq!(at_least("disk", Some(Int(0)), 0).unwrap(), Some(0));
        assert!(
            required::<i64>("ram", None)
                .unwrap_err()
                .to_string()
                .contains("'ram'")
        );
    }
}
