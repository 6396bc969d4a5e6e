//! Server records: creation under quota, queries, and the state changes the task flow makes.

use serde_json::{Map, Value, json};

use super::driver::PowerState;
use super::quotas::{Limits, usage};
use super::state::{TaskState, VmState};
use super::write_tx;
use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

/// One server.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Sequence number (`instance-%08x`).
    pub seq: i64,
    /// Name (not unique).
    pub name: String,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Image it boots.
    pub image_id: String,
    /// Flavor it was made with.
    pub flavor_id: String,
    /// vCPUs (copied from the flavor).
    pub vcpus: i64,
    /// RAM in MiB (copied from the flavor).
    pub ram_mb: i64,
    /// Root disk in GiB (copied from the flavor).
    pub disk_gb: i64,
    /// Key pair name.
    pub key_name: Option<String>,
    /// User data, base64 as given.
    pub user_data: Option<String>,
    /// Metadata, string to string.
    #[sqlx(try_from = "String")]
    pub metadata: Metadata,
    /// Availability zone asked for (or the host's, once scheduled).
    pub availability_zone: Option<String>,
    /// Reservation id shared by servers of one request.
    pub reservation_id: String,
    /// Index within its reservation.
    pub launch_index: i64,
    /// accessIPv4.
    pub access_ipv4: String,
    /// accessIPv6.
    pub access_ipv6: String,
    /// `OS-DCF:diskConfig`.
    pub disk_config: String,
    /// Host it runs on.
    pub host: Option<String>,
    /// Whether it holds a resource claim on `host`.
    pub claimed: bool,
    /// vm state.
    pub vm_state: VmState,
    /// Task in flight.
    pub task_state: Option<TaskState>,
    /// Power state.
    pub power_state: PowerState,
    /// VMM pid.
    pub pid: Option<i64>,
    /// Fault as JSON text.
    pub fault: Option<String>,
    /// When it first became active, µs.
    pub launched_at: Option<i64>,
    /// µs.
    pub created_at: i64,
    /// µs.
    pub updated_at: i64,
}

/// A server's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata(pub Map<String, Value>);

impl TryFrom<String> for Metadata {
    type Error = serde_json::Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Metadata)
    }
}

impl Server {
    /// The fault, parsed.
    pub fn fault_json(&self) -> Option<Value> {
        self.fault
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
    }

    /// `instance-%08x`, as libvirt domains are named under nova.
    pub fn instance_name(&self) -> String {
        format!("instance-{:08x}", self.seq)
    }
}

/// A quota a create would exceed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Over quota.
    #[error(
        "Quota exceeded for {resource}: Requested {requested}, but already used {used} of {limit} {resource}"
    )]
    Quota {
        /// The resource.
        resource: &'static str,
        /// Asked for.
        requested: i64,
        /// In use.
        used: i64,
        /// The limit.
        limit: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLS: &str = "SELECT id, seq, name, project_id, user_id, image_id, flavor_id, vcpus, \
    ram_mb, disk_gb, key_name, user_data, metadata, availability_zone, reservation_id, \
    launch_index, access_ipv4, access_ipv6, disk_config, host, claimed, vm_state, task_state, \
    power_state, pid, fault, launched_at, created_at, updated_at FROM servers";

/// How many of `per`-sized servers fit beside `used` under `limit` (-1: any).
fn room(limit: i64, used: i64, per: i64) -> i64 {
    if limit < 0 || per <= 0 {
        i64::MAX
    } else {
        ((limit - used) / per).max(0)
    }
}

impl Store {
    /// Inserts between `min` and `max` servers like `template` (each with a new id, the name
    /// suffixed `-N` when more than one), as many as the project's quota allows; none and a
    /// `Quota` error when even `min` do not fit. Counting and inserting share one write
    /// transaction, so concurrent creates cannot both pass the check.
    pub async fn create_servers(
        &self,
        template: &Server,
        min: i64,
        max: i64,
        limits: &Limits,
    ) -> Result<Vec<Server>, CreateError> {
        let mut tx = write_tx(self).await?;
        let used = usage(&mut *tx, &template.project_id).await?;
        let checks: [(&'static str, i64, i64); 3] = [
            ("instances", used.instances, 1),
            ("cores", used.cores, template.vcpus),
            ("ram", used.ram, template.ram_mb),
        ];
        let mut n = max;
        for (resource, in_use, per) in checks {
            let limit = limits.get(resource).copied().unwrap_or(-1);
            let fits = room(limit, in_use, per);
            if fits < min {
                return Err(CreateError::Quota {
                    resource,
                    requested: per * min,
                    used: in_use,
                    limit,
                });
            }
            n = n.min(fits);
        }
        let mut out = Vec::new();
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM servers")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let now = now_micros();
        for i in 0..n {
            let mut s = template.clone();
            s.id = uuid::Uuid::new_v4().to_string();
            s.seq = next + i;
            s.launch_index = i;
            if n > 1 {
                s.name = format!("{}-{}", template.name, i + 1);
            }
            s.created_at = now;
            s.updated_at = now;
            sqlx::query(
                "INSERT INTO servers (id, seq, name, project_id, user_id, image_id, flavor_id,
                    vcpus, ram_mb, disk_gb, key_name, user_data, metadata, availability_zone,
                    reservation_id, launch_index, access_ipv4, access_ipv6, disk_config,
                    vm_state, task_state, power_state, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21, $22, $23, $23)",
            )
            .bind(&s.id)
            .bind(s.seq)
            .bind(&s.name)
            .bind(&s.project_id)
            .bind(&s.user_id)
            .bind(&s.image_id)
            .bind(&s.flavor_id)
            .bind(s.vcpus)
            .bind(s.ram_mb)
            .bind(s.disk_gb)
            .bind(&s.key_name)
            .bind(&s.user_data)
            .bind(Value::Object(s.metadata.0.clone()).to_string())
            .bind(&s.availability_zone)
            .bind(&s.reservation_id)
            .bind(s.launch_index)
            .bind(&s.access_ipv4)
            .bind(&s.access_ipv6)
            .bind(&s.disk_config)
            .bind(s.vm_state)
            .bind(s.task_state)
            .bind(s.power_state)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            out.push(s);
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }

    /// The server with this id.
    pub async fn get_server(&self, id: &str) -> Result<Server, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("server", id))
    }

    /// Servers of one project, or of all projects with `None`; newest first.
    pub async fn list_servers(&self, project_id: Option<&str>) -> Result<Vec<Server>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{COLS} WHERE ($1 IS NULL OR project_id = $1) ORDER BY created_at DESC, id DESC"
        )))
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Servers placed on a host.
    pub async fn servers_on_host(&self, host: &str) -> Result<Vec<Server>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{COLS} WHERE host = $1 ORDER BY seq"
        )))
        .bind(host)
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes the user-editable fields (name, access IPs, metadata, disk config).
    pub async fn update_server_fields(&self, s: &Server) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE servers SET name = $2, access_ipv4 = $3, access_ipv6 = $4, metadata = $5,
                disk_config = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.access_ipv4)
        .bind(&s.access_ipv6)
        .bind(Value::Object(s.metadata.0.clone()).to_string())
        .bind(&s.disk_config)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "server", &s.id)
    }

    /// Starts a task: sets `task_state` only if no task runs and the vm state is one of
    /// `from`. Returns the server as it was when that failed (for the 409 message), or `None`
    /// on success.
    pub async fn begin_task(
        &self,
        id: &str,
        from: &[VmState],
        task: TaskState,
    ) -> Result<Option<Server>, StoreError> {
        let mut tx = write_tx(self).await?;
        let s: Server = sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("server", id))?;
        if s.task_state.is_some() || !from.contains(&s.vm_state) {
            return Ok(Some(s));
        }
        sqlx::query("UPDATE servers SET task_state = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(task)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }

    /// Marks a delete in progress whatever the server does (nova lets delete interrupt).
    pub async fn begin_delete(&self, id: &str) -> Result<Server, StoreError> {
        let r = sqlx::query(
            "UPDATE servers SET task_state = 'deleting', updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "server", id)?;
        self.get_server(id).await
    }

    /// Sets the task state (a step within a task, or `None` when it ends).
    pub async fn set_task(&self, id: &str, task: Option<TaskState>) -> Result<(), StoreError> {
        sqlx::query("UPDATE servers SET task_state = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(task)
            .bind(now_micros())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records an outcome: vm state, power state, pid, and the task state that follows.
    /// Does nothing to a server being deleted unless `task` is `deleting` itself.
    pub async fn set_state(
        &self,
        id: &str,
        vm_state: VmState,
        power: PowerState,
        pid: Option<u32>,
        task: Option<TaskState>,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        sqlx::query(
            "UPDATE servers SET vm_state = $2, power_state = $3, pid = $4, task_state = $5,
                updated_at = $6,
                launched_at = CASE WHEN $2 = 'active' AND launched_at IS NULL THEN $6
                                   ELSE launched_at END
             WHERE id = $1 AND (task_state IS NULL OR task_state != 'deleting')",
        )
        .bind(id)
        .bind(vm_state)
        .bind(power)
        .bind(pid.map(i64::from))
        .bind(task)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// As [`Store::set_state`] for the power-state sync: only while no task runs (an action
    /// that began since the sync looked wins). Returns whether the row changed.
    pub async fn sync_state(
        &self,
        id: &str,
        vm_state: VmState,
        power: PowerState,
        pid: Option<u32>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE servers SET vm_state = $2, power_state = $3, pid = $4, updated_at = $5
             WHERE id = $1 AND task_state IS NULL",
        )
        .bind(id)
        .bind(vm_state)
        .bind(power)
        .bind(pid.map(i64::from))
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Puts a server in ERROR with a fault (nova's `{code, message, details, created}`).
    pub async fn set_error(
        &self,
        id: &str,
        message: &str,
        details: &str,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let fault = json!({"code": 500, "message": message, "details": details, "created": now});
        sqlx::query(
            "UPDATE servers SET vm_state = 'error', task_state = NULL, fault = $2, pid = NULL,
                updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(fault.to_string())
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes a server row (after its VMM and files are gone and its claim released).
    pub async fn delete_server_row(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::quotas::defaults;
    use crate::compute::scheduler::tests::template;
    use crate::compute::{task, vm};

    #[tokio::test]
    async fn tasks_conflict_and_deletes_win() {
        let s = Store::open_url("sqlite::memory:").await.unwrap();
        let made = s
            .create_servers(&template("p", 1, 64), 2, 2, &defaults())
            .await
            .unwrap();
        assert_eq!(
            (made[0].name.as_str(), made[1].name.as_str()),
            ("s-1", "s-2")
        );
        assert_eq!(made[1].seq, made[0].seq + 1);
        let id = &made[0].id;
        // Still building with task `scheduling`: no action may start.
        let cur = s
            .begin_task(id, &[vm::ACTIVE], task::PAUSING)
            .await
            .unwrap();
        assert_eq!(
            cur.unwrap().task_state.map(TaskState::as_str),
            Some("scheduling")
        );
        s.set_state(id, vm::ACTIVE, PowerState::Running, Some(42), None)
            .await
            .unwrap();
        let srv = s.get_server(id).await.unwrap();
        assert!(srv.launched_at.is_some() && srv.pid == Some(42));
        assert!(
            s.begin_task(id, &[vm::ACTIVE], task::PAUSING)
                .await
                .unwrap()
                .is_none()
        );
        let cur = s
            .begin_task(id, &[vm::ACTIVE], task::SUSPENDING)
            .await
            .unwrap();
        assert_eq!(
            cur.unwrap().task_state.map(TaskState::as_str),
            Some("pausing")
        );
        // A delete marks the row; a late outcome of the action does not undo it.
        s.begin_delete(id).await.unwrap();
        s.set_state(id, vm::PAUSED, PowerState::Paused, Some(42), None)
            .await
            .unwrap();
        let srv = s.get_server(id).await.unwrap();
        assert_eq!(
            (srv.vm_state.as_str(), srv.task_state.map(TaskState::as_str)),
            ("active", Some("deleting"))
        );
        s.set_error(&made[1].id, "Build failed", "why")
            .await
            .unwrap();
        let f = s
            .get_server(&made[1].id)
            .await
            .unwrap()
            .fault_json()
            .unwrap();
        assert_eq!(
            (f["code"].as_i64(), f["details"].as_str()),
            (Some(500), Some("why"))
        );
        s.delete_server_row(id).await.unwrap();
        assert!(matches!(
            s.get_server(id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}
