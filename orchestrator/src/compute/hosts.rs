//! Compute hosts: one row per daemon with the compute role. A daemon registers its capacity
//! (from the driver) and allocation ratios at start and heartbeats while it runs; the
//! scheduler's claims live in the `*_used` columns.

use super::driver::HostInfo;
use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

/// A host is "up" while its heartbeat is younger than this (nova's `service_down_time`).
pub const DOWN_AFTER_MICROS: i64 = 60_000_000;

/// One compute host.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ComputeHost {
    /// Integer id (os-hypervisors, os-services).
    pub seq: i64,
    /// Host name.
    pub host: String,
    /// Physical CPUs.
    pub vcpus: i64,
    /// RAM in MiB.
    pub memory_mb: i64,
    /// Disk in GiB.
    pub disk_gb: i64,
    /// Claimed vCPUs.
    pub vcpus_used: i64,
    /// Claimed RAM.
    pub memory_mb_used: i64,
    /// Claimed disk.
    pub disk_gb_used: i64,
    /// Servers holding a claim here.
    pub running_vms: i64,
    /// vCPU allocation ratio.
    pub cpu_ratio: f64,
    /// RAM allocation ratio.
    pub ram_ratio: f64,
    /// Disk allocation ratio.
    pub disk_ratio: f64,
    /// Availability zone.
    pub availability_zone: String,
    /// Takes new servers.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Last heartbeat, µs.
    pub heartbeat_at: i64,
    /// Registered, µs.
    pub created_at: i64,
}

impl ComputeHost {
    /// Whether the host heartbeat is recent.
    pub fn is_up(&self, now: i64) -> bool {
        now - self.heartbeat_at < DOWN_AFTER_MICROS
    }

    /// Allocatable vCPUs (capacity times ratio).
    pub fn vcpus_limit(&self) -> i64 {
        scaled(self.vcpus, self.cpu_ratio)
    }

    /// Allocatable RAM in MiB.
    pub fn memory_limit(&self) -> i64 {
        scaled(self.memory_mb, self.ram_ratio)
    }

    /// Allocatable disk in GiB.
    pub fn disk_limit(&self) -> i64 {
        scaled(self.disk_gb, self.disk_ratio)
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn scaled(v: i64, ratio: f64) -> i64 {
    (v as f64 * ratio).floor() as i64
}

/// Allocation ratios of a host (nova's defaults: 16, 1.5, 1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratios {
    /// vCPUs.
    pub cpu: f64,
    /// RAM.
    pub ram: f64,
    /// Disk.
    pub disk: f64,
}

const COLS: &str = "SELECT seq, host, vcpus, memory_mb, disk_gb, vcpus_used, memory_mb_used, \
    disk_gb_used, running_vms, cpu_ratio, ram_ratio, disk_ratio, availability_zone, enabled, \
    disabled_reason, heartbeat_at, created_at FROM compute_hosts";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Registers (or refreshes) this host: capacity, ratios, zone, heartbeat; the claim
    /// counters are recomputed from the servers that hold claims here.
    pub async fn register_host(
        &self,
        info: &HostInfo,
        ratios: Ratios,
        zone: &str,
    ) -> Result<ComputeHost, StoreError> {
        let now = now_micros();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO compute_hosts (host, vcpus, memory_mb, disk_gb, cpu_ratio, ram_ratio,
                disk_ratio, availability_zone, heartbeat_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (host) DO UPDATE SET vcpus = excluded.vcpus,
                memory_mb = excluded.memory_mb, disk_gb = excluded.disk_gb,
                cpu_ratio = excluded.cpu_ratio, ram_ratio = excluded.ram_ratio,
                disk_ratio = excluded.disk_ratio, availability_zone = excluded.availability_zone,
                heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&info.hostname)
        .bind(i64::from(info.vcpus))
        .bind(to_i64(info.memory_mib))
        .bind(to_i64(info.disk_gb))
        .bind(ratios.cpu)
        .bind(ratios.ram)
        .bind(ratios.disk)
        .bind(zone)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE compute_hosts SET
                vcpus_used = (SELECT COALESCE(SUM(vcpus), 0) FROM servers
                              WHERE host = $1 AND claimed),
                memory_mb_used = (SELECT COALESCE(SUM(ram_mb), 0) FROM servers
                                  WHERE host = $1 AND claimed),
                disk_gb_used = (SELECT COALESCE(SUM(disk_gb), 0) FROM servers
                                WHERE host = $1 AND claimed),
                running_vms = (SELECT COUNT(*) FROM servers WHERE host = $1 AND claimed)
             WHERE host = $1",
        )
        .bind(&info.hostname)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_host(&info.hostname).await
    }

    /// Records that the host is alive.
    pub async fn heartbeat_host(&self, host: &str) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE compute_hosts SET heartbeat_at = $2 WHERE host = $1")
            .bind(host)
            .bind(now_micros())
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "host", host)
    }

    /// The host with this name.
    pub async fn get_host(&self, host: &str) -> Result<ComputeHost, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} WHERE host = $1")))
            .bind(host)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("host", host))
    }

    /// The host with this integer id.
    pub async fn get_host_by_seq(&self, seq: i64) -> Result<ComputeHost, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} WHERE seq = $1")))
            .bind(seq)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("hypervisor", seq.to_string()))
    }

    /// Every host, by id.
    pub async fn list_hosts(&self) -> Result<Vec<ComputeHost>, StoreError> {
        Ok(
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} ORDER BY seq")))
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Enables or disables scheduling onto a host.
    pub async fn set_host_enabled(
        &self,
        host: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE compute_hosts SET enabled = $2, disabled_reason = $3 WHERE host = $1",
        )
        .bind(host)
        .bind(enabled)
        .bind(reason)
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "host", host)
    }
}
