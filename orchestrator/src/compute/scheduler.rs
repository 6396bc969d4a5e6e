//! The scheduler: filters hosts (enabled, up, zone, vCPUs, RAM, disk), weighs the rest by free
//! RAM, and claims the resources on the best host with a
//! conditional UPDATE in one transaction. A claim that loses a race (another scheduler took
//! the room first) moves on to the next host, so several daemons can schedule at once.

use super::hosts::ComputeHost;
use super::write_tx;
use crate::store::{Store, StoreError, now_micros};

/// What a server needs. (Whether its image fits the flavor is the compute service's rule,
/// checked before the server exists: `service::check_image_fits`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// vCPUs.
    pub vcpus: i64,
    /// RAM in MiB.
    pub ram_mb: i64,
    /// Root disk in GiB.
    pub disk_gb: i64,
    /// Availability zone asked for.
    pub zone: Option<String>,
}

/// Why no host was chosen.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Every host was filtered out; the reasons per host follow.
    #[error("No valid host was found. {0}")]
    NoValidHost(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why `host` cannot take `req`, or `None` when it can.
pub fn reject(host: &ComputeHost, req: &Request, now: i64) -> Option<String> {
    let name = &host.host;
    if !host.enabled {
        return Some(format!("{name}: disabled"));
    }
    if !host.is_up(now) {
        return Some(format!("{name}: down (no heartbeat)"));
    }
    if let Some(z) = &req.zone
        && *z != host.availability_zone
    {
        return Some(format!(
            "{name}: in zone {}, not {z}",
            host.availability_zone
        ));
    }
    let free = |limit: i64, used: i64| limit - used;
    let vcpus = free(host.vcpus_limit(), host.vcpus_used);
    if vcpus < req.vcpus {
        return Some(format!("{name}: {vcpus} vCPUs free, {} asked", req.vcpus));
    }
    let ram = free(host.memory_limit(), host.memory_mb_used);
    if ram < req.ram_mb {
        return Some(format!("{name}: {ram} MiB RAM free, {} asked", req.ram_mb));
    }
    let disk = free(host.disk_limit(), host.disk_gb_used);
    if disk < req.disk_gb {
        return Some(format!(
            "{name}: {disk} GiB disk free, {} asked",
            req.disk_gb
        ));
    }
    None
}

/// The hosts that pass every filter, best (most free RAM) first; or the reasons none did.
pub fn choose(
    hosts: Vec<ComputeHost>,
    req: &Request,
    now: i64,
) -> Result<Vec<ComputeHost>, String> {
    let mut reasons = Vec::new();
    let mut ok: Vec<ComputeHost> = hosts
        .into_iter()
        .filter(|h| match reject(h, req, now) {
            Some(r) => {
                reasons.push(r);
                false
            }
            None => true,
        })
        .collect();
    if ok.is_empty() {
        if reasons.is_empty() {
            reasons.push("no compute host is registered".into());
        }
        return Err(reasons.join("; "));
    }
    ok.sort_by_key(|h| std::cmp::Reverse(h.memory_limit() - h.memory_mb_used));
    Ok(ok)
}

impl Store {
    /// Picks a host for the server and claims `req` there; returns the host's name.
    pub async fn schedule(&self, server_id: &str, req: &Request) -> Result<String, ScheduleError> {
        let hosts = self.list_hosts().await?;
        let ranked = choose(hosts, req, now_micros()).map_err(ScheduleError::NoValidHost)?;
        for host in &ranked {
            if self.claim(server_id, &host.host, req).await? {
                tracing::debug!(server = server_id, host = %host.host, "claimed");
                return Ok(host.host.clone());
            }
        }
        Err(ScheduleError::NoValidHost(
            "every fitting host was filled by concurrent requests".into(),
        ))
    }

    /// Claims `req` on `host` for the server; false when it no longer fits there.
    pub async fn claim(
        &self,
        server_id: &str,
        host: &str,
        req: &Request,
    ) -> Result<bool, StoreError> {
        let mut tx = write_tx(self).await?;
        let r = sqlx::query(
            "UPDATE compute_hosts SET vcpus_used = vcpus_used + $2,
                memory_mb_used = memory_mb_used + $3, disk_gb_used = disk_gb_used + $4,
                running_vms = running_vms + 1
             WHERE host = $1 AND enabled
                AND vcpus_used + $2 <= vcpus * cpu_ratio
                AND memory_mb_used + $3 <= memory_mb * ram_ratio
                AND disk_gb_used + $4 <= disk_gb * disk_ratio",
        )
        .bind(host)
        .bind(req.vcpus)
        .bind(req.ram_mb)
        .bind(req.disk_gb)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        let s = sqlx::query(
            "UPDATE servers SET host = $2, claimed = TRUE, updated_at = $3,
                availability_zone = COALESCE(availability_zone,
                    (SELECT availability_zone FROM compute_hosts WHERE host = $2))
             WHERE id = $1 AND NOT claimed",
        )
        .bind(server_id)
        .bind(host)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if s.rows_affected() != 1 {
            // Deleted meanwhile (or claimed twice): the transaction drops, nothing changes.
            return Err(StoreError::not_found("server", server_id));
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Gives back the server's claim, if it holds one (idempotent).
    pub async fn release(&self, server_id: &str) -> Result<(), StoreError> {
        let mut tx = write_tx(self).await?;
        let held: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT host, vcpus, ram_mb, disk_gb FROM servers
             WHERE id = $1 AND claimed AND host IS NOT NULL",
        )
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((host, vcpus, ram, disk)) = held else {
            return Ok(());
        };
        sqlx::query("UPDATE servers SET claimed = FALSE WHERE id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE compute_hosts SET vcpus_used = vcpus_used - $2,
                memory_mb_used = memory_mb_used - $3, disk_gb_used = disk_gb_used - $4,
                running_vms = running_vms - 1
             WHERE host = $1",
        )
        .bind(&host)
        .bind(vcpus)
        .bind(ram)
        .bind(disk)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compute::driver::HostInfo;
    use crate::compute::hosts::Ratios;
    use crate::compute::quotas::defaults;
    use crate::compute::servers::{CreateError, Metadata, Server};

    pub(crate) fn template(project: &str, vcpus: i64, ram: i64) -> Server {
        Server {
            id: String::new(),
            seq: 0,
            name: "s".into(),
            project_id: project.into(),
            user_id: "u".into(),
            image_id: "img".into(),
            flavor_id: "1".into(),
            vcpus,
            ram_mb: ram,
            disk_gb: 1,
            key_name: None,
            user_data: None,
            metadata: Metadata::default(),
            availability_zone: None,
            reservation_id: "r-1".into(),
            launch_index: 0,
            access_ipv4: String::new(),
            access_ipv6: String::new(),
            disk_config: "MANUAL".into(),
            host: None,
            claimed: false,
            vm_state: crate::compute::VmState::Building,
            task_state: Some(crate::compute::TaskState::Scheduling),
            power_state: crate::compute::driver::PowerState::NoState,
            pid: None,
            fault: None,
            launched_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn req(vcpus: i64, ram: i64) -> Request {
        Request {
            vcpus,
            ram_mb: ram,
            disk_gb: 1,
            zone: None,
        }
    }

    async fn host(s: &Store, name: &str, mem: u64) {
        let info = HostInfo {
            hostname: name.into(),
            vcpus: 2,
            memory_mib: mem,
            disk_gb: 100,
        };
        let r = Ratios {
            cpu: 2.0,
            ram: 1.0,
            disk: 1.0,
        };
        s.register_host(&info, r, "nova").await.unwrap();
    }

    #[tokio::test]
    async fn weighs_by_free_ram_claims_and_releases_with_ratios() {
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        host(&s, "small", 1024).await;
        host(&s, "big", 4096).await;
        let made = s
            .create_servers(&template("p", 2, 2048), 1, 3, &defaults())
            .await
            .unwrap();
        assert_eq!(made.len(), 3);
        // 2048 MiB each: "big" takes two (4 vCPUs = 2 x ratio 2), then nothing fits.
        assert_eq!(s.schedule(&made[0].id, &req(2, 2048)).await.unwrap(), "big");
        assert_eq!(s.schedule(&made[1].id, &req(2, 2048)).await.unwrap(), "big");
        let e = s.schedule(&made[2].id, &req(2, 2048)).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("small: 1024 MiB RAM free") && msg.contains("big: 0 vCPUs free"),
            "{msg}"
        );
        let big = s.get_host("big").await.unwrap();
        assert_eq!(
            (big.vcpus_used, big.memory_mb_used, big.running_vms),
            (4, 4096, 2)
        );
        s.release(&made[0].id).await.unwrap();
        s.release(&made[0].id).await.unwrap();
        let big = s.get_host("big").await.unwrap();
        assert_eq!(
            (big.vcpus_used, big.memory_mb_used, big.running_vms),
            (2, 2048, 1)
        );
        // Re-registering recomputes the counters from the claims.
        host(&s, "big", 4096).await;
        assert_eq!(s.get_host("big").await.unwrap().memory_mb_used, 2048);
        s.set_host_enabled("big", false, Some("maintenance"))
            .await
            .unwrap();
        let e = s.schedule(&made[2].id, &req(1, 2048)).await.unwrap_err();
        assert!(e.to_string().contains("big: disabled"), "{e}");
        assert_eq!(
            s.schedule(&made[2].id, &req(1, 512)).await.unwrap(),
            "small"
        );
    }

    #[tokio::test]
    async fn zone_filter() {
        // (The image's minimums are the compute service's: service::check_image_fits.)
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        host(&s, "h", 4096).await;
        let h = s.get_host("h").await.unwrap();
        let mut r = req(1, 512);
        r.zone = Some("az2".into());
        assert!(reject(&h, &r, now_micros()).unwrap().contains("zone"));
        r.zone = Some("nova".into());
        assert_eq!(reject(&h, &r, now_micros()), None);
    }

    #[tokio::test]
    async fn quota_counts_inside_the_insert_transaction() {
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        let mut limits = defaults();
        limits.insert("instances".into(), 3);
        limits.insert("cores".into(), 4);
        let t = template("p", 2, 512);
        // min 1, max 5: cores allow two.
        assert_eq!(s.create_servers(&t, 1, 5, &limits).await.unwrap().len(), 2);
        match s.create_servers(&t, 1, 1, &limits).await {
            Err(CreateError::Quota {
                resource,
                used,
                limit,
                ..
            }) => {
                assert_eq!((resource, used, limit), ("cores", 4, 4));
            }
            other => panic!("{other:?}"),
        }
        let small = template("p", 0, 1);
        assert_eq!(
            s.create_servers(&small, 1, 1, &limits).await.unwrap().len(),
            1
        );
        let e = s.create_servers(&small, 1, 1, &limits).await.unwrap_err();
        assert!(
            e.to_string().starts_with("Quota exceeded for instances"),
            "{e}"
        );
        assert_eq!(s.quota_usage("p").await.unwrap().instances, 3);
    }
}
