//! Image members: the projects an image with visibility `shared` is offered to.

use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

/// One member of an image.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Member {
    /// The image.
    pub image_id: String,
    /// The project it is shared with.
    pub member_id: String,
    /// pending, accepted or rejected.
    pub status: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub updated_at: i64,
}

/// Member statuses glance knows.
pub const MEMBER_STATUSES: [&str; 3] = ["pending", "accepted", "rejected"];

const MEMBER_COLS: &str =
    "SELECT image_id, member_id, status, created_at, updated_at FROM image_members";

impl Store {
    /// Offers an image to a project (status pending); `Conflict` when already a member.
    pub async fn add_image_member(
        &self,
        image_id: &str,
        member_id: &str,
    ) -> Result<Member, StoreError> {
        let now = now_micros();
        let m = Member {
            image_id: image_id.into(),
            member_id: member_id.into(),
            status: "pending".into(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&m.image_id)
        .bind(&m.member_id)
        .bind(&m.status)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!("{member_id} is already a member of image {image_id}")
            })
        })?;
        Ok(m)
    }

    /// The members of an image.
    pub async fn list_image_members(&self, image_id: &str) -> Result<Vec<Member>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MEMBER_COLS} WHERE image_id = $1 ORDER BY member_id"
        )))
        .bind(image_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// One member of an image.
    pub async fn get_image_member(
        &self,
        image_id: &str,
        member_id: &str,
    ) -> Result<Member, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MEMBER_COLS} WHERE image_id = $1 AND member_id = $2"
        )))
        .bind(image_id)
        .bind(member_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found("image member", member_id))
    }

    /// Sets a member's status (the member's answer to the offer).
    pub async fn set_image_member_status(
        &self,
        image_id: &str,
        member_id: &str,
        status: &str,
    ) -> Result<Member, StoreError> {
        let r = sqlx::query(
            "UPDATE image_members SET status = $3, updated_at = $4
             WHERE image_id = $1 AND member_id = $2",
        )
        .bind(image_id)
        .bind(member_id)
        .bind(status)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "image member", member_id)?;
        self.get_image_member(image_id, member_id).await
    }

    /// Withdraws an offer.
    pub async fn remove_image_member(
        &self,
        image_id: &str,
        member_id: &str,
    ) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM image_members WHERE image_id = $1 AND member_id = $2")
            .bind(image_id)
            .bind(member_id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "image member", member_id)
    }
}
