//! The service catalog: regions, services and endpoints.

use super::resources::{found, in_use};
use super::{Endpoint, Region, Service};
use crate::store::{Store, StoreError};

const REGION_COLS: &str = "SELECT id, description, parent_region_id, extra FROM regions";
const SERVICE_COLS: &str = "SELECT id, type, name, description, enabled, extra FROM services";
const ENDPOINT_COLS: &str =
    "SELECT id, service_id, region_id, interface, url, enabled, extra FROM endpoints";

impl Store {
    /// Creates a region; `Conflict` when the id is taken.
    pub async fn create_region(&self, r: &Region) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO regions (id, description, parent_region_id, extra) VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.id)
        .bind(&r.description)
        .bind(&r.parent_region_id)
        .bind(r.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| map_fk(e, || format!("region {} exists", r.id), "parent region"))?;
        Ok(())
    }

    /// The region with this id.
    pub async fn get_region(&self, id: &str) -> Result<Region, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{REGION_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("region", id))
    }

    /// All regions, optionally only the children of one.
    pub async fn list_regions(&self, parent: Option<&str>) -> Result<Vec<Region>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REGION_COLS} WHERE ($1 IS NULL OR parent_region_id = $1) ORDER BY id"
        )))
        .bind(parent)
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes every column of an existing region.
    pub async fn update_region(&self, r: &Region) -> Result<(), StoreError> {
        let res = sqlx::query(
            "UPDATE regions SET description = $2, parent_region_id = $3, extra = $4 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(&r.description)
        .bind(&r.parent_region_id)
        .bind(r.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| map_fk(e, || format!("region {} exists", r.id), "parent region"))?;
        found(res.rows_affected(), "region", &r.id)
    }

    /// Deletes a region; `Conflict` while endpoints or child regions use it.
    pub async fn delete_region(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM regions WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| in_use(e, || format!("region {id} still has endpoints or children")))?;
        found(r.rows_affected(), "region", id)
    }

    /// Creates a service.
    pub async fn create_service(&self, s: &Service) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO services (id, type, name, description, enabled, extra)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.service_type)
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.enabled)
        .bind(s.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::conflict_or(e, || format!("service {} exists", s.id)))?;
        Ok(())
    }

    /// The service with this id.
    pub async fn get_service(&self, id: &str) -> Result<Service, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SERVICE_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("service", id))
    }

    /// Services, optionally filtered by name and type.
    pub async fn list_services(
        &self,
        name: Option<&str>,
        service_type: Option<&str>,
    ) -> Result<Vec<Service>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERVICE_COLS} WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR type = $2)
             ORDER BY type, name, id"
        )))
        .bind(name)
        .bind(service_type)
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes every column of an existing service.
    pub async fn update_service(&self, s: &Service) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE services SET type = $2, name = $3, description = $4, enabled = $5, extra = $6
             WHERE id = $1",
        )
        .bind(&s.id)
        .bind(&s.service_type)
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.enabled)
        .bind(s.extra.to_text())
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "service", &s.id)
    }

    /// Deletes a service and, by cascade, its endpoints.
    pub async fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "service", id)
    }

    /// Creates an endpoint; `NotFound` when its service or region does not exist.
    pub async fn create_endpoint(&self, e: &Endpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO endpoints (id, service_id, region_id, interface, url, enabled, extra)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.id)
        .bind(&e.service_id)
        .bind(&e.region_id)
        .bind(&e.interface)
        .bind(&e.url)
        .bind(e.enabled)
        .bind(e.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|err| {
            map_fk(
                err,
                || format!("endpoint {} exists", e.id),
                "service or region",
            )
        })?;
        Ok(())
    }

    /// The endpoint with this id.
    pub async fn get_endpoint(&self, id: &str) -> Result<Endpoint, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ENDPOINT_COLS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found("endpoint", id))
    }

    /// Endpoints, optionally filtered by service, interface and region.
    pub async fn list_endpoints(
        &self,
        service_id: Option<&str>,
        interface: Option<&str>,
        region_id: Option<&str>,
    ) -> Result<Vec<Endpoint>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ENDPOINT_COLS} WHERE ($1 IS NULL OR service_id = $1)
               AND ($2 IS NULL OR interface = $2) AND ($3 IS NULL OR region_id = $3)
             ORDER BY service_id, interface, id"
        )))
        .bind(service_id)
        .bind(interface)
        .bind(region_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes every column of an existing endpoint.
    pub async fn update_endpoint(&self, e: &Endpoint) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE endpoints SET service_id = $2, region_id = $3, interface = $4, url = $5,
                 enabled = $6, extra = $7 WHERE id = $1",
        )
        .bind(&e.id)
        .bind(&e.service_id)
        .bind(&e.region_id)
        .bind(&e.interface)
        .bind(&e.url)
        .bind(e.enabled)
        .bind(e.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|err| {
            map_fk(
                err,
                || format!("endpoint {} exists", e.id),
                "service or region",
            )
        })?;
        found(r.rows_affected(), "endpoint", &e.id)
    }

    /// Deletes an endpoint.
    pub async fn delete_endpoint(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM endpoints WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "endpoint", id)
    }

    /// The catalog a token shows: enabled services with their enabled endpoints.
    pub async fn catalog(&self) -> Result<Vec<(Service, Vec<Endpoint>)>, StoreError> {
        let services = self.list_services(None, None).await?;
        let endpoints = self.list_endpoints(None, None, None).await?;
        Ok(services
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| {
                let eps = endpoints
                    .iter()
                    .filter(|e| e.enabled && e.service_id == s.id)
                    .cloned()
                    .collect();
                (s, eps)
            })
            .collect())
    }
}

/// Unique violation → `Conflict`; foreign-key violation → `NotFound` of the referenced row.
fn map_fk(err: sqlx::Error, conflict: impl FnOnce() -> String, refers: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::not_found(refers, "referenced")
        }
        _ => StoreError::conflict_or(err, conflict),
    }
}
