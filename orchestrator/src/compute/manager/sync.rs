//! The power-state sync and the adoption of running guests at start.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Compute, blocking, uuid_of};
use crate::compute::driver::{Observed, PowerState};
use crate::compute::servers::vm;
use crate::compute::task;
use crate::store::StoreError;

impl Compute {
    /// Puts what the driver observes into the record of a server with no task running.
    pub(super) async fn reflect(&self, id: &str, obs: &Observed) {
        let Ok(s) = self.store.get_server(id).await else {
            return;
        };
        if s.task_state.is_some() {
            return;
        }
        let (state, power) = match obs.power {
            PowerState::Running => (vm::ACTIVE, PowerState::Running),
            PowerState::Paused => (vm::PAUSED, PowerState::Paused),
            PowerState::Suspended => (vm::SUSPENDED, PowerState::Suspended),
            p @ (PowerState::Shutdown | PowerState::Crashed | PowerState::NoState) => {
                if s.vm_state == vm::ERROR {
                    return;
                }
                if s.vm_state != vm::STOPPED {
                    tracing::warn!(server = id, power = ?p, fault = ?obs.fault, "guest is no longer running");
                }
                (
                    vm::STOPPED,
                    if p == PowerState::Crashed {
                        p
                    } else {
                        PowerState::Shutdown
                    },
                )
            }
        };
        if s.vm_state == vm::ERROR && power != PowerState::Running {
            return;
        }
        let pid = obs.pid.map(i64::from);
        if s.vm_state != state || s.power_state != power as i64 || s.pid != pid {
            let _ = self
                .store
                .set_state(id, state, power as i64, obs.pid, None)
                .await;
        }
    }

    /// What the driver sees of every instance on this host, by server id.
    async fn observe_all(&self) -> HashMap<String, Observed> {
        let d = self.driver.clone();
        let all = tokio::task::spawn_blocking(move || d.list()).await;
        let all = all.unwrap_or_default().into_iter();
        all.map(|(id, o)| (id.to_string(), o)).collect()
    }

    /// One pass of the power-state sync; also picks up work other daemons left for this host.
    pub async fn sync(self: &Arc<Self>) -> Result<(), StoreError> {
        let observed = self.observe_all().await;
        for s in self.store.servers_on_host(&self.host).await? {
            if self.busy(&s.id) {
                continue;
            }
            match s.task_state.as_deref() {
                Some(task::SPAWNING) if s.vm_state == vm::BUILDING => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let lock = me.lock_of(&s.id);
                        let _g = lock.lock().await;
                        me.build(&s.id).await;
                    });
                }
                Some(task::DELETING) => self.delete(s),
                Some(_) => {}
                None => match observed.get(&s.id) {
                    Some(obs) => self.reflect(&s.id, obs).await,
                    None if matches!(
                        s.vm_state.as_str(),
                        vm::ACTIVE | vm::PAUSED | vm::SUSPENDED
                    ) =>
                    {
                        self.fail(
                            &s.id,
                            "Instance lost",
                            "the instance's files are gone from its host",
                        )
                        .await;
                    }
                    None => {}
                },
            }
        }
        Ok(())
    }

    /// At start: tasks cut short by the previous daemon are settled, running guests adopted.
    pub(super) async fn adopt(&self) -> Result<(), StoreError> {
        let observed = self.observe_all().await;
        let mut adopted = 0;
        for s in self.store.servers_on_host(&self.host).await? {
            let obs = observed.get(&s.id);
            match (s.task_state.as_deref(), obs) {
                (Some(task::DELETING), _) => {}
                (Some(task::SPAWNING), Some(_)) if s.vm_state == vm::BUILDING => {
                    // Half-built: start over (the sync rebuilds it).
                    if let Ok(uuid) = uuid_of(&s.id) {
                        let d = self.driver.clone();
                        let _ = blocking(move || d.destroy(uuid)).await;
                    }
                }
                (Some(task::SPAWNING), None) => {}
                (Some(_), _) => {
                    self.store.set_task(&s.id, None).await?;
                    if s.vm_state == vm::BUILDING {
                        self.fail(
                            &s.id,
                            "Build interrupted",
                            "the daemon restarted during the build",
                        )
                        .await;
                    } else if let Some(o) = obs {
                        self.reflect(&s.id, o).await;
                    }
                }
                (None, Some(o)) => {
                    if o.power == PowerState::Running {
                        adopted += 1;
                    }
                    self.reflect(&s.id, o).await;
                }
                (None, None) => {}
            }
        }
        tracing::info!(adopted, "running guests adopted");
        Ok(())
    }
}
