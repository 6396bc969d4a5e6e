//! Flavors: the sizes a server can have, with their extra specs.

use serde_json::{Map, Value};

use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

/// One flavor.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct Flavor {
    /// The id clients see.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// vCPUs.
    pub vcpus: i64,
    /// RAM in MiB.
    pub ram_mb: i64,
    /// Root disk in GiB (0: the image's size).
    pub disk_gb: i64,
    /// Ephemeral disk in GiB (recorded, not provided).
    pub ephemeral_gb: i64,
    /// Swap in MiB (recorded, not provided).
    pub swap_mb: i64,
    /// Network bandwidth factor (recorded).
    pub rxtx_factor: f64,
    /// Visible to every project.
    pub is_public: bool,
    /// Hidden from new servers.
    pub disabled: bool,
    /// Extra specs, string to string.
    #[sqlx(try_from = "String")]
    pub extra_specs: ExtraSpecs,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// A flavor's extra specs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraSpecs(pub Map<String, Value>);

impl TryFrom<String> for ExtraSpecs {
    type Error = serde_json::Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(ExtraSpecs)
    }
}

const COLS: &str = "SELECT id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb, rxtx_factor, \
    is_public, disabled, extra_specs, created_at FROM flavors";

impl Store {
    /// Creates a flavor; `Conflict` when its id or name is taken.
    pub async fn create_flavor(&self, f: &Flavor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb,
                rxtx_factor, is_public, disabled, extra_specs, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&f.id)
        .bind(&f.name)
        .bind(f.vcpus)
        .bind(f.ram_mb)
        .bind(f.disk_gb)
        .bind(f.ephemeral_gb)
        .bind(f.swap_mb)
        .bind(f.rxtx_factor)
        .bind(f.is_public)
        .bind(f.disabled)
        .bind(Value::Object(f.extra_specs.0.clone()).to_string())
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!("Flavor with name {} or ID {} already exists", f.name, f.id)
            })
        })?;
        Ok(())
    }

    /// The flavor with this id.
    pub async fn get_flavor(&self, id: &str) -> Result<Flavor, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("flavor", id))
    }

    /// Every flavor, ordered by id (callers filter and page).
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>, StoreError> {
        Ok(
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} ORDER BY id")))
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Deletes a flavor (servers keep their own copy of its sizes).
    pub async fn delete_flavor(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM flavors WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "flavor", id)
    }

    /// Replaces a flavor's extra specs.
    pub async fn set_flavor_extra_specs(
        &self,
        id: &str,
        specs: &ExtraSpecs,
    ) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE flavors SET extra_specs = $2 WHERE id = $1")
            .bind(id)
            .bind(Value::Object(specs.0.clone()).to_string())
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "flavor", id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn defaults_exist_and_names_are_unique() {
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        let all = s.list_flavors().await.unwrap();
        let names: Vec<_> = all.iter().map(|f| f.name.as_str()).collect();
        for n in [
            "m1.tiny",
            "m1.small",
            "m1.medium",
            "m1.large",
            "tiny-guest.64M",
        ] {
            assert!(names.contains(&n), "{names:?}");
        }
        let mut f = s.get_flavor("1").await.unwrap();
        f.id = "new".into();
        let e = s.create_flavor(&f).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        f.name = "other".into();
        f.extra_specs
            .0
            .insert("hw:cpu_policy".into(), "dedicated".into());
        s.create_flavor(&f).await.unwrap();
        assert_eq!(
            s.get_flavor("new").await.unwrap().extra_specs,
            f.extra_specs
        );
        s.delete_flavor("new").await.unwrap();
        assert!(matches!(
            s.delete_flavor("new").await,
            Err(StoreError::NotFound { .. })
        ));
    }
}
