//! The compute service layer, as Nova's `compute/api.py`: the rules a request must satisfy
//! before anything is written, and the hand-over to the scheduler. The HTTP handlers parse and
//! render; they decide nothing here. Every rule lives once: the image's `min_ram` and
//! `min_disk` are checked here against the flavor, not again by the scheduler.

use base64::Engine;
use serde_json::{Map, Value};
use std::sync::Arc;

use super::quotas::Limits;
use super::scheduler::Request;
use super::servers::{CreateError, Metadata, Server};
use super::vm;
use super::{Compute, Flavor, task};
use crate::image::{Image, ListViewer};
use crate::store::{Store, StoreError};

/// Largest `user_data` once decoded, in bytes (Nova's limit).
pub const MAX_USER_DATA: usize = 65535;

/// Why a compute request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ComputeApiError {
    /// The request names something missing or unusable, or breaks a rule: a 400.
    #[error("{0}")]
    Invalid(String),
    /// Over a quota: a 403.
    #[error("{0}")]
    OverQuota(String),
    /// The database failed: a 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A missing row becomes the caller's 400 with `what`; any other database error stays one.
fn or_invalid<T>(
    r: Result<T, StoreError>,
    what: impl FnOnce() -> String,
) -> Result<T, ComputeApiError> {
    match r {
        Ok(v) => Ok(v),
        Err(StoreError::NotFound { .. }) => Err(ComputeApiError::Invalid(what())),
        Err(e) => Err(e.into()),
    }
}

/// `POST /servers` as the service sees it: already parsed, not yet checked.
#[derive(Clone, Debug, Default)]
pub struct CreateServers {
    /// The caller's project and user, and whether the caller is an admin (sees every image).
    pub project_id: String,
    pub user_id: String,
    pub admin: bool,
    pub name: String,
    /// A flavor id (the last segment of `flavorRef`).
    pub flavor_id: String,
    /// The image to boot (`imageRef`, or the block device mapping's boot entry).
    pub image_id: String,
    pub min_count: i64,
    pub max_count: i64,
    pub metadata: Map<String, Value>,
    pub key_name: Option<String>,
    /// Base64, as the request carried it.
    pub user_data: Option<String>,
    pub availability_zone: Option<String>,
    /// `AUTO` or `MANUAL`.
    pub disk_config: String,
    pub access_ipv4: String,
    pub access_ipv6: String,
}

/// What a create made: the servers (at least one) and their reservation id.
#[derive(Clone, Debug)]
pub struct Created {
    pub servers: Vec<Server>,
    pub reservation_id: String,
}

/// The metadata quota: at most `limit` items (a negative limit: unlimited).
pub fn check_metadata_quota(items: usize, limit: i64) -> Result<(), ComputeApiError> {
    if limit >= 0 && i64::try_from(items).unwrap_or(i64::MAX) > limit {
        return Err(ComputeApiError::OverQuota(format!(
            "Quota exceeded for metadata_items: Requested {items}, but the limit is {limit}"
        )));
    }
    Ok(())
}

/// Whether `image` fits `flavor`: `min_ram` always; size and `min_disk` unless the flavor's
/// disk is 0 (the image's own size) or the image is a kernel or ramdisk (not a root disk).
pub fn check_image_fits(image: &Image, flavor: &Flavor) -> Result<(), ComputeApiError> {
    let ram_mb = flavor.ram_mb;
    if image.min_ram > ram_mb {
        return Err(ComputeApiError::Invalid(format!(
            "Flavor's memory is too small for requested image: the image needs {} MiB, the flavor has {ram_mb}.",
            image.min_ram
        )));
    }
    let disk_gb = flavor.disk_gb;
    let is_kernel = matches!(image.disk_format.as_deref(), Some("aki" | "ari"));
    if disk_gb > 0 && !is_kernel {
        let bytes = image.virtual_size.or(image.size).unwrap_or(0);
        let flavor_bytes = disk_gb.saturating_mul(1 << 30);
        if bytes > flavor_bytes {
            return Err(ComputeApiError::Invalid(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {flavor_bytes} bytes, image is {bytes} bytes."
            )));
        }
        if image.min_disk > disk_gb {
            return Err(ComputeApiError::Invalid(format!(
                "Flavor's disk is too small for requested image: the image needs {} GiB, the flavor has {disk_gb}.",
                image.min_disk
            )));
        }
    }
    Ok(())
}

/// The image to boot, if the caller may see it and it is active.
async fn bootable_image(store: &Store, req: &CreateServers) -> Result<Image, ComputeApiError> {
    let id = &req.image_id;
    let missing = || format!("Image {id} could not be found.");
    let image = or_invalid(store.get_image(id).await, missing)?;
    let viewer = if req.admin {
        ListViewer::Admin
    } else {
        ListViewer::Project(req.project_id.clone())
    };
    if !store.image_visible(&viewer, &image).await? {
        return Err(ComputeApiError::Invalid(missing()));
    }
    if image.status != "active" {
        return Err(ComputeApiError::Invalid(format!(
            "Image {id} is not active (status {}).",
            image.status
        )));
    }
    Ok(image)
}

/// `user_data` must be base64 of at most [`MAX_USER_DATA`] bytes; kept as given (trimmed).
fn check_user_data(u: &str) -> Result<String, ComputeApiError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(u.trim())
        .map_err(|_| ComputeApiError::Invalid("User data needs to be valid base 64.".into()))?;
    if raw.len() > MAX_USER_DATA {
        return Err(ComputeApiError::Invalid(format!(
            "User data is larger than {MAX_USER_DATA} bytes."
        )));
    }
    Ok(u.trim().to_string())
}

/// The availability zones hosts are in, sorted, each once.
pub async fn zone_names(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut z: Vec<String> = store
        .list_hosts()
        .await?
        .into_iter()
        .map(|h| h.availability_zone)
        .collect();
    z.sort();
    z.dedup();
    Ok(z)
}

/// Checks a create against flavor, image, counts, quotas, key pair, user data and zone,
/// writes the servers (quota counted in the same transaction), and hands them to the
/// scheduler; without a compute role here they are ERROR at once, saying why.
pub async fn create_servers(
    store: &Store,
    compute: Option<&Arc<Compute>>,
    req: CreateServers,
) -> Result<Created, ComputeApiError> {
    let flavor_id = &req.flavor_id;
    let flavor = or_invalid(store.get_flavor(flavor_id).await, || {
        format!("Flavor {flavor_id} could not be found.")
    })?;
    if flavor.disabled {
        return Err(ComputeApiError::Invalid(format!(
            "Flavor {flavor_id} could not be found."
        )));
    }
    let image = bootable_image(store, &req).await?;
    check_image_fits(&image, &flavor)?;
    if req.min_count > req.max_count {
        return Err(ComputeApiError::Invalid(format!(
            "min_count {} must be <= max_count {}",
            req.min_count, req.max_count
        )));
    }
    let limits: Limits = store.quota_limits(&req.project_id).await?;
    let metadata_limit = limits.get("metadata_items").copied().unwrap_or(-1);
    check_metadata_quota(req.metadata.len(), metadata_limit)?;
    if let Some(k) = &req.key_name {
        or_invalid(store.get_keypair(&req.user_id, k).await, || {
            format!("Invalid key_name provided: {k}.")
        })?;
    }
    let user_data = req.user_data.as_deref().map(check_user_data).transpose()?;
    if let Some(z) = &req.availability_zone
        && !zone_names(store).await?.contains(z)
    {
        return Err(ComputeApiError::Invalid(format!(
            "The requested availability zone is not available: {z}"
        )));
    }

    let reservation_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let template = Server {
        id: String::new(),
        seq: 0,
        name: req.name,
        project_id: req.project_id,
        user_id: req.user_id,
        image_id: image.id.clone(),
        flavor_id: flavor.id.clone(),
        vcpus: flavor.vcpus,
        ram_mb: flavor.ram_mb,
        disk_gb: flavor.disk_gb,
        key_name: req.key_name,
        user_data,
        metadata: Metadata(req.metadata),
        availability_zone: req.availability_zone.clone(),
        reservation_id: reservation_id.clone(),
        launch_index: 0,
        access_ipv4: req.access_ipv4,
        access_ipv6: req.access_ipv6,
        disk_config: req.disk_config,
        host: None,
        claimed: false,
        vm_state: vm::BUILDING,
        task_state: Some(task::SCHEDULING),
        power_state: crate::compute::driver::PowerState::NoState,
        pid: None,
        fault: None,
        launched_at: None,
        created_at: 0,
        updated_at: 0,
    };
    let servers = store
        .create_servers(&template, req.min_count, req.max_count, &limits)
        .await
        .map_err(|e| match e {
            CreateError::Quota { .. } => ComputeApiError::OverQuota(e.to_string()),
            CreateError::Store(s) => s.into(),
        })?;
    if servers.is_empty() {
        return Err(StoreError::Conflict("create_servers made no server".into()).into());
    }
    let schedule = Request {
        vcpus: flavor.vcpus,
        ram_mb: flavor.ram_mb,
        disk_gb: flavor.disk_gb,
        zone: req.availability_zone,
    };
    match compute {
        Some(c) => c.launch(
            servers
                .iter()
                .map(|s| (s.clone(), schedule.clone()))
                .collect(),
        ),
        // No compute role here: another daemon's sync cannot schedule, so say so plainly.
        None => {
            for s in &servers {
                store
                    .set_error(
                        &s.id,
                        "No valid host was found.",
                        "this daemon has no compute role to schedule the server",
                    )
                    .await?;
            }
        }
    }
    Ok(Created {
        servers,
        reservation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(ram_mb: i64, disk_gb: i64) -> Flavor {
        Flavor {
            ram_mb,
            disk_gb,
            ..Flavor::default()
        }
    }

    fn image(min_ram: i64, min_disk: i64, size: i64, format: &str) -> Image {
        Image {
            min_ram,
            min_disk,
            size: Some(size),
            disk_format: Some(format.into()),
            ..Image::default()
        }
    }

    #[test]
    fn the_image_must_fit_the_flavor() {
        let gib = 1 << 30;
        assert!(check_image_fits(&image(512, 1, gib, "qcow2"), &flavor(512, 1)).is_ok());
        let err = check_image_fits(&image(1024, 0, 1, "qcow2"), &flavor(512, 1)).unwrap_err();
        assert!(err.to_string().contains("memory is too small"), "{err}");
        let err = check_image_fits(&image(0, 2, 1, "qcow2"), &flavor(512, 1)).unwrap_err();
        assert!(err.to_string().contains("needs 2 GiB"), "{err}");
        let err = check_image_fits(&image(0, 0, 2 * gib, "raw"), &flavor(512, 1)).unwrap_err();
        assert!(err.to_string().contains("disk is too small"), "{err}");
        // Disk 0 takes the image's size; a kernel image is not a root disk.
        assert!(check_image_fits(&image(0, 9, 9 * gib, "raw"), &flavor(512, 0)).is_ok());
        assert!(check_image_fits(&image(0, 9, 9 * gib, "aki"), &flavor(512, 1)).is_ok());
        // min_ram holds for kernels too.
        assert!(check_image_fits(&image(1024, 0, 1, "aki"), &flavor(512, 1)).is_err());
    }

    #[test]
    fn metadata_quota_counts_items() {
        assert!(check_metadata_quota(128, 128).is_ok());
        assert!(matches!(
            check_metadata_quota(129, 128),
            Err(ComputeApiError::OverQuota(_))
        ));
        assert!(check_metadata_quota(10_000, -1).is_ok());
    }

    #[test]
    fn user_data_is_base64_within_the_limit() {
        assert_eq!(check_user_data(" aGk= \n").unwrap(), "aGk=");
        assert!(check_user_data("not base64!").is_err());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_USER_DATA + 1]);
        assert!(
            check_user_data(&big)
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
    }
}
