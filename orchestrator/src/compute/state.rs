//! A server's `vm_state` and `task_state` as types: Nova's words on the wire and in the
//! database (TEXT columns, so rows written before these types read back unchanged), a closed
//! set in the code. A value the database holds that is not one of them is a decode error, not
//! a silently unknown state.

use serde::Serialize;

/// Nova's vm states (the ones we use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum VmState {
    /// Being built.
    Building,
    /// Running.
    Active,
    /// Powered off.
    Stopped,
    /// vCPUs paused.
    Paused,
    /// Suspended.
    Suspended,
    /// Failed; see the fault.
    Error,
}

/// Nova's task states (the ones we use), with Nova's spelling (`powering-off` has a hyphen,
/// `rebooting_hard` an underscore).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
pub enum TaskState {
    /// Waiting for a host.
    #[serde(rename = "scheduling")]
    #[sqlx(rename = "scheduling")]
    Scheduling,
    /// The driver is creating and booting it.
    #[serde(rename = "spawning")]
    #[sqlx(rename = "spawning")]
    Spawning,
    /// Stopping.
    #[serde(rename = "powering-off")]
    #[sqlx(rename = "powering-off")]
    PoweringOff,
    /// Starting.
    #[serde(rename = "powering-on")]
    #[sqlx(rename = "powering-on")]
    PoweringOn,
    /// Soft reboot.
    #[serde(rename = "rebooting")]
    #[sqlx(rename = "rebooting")]
    Rebooting,
    /// Hard reboot.
    #[serde(rename = "rebooting_hard")]
    #[sqlx(rename = "rebooting_hard")]
    RebootingHard,
    /// Pausing.
    #[serde(rename = "pausing")]
    #[sqlx(rename = "pausing")]
    Pausing,
    /// Unpausing.
    #[serde(rename = "unpausing")]
    #[sqlx(rename = "unpausing")]
    Unpausing,
    /// Suspending.
    #[serde(rename = "suspending")]
    #[sqlx(rename = "suspending")]
    Suspending,
    /// Resuming.
    #[serde(rename = "resuming")]
    #[sqlx(rename = "resuming")]
    Resuming,
    /// Snapshot being taken.
    #[serde(rename = "image_snapshot")]
    #[sqlx(rename = "image_snapshot")]
    ImageSnapshot,
    /// Snapshot being uploaded.
    #[serde(rename = "image_uploading")]
    #[sqlx(rename = "image_uploading")]
    ImageUploading,
    /// Being deleted.
    #[serde(rename = "deleting")]
    #[sqlx(rename = "deleting")]
    Deleting,
}

impl VmState {
    /// Every state, for parsing.
    pub const ALL: [VmState; 6] = [
        Self::Building,
        Self::Active,
        Self::Stopped,
        Self::Paused,
        Self::Suspended,
        Self::Error,
    ];

    /// Nova's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Active => "active",
            Self::Stopped => "stopped",
            Self::Paused => "paused",
            Self::Suspended => "suspended",
            Self::Error => "error",
        }
    }

    /// The state Nova's word names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl TaskState {
    /// Every task state, for parsing.
    pub const ALL: [TaskState; 13] = [
        Self::Scheduling,
        Self::Spawning,
        Self::PoweringOff,
        Self::PoweringOn,
        Self::Rebooting,
        Self::RebootingHard,
        Self::Pausing,
        Self::Unpausing,
        Self::Suspending,
        Self::Resuming,
        Self::ImageSnapshot,
        Self::ImageUploading,
        Self::Deleting,
    ];

    /// Nova's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduling => "scheduling",
            Self::Spawning => "spawning",
            Self::PoweringOff => "powering-off",
            Self::PoweringOn => "powering-on",
            Self::Rebooting => "rebooting",
            Self::RebootingHard => "rebooting_hard",
            Self::Pausing => "pausing",
            Self::Unpausing => "unpausing",
            Self::Suspending => "suspending",
            Self::Resuming => "resuming",
            Self::ImageSnapshot => "image_snapshot",
            Self::ImageUploading => "image_uploading",
            Self::Deleting => "deleting",
        }
    }

    /// The task state Nova's word names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The vm states by their old constant names (`vm::ACTIVE`), as the task flow reads them.
pub mod vm {
    use super::VmState;
    /// Being built.
    pub const BUILDING: VmState = VmState::Building;
    /// Running.
    pub const ACTIVE: VmState = VmState::Active;
    /// Powered off.
    pub const STOPPED: VmState = VmState::Stopped;
    /// vCPUs paused.
    pub const PAUSED: VmState = VmState::Paused;
    /// Suspended.
    pub const SUSPENDED: VmState = VmState::Suspended;
    /// Failed; see the fault.
    pub const ERROR: VmState = VmState::Error;
}

/// The task states by their constant names (`task::SPAWNING`).
pub mod task {
    use super::TaskState;
    /// Waiting for a host.
    pub const SCHEDULING: TaskState = TaskState::Scheduling;
    /// The driver is creating and booting it.
    pub const SPAWNING: TaskState = TaskState::Spawning;
    /// Stopping.
    pub const POWERING_OFF: TaskState = TaskState::PoweringOff;
    /// Starting.
    pub const POWERING_ON: TaskState = TaskState::PoweringOn;
    /// Soft reboot.
    pub const REBOOTING: TaskState = TaskState::Rebooting;
    /// Hard reboot.
    pub const REBOOTING_HARD: TaskState = TaskState::RebootingHard;
    /// Pausing.
    pub const PAUSING: TaskState = TaskState::Pausing;
    /// Unpausing.
    pub const UNPAUSING: TaskState = TaskState::Unpausing;
    /// Suspending.
    pub const SUSPENDING: TaskState = TaskState::Suspending;
    /// Resuming.
    pub const RESUMING: TaskState = TaskState::Resuming;
    /// Snapshot being taken.
    pub const IMAGE_SNAPSHOT: TaskState = TaskState::ImageSnapshot;
    /// Snapshot being uploaded.
    pub const IMAGE_UPLOADING: TaskState = TaskState::ImageUploading;
    /// Being deleted.
    pub const DELETING: TaskState = TaskState::Deleting;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_match_serde() {
        for v in VmState::ALL {
            assert_eq!(VmState::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for t in TaskState::ALL {
            assert_eq!(TaskState::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(VmState::parse("shelved"), None);
        assert_eq!(TaskState::parse("powering_off"), None);
    }

    #[tokio::test]
    async fn stored_as_novas_words() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let (v, t): (String, String) = sqlx::query_as("SELECT $1, $2")
            .bind(VmState::Stopped)
            .bind(TaskState::PoweringOff)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((v.as_str(), t.as_str()), ("stopped", "powering-off"));
        let (v, t): (VmState, Option<TaskState>) =
            sqlx::query_as("SELECT 'suspended', 'rebooting_hard'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((v, t), (VmState::Suspended, Some(TaskState::RebootingHard)));
        let bad: Result<(VmState,), _> = sqlx::query_as("SELECT 'shelved'").fetch_one(&pool).await;
        assert!(bad.is_err());
        // Power states are Nova's numbers.
        use crate::compute::driver::PowerState;
        let (n,): (i64,) = sqlx::query_as("SELECT $1")
            .bind(PowerState::Crashed)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 6);
        let (p,): (PowerState,) = sqlx::query_as("SELECT 7").fetch_one(&pool).await.unwrap();
        assert_eq!(p, PowerState::Suspended);
        let bad: Result<(PowerState,), _> = sqlx::query_as("SELECT 5").fetch_one(&pool).await;
        assert!(bad.is_err(), "5 is no power state of ours");
    }
}
