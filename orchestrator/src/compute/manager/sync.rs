//! The power-state sync and the adoption of running guests at start.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Compute, blocking, uuid_of};
use crate::compute::driver::{DriverError, Observed, PowerState};
use crate::compute::servers::Server;
use crate::compute::task;
use crate::compute::{VmState, vm};
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
        let Some((state, power)) = target(&s, obs) else {
            return;
        };
        if state == vm::STOPPED && s.vm_state != vm::STOPPED {
            tracing::warn!(server = id, power = ?obs.power, fault = ?obs.fault, "guest is no longer running");
        }
        if let Err(e) = self.store.sync_state(id, state, power, obs.pid).await {
            tracing::warn!(server = id, error = %e, "cannot record the observed state");
        }
    }

    /// Checks one server against the sync's snapshot; where they disagree, looks again (the
    /// snapshot predates the rows: a build or action may have finished since) and records
    /// what that fresh look shows.
    async fn settle(&self, s: &Server, snapshot: Option<&Observed>) {
        let running = matches!(s.vm_state, vm::ACTIVE | vm::PAUSED | vm::SUSPENDED);
        let differs = match snapshot {
            Some(o) => target(s, o).is_some(),
            None => running,
        };
        if !differs {
            return;
        }
        let Ok(uuid) = uuid_of(&s.id) else { return };
        let d = self.driver.clone();
        match blocking(move || d.observe(uuid)).await {
            Ok(o) => self.reflect(&s.id, &o).await,
            Err(DriverError::NotFound(_)) if running => {
                let still_idle = self
                    .store
                    .get_server(&s.id)
                    .await
                    .is_ok_and(|now| now.task_state.is_none() && now.vm_state == s.vm_state);
                if still_idle {
                    self.fail(
                        &s.id,
                        "Instance lost",
                        "the instance's files are gone from its host",
                    )
                    .await;
                }
            }
            Err(e) => tracing::debug!(server = %s.id, error = %e, "cannot observe"),
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
        for (id, o) in &observed {
            self.note_ready(id, o);
        }
        for s in self.store.servers_on_host(&self.host).await? {
            if self.busy(&s.id) {
                continue;
            }
            match s.task_state {
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
                None => self.settle(&s, observed.get(&s.id)).await,
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
            match (s.task_state, obs) {
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

/// The (vm state, power state) a server with no task should have for what is observed, when
/// its record says otherwise. A server in ERROR stays there unless its guest runs.
fn target(s: &Server, obs: &Observed) -> Option<(VmState, PowerState)> {
    let (state, power) = match obs.power {
        PowerState::Running => (vm::ACTIVE, PowerState::Running),
        PowerState::Paused => (vm::PAUSED, PowerState::Paused),
        PowerState::Suspended => (vm::SUSPENDED, PowerState::Suspended),
        PowerState::Crashed => (vm::STOPPED, PowerState::Crashed),
        PowerState::Shutdown | PowerState::NoState => (vm::STOPPED, PowerState::Shutdown),
    };
    if s.vm_state == vm::ERROR && power != PowerState::Running {
        return None;
    }
    let pid = obs.pid.map(i64::from);
    (s.vm_state != state || s.power_state != power || s.pid != pid).then_some((state, power))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::scheduler::tests::template;

    fn seen(power: PowerState, pid: Option<u32>) -> Observed {
        Observed {
            power,
            pid,
            ready: true,
            ready_us: Some(5),
            fault: None,
        }
    }

    #[test]
    fn targets_follow_the_guest_but_keep_errors() {
        let mut s = template("p", 1, 64);
        s.vm_state = vm::ACTIVE;
        s.power_state = PowerState::Running;
        s.pid = Some(7);
        assert_eq!(target(&s, &seen(PowerState::Running, Some(7))), None);
        assert_eq!(
            target(&s, &seen(PowerState::Running, Some(8))),
            Some((vm::ACTIVE, PowerState::Running))
        );
        assert_eq!(
            target(&s, &seen(PowerState::Crashed, None)),
            Some((vm::STOPPED, PowerState::Crashed))
        );
        assert_eq!(
            target(&s, &seen(PowerState::Paused, Some(7))),
            Some((vm::PAUSED, PowerState::Paused))
        );
        s.vm_state = vm::ERROR;
        assert_eq!(target(&s, &seen(PowerState::Shutdown, None)), None);
    }
}
