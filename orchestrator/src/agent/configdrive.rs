//! The config drive: [`ConfigDriveData`] laid out as Nova lays out an OpenStack config drive
//! (what cloud-init's ConfigDrive data source reads), written as an ISO 9660 image labelled
//! `config-2`.

use crate::compute::driver::ConfigDriveData;
use std::path::Path;

/// The volume label cloud-init looks for.
pub const LABEL: &str = images::configdrive::CONFIG_DRIVE_LABEL;

/// Why the config drive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// A JSON document could not be serialised.
    #[error("config drive {file}: {source}")]
    Json {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the image failed.
    #[error(transparent)]
    Write(#[from] images::configdrive::ConfigDriveError),
}

/// The files of the drive: `openstack/latest/` has them all; `openstack/2012-08-10/` (the first
/// version, which cloud-init and older agents still probe) has the two it defined, as in Nova.
pub fn files(data: &ConfigDriveData) -> Result<Vec<(String, Vec<u8>)>, ConfigDriveError> {
    let json = |file: &str, value: &serde_json::Value| {
        // `null` (not given) is written as an empty object: readers parse every file.
        let value = if value.is_null() {
            &serde_json::json!({})
        } else {
            value
        };
        serde_json::to_vec(value).map_err(|source| ConfigDriveError::Json {
            file: file.to_owned(),
            source,
        })
    };
    let meta = json("meta_data.json", &data.meta_data)?;
    let mut out = Vec::new();
    for version in ["2012-08-10", "latest"] {
        let dir = format!("openstack/{version}");
        out.push((format!("{dir}/meta_data.json"), meta.clone()));
        if let Some(user) = &data.user_data {
            out.push((format!("{dir}/user_data"), user.clone()));
        }
    }
    out.push((
        "openstack/latest/network_data.json".to_owned(),
        json("network_data.json", &data.network_data)?,
    ));
    out.push((
        "openstack/latest/vendor_data.json".to_owned(),
        json("vendor_data.json", &data.vendor_data)?,
    ));
    Ok(out)
}

/// Writes the drive for `data` to `dest`.
pub fn write(dest: &Path, data: &ConfigDriveData) -> Result<(), ConfigDriveError> {
    let files = files(data)?;
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    images::configdrive::write_iso(dest, LABEL, &refs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_layout() {
        let data = ConfigDriveData {
            meta_data: serde_json::json!({"uuid": "u", "hostname": "vm1"}),
            user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
            ..Default::default()
        };
        let files = files(&data).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "openstack/2012-08-10/meta_data.json",
                "openstack/2012-08-10/user_data",
                "openstack/latest/meta_data.json",
                "openstack/latest/user_data",
                "openstack/latest/network_data.json",
                "openstack/latest/vendor_data.json",
            ]
        );
        assert_eq!(files[3].1, b"#!/bin/sh\necho hi\n");
        let meta: serde_json::Value = serde_json::from_slice(&files[2].1).unwrap();
        assert_eq!(meta["hostname"], "vm1");
        assert_eq!(files[5].1, b"{}", "absent vendor data is an empty object");
        let no_user = files_of_default();
        assert!(!no_user.iter().any(|(n, _)| n.ends_with("user_data")));
    }

    fn files_of_default() -> Vec<(String, Vec<u8>)> {
        files(&ConfigDriveData::default()).unwrap()
    }
}
