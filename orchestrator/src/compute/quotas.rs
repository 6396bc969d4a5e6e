//! Compute quotas: per-project hard limits over nova's defaults, and the usage they are
//! checked against. Enforcement at server create happens inside the insert's transaction
//! ([`Store::create_servers`](crate::Store::create_servers)).

use std::collections::BTreeMap;

use crate::store::{Store, StoreError};

/// The quota resources of the 2.1 `quota_set`, with nova's default limits (-1: unlimited).
pub const DEFAULTS: [(&str, i64); 14] = [
    ("cores", 20),
    ("fixed_ips", -1),
    ("floating_ips", 10),
    ("injected_file_content_bytes", 10240),
    ("injected_file_path_bytes", 255),
    ("injected_files", 5),
    ("instances", 10),
    ("key_pairs", 100),
    ("metadata_items", 128),
    ("ram", 51200),
    ("security_group_rules", 20),
    ("security_groups", 10),
    ("server_group_members", 10),
    ("server_groups", 10),
];

/// Limits by resource name.
pub type Limits = BTreeMap<String, i64>;

/// What a project uses of the counted resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Servers.
    pub instances: i64,
    /// vCPUs of its servers.
    pub cores: i64,
    /// RAM (MiB) of its servers.
    pub ram: i64,
}

impl Usage {
    /// The usage of `resource`, if it is one that is counted.
    pub fn of(&self, resource: &str) -> Option<i64> {
        match resource {
            "instances" => Some(self.instances),
            "cores" => Some(self.cores),
            "ram" => Some(self.ram),
            _ => None,
        }
    }
}

/// Whether `name` is a quota resource.
pub fn is_resource(name: &str) -> bool {
    DEFAULTS.iter().any(|(n, _)| *n == name)
}

/// Nova's defaults as [`Limits`].
pub fn defaults() -> Limits {
    DEFAULTS.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

impl Store {
    /// The project's limits: its own rows over the defaults.
    pub async fn quota_limits(&self, project_id: &str) -> Result<Limits, StoreError> {
        let mut limits = defaults();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT resource, hard_limit FROM compute_quotas WHERE project_id = $1")
                .bind(project_id)
                .fetch_all(self.pool())
                .await?;
        limits.extend(rows);
        Ok(limits)
    }

    /// Sets some of the project's limits.
    pub async fn set_quota_limits(
        &self,
        project_id: &str,
        limits: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for (resource, limit) in limits {
            sqlx::query(
                "INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
                 ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
            )
            .bind(project_id)
            .bind(resource)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops the project's own limits (back to the defaults).
    pub async fn reset_quota_limits(&self, project_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1")
            .bind(project_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// What the project's servers use.
    pub async fn quota_usage(&self, project_id: &str) -> Result<Usage, StoreError> {
        usage(self.pool(), project_id).await
    }
}

/// Usage counted on any executor (the pool, or the transaction that inserts servers).
pub(crate) async fn usage<'e, E>(exec: E, project_id: &str) -> Result<Usage, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let (instances, cores, ram): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(vcpus), 0), COALESCE(SUM(ram_mb), 0)
         FROM servers WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_one(exec)
    .await?;
    Ok(Usage {
        instances,
        cores,
        ram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_override_defaults_and_reset() {
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        assert_eq!(s.quota_limits("p").await.unwrap()["instances"], 10);
        s.set_quota_limits("p", &[("instances".into(), 1), ("ram".into(), -1)])
            .await
            .unwrap();
        s.set_quota_limits("p", &[("instances".into(), 2)])
            .await
            .unwrap();
        let l = s.quota_limits("p").await.unwrap();
        assert_eq!((l["instances"], l["ram"], l["cores"]), (2, -1, 20));
        assert_eq!(s.quota_limits("other").await.unwrap()["instances"], 10);
        s.reset_quota_limits("p").await.unwrap();
        assert_eq!(s.quota_limits("p").await.unwrap()["instances"], 10);
        assert_eq!(s.quota_usage("p").await.unwrap(), Usage::default());
    }
}
