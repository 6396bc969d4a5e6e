//! Token revocation events. Tokens are checked without the database, so revoking one means
//! writing an event here that every host's API loads into memory (see the `api` crate's
//! revocation cache): a token matching an event is refused.

use crate::store::{Store, StoreError, new_id, now_micros};

/// One revocation: tokens matching every field that is set, issued at or before
/// `issued_before`, are no longer valid.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RevocationEvent {
    /// Audit id of one token (and of the tokens rescoped from it).
    pub audit_id: Option<String>,
    /// Every token of this user.
    pub user_id: Option<String>,
    /// Every token scoped to this project.
    pub project_id: Option<String>,
    /// Microseconds since the epoch.
    pub issued_before: i64,
    /// When the event was written, microseconds since the epoch.
    pub revoked_at: i64,
}

impl RevocationEvent {
    /// An event for the given fields, issued before now.
    pub fn now(
        audit_id: Option<String>,
        user_id: Option<String>,
        project_id: Option<String>,
    ) -> RevocationEvent {
        let now = now_micros();
        RevocationEvent {
            audit_id,
            user_id,
            project_id,
            issued_before: now,
            revoked_at: now,
        }
    }
}

impl Store {
    /// Records a revocation event.
    pub async fn add_revocation(&self, ev: &RevocationEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocation_events
                (id, audit_id, user_id, project_id, issued_before, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(&ev.audit_id)
        .bind(&ev.user_id)
        .bind(&ev.project_id)
        .bind(ev.issued_before)
        .bind(ev.revoked_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every event that can still match a live token: written at or after `since`.
    pub async fn revocations_since(&self, since: i64) -> Result<Vec<RevocationEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT audit_id, user_id, project_id, issued_before, revoked_at
             FROM revocation_events WHERE revoked_at >= $1 ORDER BY revoked_at",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// Drops events written before `before` (no token issued then is still alive).
    pub async fn prune_revocations(&self, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM revocation_events WHERE revoked_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}
