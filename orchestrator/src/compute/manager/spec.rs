//! What a server boots, resolved to this host's files: the image, its `kernel_id` and
//! `ramdisk_id` images, the config drive's metadata; and the snapshot upload.

use std::sync::Arc;

use base64::Engine;
use images::store::ImageStore;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Compute, uuid_of};
use crate::compute::driver::{BootSource, ConfigDriveData, DriverError, InstanceSpec};
use crate::compute::servers::Server;
use crate::image::Image;
use crate::image::upload::UploadError;
use crate::store::{Store, StoreError};

/// A guest hostname from a server name (RFC 952-ish, as nova sanitizes it).
pub fn hostname(name: &str) -> String {
    let mut h: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(63);
    if h.is_empty() { "server".into() } else { h }
}

/// Why a server's boot could not be resolved on this host (its fault message).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// An image the server needs has no data here.
    #[error("{what} image {id} has no data on this host")]
    NoData {
        /// root disk, kernel or ramdisk.
        what: &'static str,
        /// The image.
        id: String,
    },
    /// Nothing to boot: no kernel_id, no disk, no default kernel.
    #[error(
        "image {0} has no kernel_id and no disk, and this host has no default kernel ([compute] default_kernel)"
    )]
    NoKernel(String),
    /// A record the server names could not be read.
    #[error("{what} {id}: {source}")]
    Lookup {
        /// image, kernel_id, ramdisk_id or key pair.
        what: &'static str,
        /// Its id or name.
        id: String,
        /// Why.
        source: StoreError,
    },
    /// The stored user data is not base64 (the API checked it; a row changed behind it).
    #[error("user_data is not base64: {0}")]
    UserData(#[from] base64::DecodeError),
    /// The server's id is not a UUID.
    #[error(transparent)]
    Id(#[from] DriverError),
}

/// Why a snapshot did not reach its image.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot directory or the snapshot file could not be made or read.
    #[error("{path}: {source}")]
    File {
        /// The directory or file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The driver could not take the snapshot.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The image service refused the upload.
    #[error(transparent)]
    Upload(#[from] UploadError),
}

impl Compute {
    /// Resolves an image to files on this host.
    fn boot_source(
        &self,
        image: &Image,
        kernel: Option<&Image>,
        ramdisk: Option<&Image>,
    ) -> Result<BootSource, SpecError> {
        let prop = |k: &str| {
            image
                .properties
                .0
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let file = |i: &Image, what: &'static str| {
            self.images.path(&i.id).ok_or_else(|| SpecError::NoData {
                what,
                id: i.id.clone(),
            })
        };
        let disk_format = image.disk_format.clone().unwrap_or_else(|| "raw".into());
        let is_kernel = matches!(disk_format.as_str(), "aki" | "ari");
        let disk = if is_kernel || image.size.unwrap_or(0) == 0 {
            None
        } else {
            Some(file(image, "root disk")?)
        };
        // Without kernel_id an image boots the kernel it holds (as a firmware would find it),
        // else the host's default kernel: the agent decides, it has the disk.
        let kernel_from_disk = kernel.is_none() && !is_kernel && disk.is_some();
        let kernel = match kernel {
            Some(k) => Some(file(k, "kernel")?),
            None if disk_format == "aki" => Some(file(image, "kernel")?),
            None if self.cfg.default_kernel.as_os_str().is_empty() => None,
            None => Some(self.cfg.default_kernel.clone()),
        };
        if kernel.is_none() && !kernel_from_disk {
            return Err(SpecError::NoKernel(image.id.clone()));
        }
        let initrd = ramdisk.map(|r| file(r, "ramdisk")).transpose()?;
        Ok(BootSource {
            image_id: Uuid::parse_str(&image.id).unwrap_or_else(|_| Uuid::nil()),
            disk,
            disk_format,
            kernel,
            initrd,
            kernel_from_disk,
            cmdline: prop("os_command_line"),
        })
    }

    /// The image a property (`kernel_id`, `ramdisk_id`) names, if it names one.
    async fn linked_image(
        &self,
        image: &Image,
        key: &'static str,
    ) -> Result<Option<Image>, SpecError> {
        let Some(id) = image.properties.0.get(key).and_then(Value::as_str) else {
            return Ok(None);
        };
        let linked = self.store.get_image(id).await;
        linked.map(Some).map_err(|source| SpecError::Lookup {
            what: key,
            id: id.to_string(),
            source,
        })
    }

    pub(super) async fn spec(&self, s: &Server) -> Result<InstanceSpec, SpecError> {
        let image =
            self.store
                .get_image(&s.image_id)
                .await
                .map_err(|source| SpecError::Lookup {
                    what: "image",
                    id: s.image_id.clone(),
                    source,
                })?;
        let kernel = self.linked_image(&image, "kernel_id").await?;
        let ramdisk = self.linked_image(&image, "ramdisk_id").await?;
        let boot = self.boot_source(&image, kernel.as_ref(), ramdisk.as_ref())?;
        let mut public_keys = Map::new();
        let mut keys = Vec::new();
        if let Some(k) = &s.key_name {
            let kp = self
                .store
                .get_keypair(&s.user_id, k)
                .await
                .map_err(|source| SpecError::Lookup {
                    what: "key pair",
                    id: k.clone(),
                    source,
                })?;
            public_keys.insert(k.clone(), Value::String(kp.public_key.clone()));
            keys.push(json!({"name": k, "type": "ssh", "data": kp.public_key}));
        }
        let user_data = match &s.user_data {
            Some(b) => Some(base64::engine::general_purpose::STANDARD.decode(b)?),
            None => None,
        };
        let meta_data = json!({
            "uuid": s.id,
            "name": s.name,
            "hostname": hostname(&s.name),
            "launch_index": s.launch_index,
            "availability_zone": s.availability_zone.clone().unwrap_or_else(|| self.cfg.availability_zone.clone()),
            "project_id": s.project_id,
            "public_keys": public_keys,
            "keys": keys,
            "meta": s.metadata.0,
            "devices": [],
        });
        Ok(InstanceSpec {
            id: uuid_of(&s.id)?,
            name: s.name.clone(),
            vcpus: u32::try_from(s.vcpus).unwrap_or(1),
            memory_mib: u64::try_from(s.ram_mb).unwrap_or(0),
            root_gb: u64::try_from(s.disk_gb).unwrap_or(0),
            boot,
            config_drive: ConfigDriveData {
                meta_data,
                user_data,
                network_data: json!({"links": [], "networks": [], "services": []}),
                vendor_data: json!({}),
            },
        })
    }
}

/// Streams a file into a queued image through the image service's upload path.
pub(super) async fn upload_file(
    store: &Store,
    data: Arc<ImageStore>,
    image: &Image,
    path: &std::path::Path,
) -> Result<(), SnapshotError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|source| SnapshotError::File {
            path: path.to_owned(),
            source,
        })?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut stream = stream.boxed();
    crate::image::upload::receive(store, data, image, &mut stream).await?;
    Ok(())
}
