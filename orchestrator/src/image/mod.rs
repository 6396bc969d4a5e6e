//! Image v2 records (glance's model): metadata rows, tags and members, the list query with
//! glance's visibility rules, and uploads streamed into the `images` store ([`upload`]).

mod list;
mod members;
pub mod upload;

use serde_json::{Map, Value};

use crate::identity::resources_found as found;
use crate::store::{Store, StoreError, now_micros};

pub use list::{ImageFilter, ListViewer, SortDir, SortKey};
pub use members::{MEMBER_STATUSES, Member};

/// Image statuses (glance's names).
pub mod status {
    /// Created, no data yet.
    pub const QUEUED: &str = "queued";
    /// Data being uploaded.
    pub const SAVING: &str = "saving";
    /// Data stored and checked.
    pub const ACTIVE: &str = "active";
    /// The upload failed; the image holds no data.
    pub const KILLED: &str = "killed";
    /// Hidden from non-admins, data kept.
    pub const DEACTIVATED: &str = "deactivated";
}

/// The visibilities glance knows.
pub const VISIBILITIES: [&str; 4] = ["public", "private", "shared", "community"];

/// One image's metadata.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct Image {
    /// Id (a UUID, as glance).
    pub id: String,
    /// Name, not unique.
    pub name: Option<String>,
    /// Owning project.
    pub owner: String,
    /// queued, saving, active, killed, deactivated.
    pub status: String,
    /// public, private, shared or community.
    pub visibility: String,
    /// A protected image cannot be deleted.
    pub protected: bool,
    /// Left out of lists unless asked for.
    pub os_hidden: bool,
    /// Claimed disk format (checked against the content on upload).
    pub disk_format: Option<String>,
    /// Container format (`bare` in practice; not interpreted).
    pub container_format: Option<String>,
    /// Minimum RAM in MiB to boot it.
    pub min_ram: i64,
    /// Minimum disk in GiB to boot it.
    pub min_disk: i64,
    /// Bytes stored.
    pub size: Option<i64>,
    /// Virtual disk size, when the format tells it.
    pub virtual_size: Option<i64>,
    /// md5 of the data, hex.
    pub checksum: Option<String>,
    /// `sha512`.
    pub os_hash_algo: Option<String>,
    /// sha512 of the data, hex.
    pub os_hash_value: Option<String>,
    /// Extra properties (glance keeps them as strings).
    #[sqlx(try_from = "String")]
    pub properties: Properties,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub updated_at: i64,
    /// Tags, sorted.
    #[sqlx(skip)]
    pub tags: Vec<String>,
}

/// An image's extra properties.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties(pub Map<String, Value>);

impl TryFrom<String> for Properties {
    type Error = serde_json::Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Properties)
    }
}

pub(crate) const IMAGE_COLS: &str = "SELECT id, name, owner, status, visibility, protected, \
    os_hidden, disk_format, container_format, min_ram, min_disk, size, virtual_size, checksum, \
    os_hash_algo, os_hash_value, properties, created_at, updated_at FROM images";

impl Image {
    /// A queued image owned by `owner`, with glance's defaults.
    pub fn new(id: String, owner: String) -> Image {
        let now = now_micros();
        Image {
            id,
            name: None,
            owner,
            status: status::QUEUED.into(),
            visibility: "shared".into(),
            protected: false,
            os_hidden: false,
            disk_format: None,
            container_format: None,
            min_ram: 0,
            min_disk: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            properties: Properties::default(),
            created_at: now,
            updated_at: now,
            tags: Vec::new(),
        }
    }
}

impl Store {
    /// Inserts a new image with its tags; `Conflict` when the id is taken.
    pub async fn create_image(&self, img: &Image) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO images (id, name, owner, status, visibility, protected, os_hidden,
                disk_format, container_format, min_ram, min_disk, size, virtual_size, checksum,
                os_hash_algo, os_hash_value, properties, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19)",
        )
        .bind(&img.id)
        .bind(&img.name)
        .bind(&img.owner)
        .bind(&img.status)
        .bind(&img.visibility)
        .bind(img.protected)
        .bind(img.os_hidden)
        .bind(&img.disk_format)
        .bind(&img.container_format)
        .bind(img.min_ram)
        .bind(img.min_disk)
        .bind(img.size)
        .bind(img.virtual_size)
        .bind(&img.checksum)
        .bind(&img.os_hash_algo)
        .bind(&img.os_hash_value)
        .bind(Value::Object(img.properties.0.clone()).to_string())
        .bind(img.created_at)
        .bind(img.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_or(e, || format!("image {} exists", img.id)))?;
        insert_tags(&mut tx, &img.id, &img.tags).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The image with this id, tags included.
    pub async fn get_image(&self, id: &str) -> Result<Image, StoreError> {
        let mut img: Image =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{IMAGE_COLS} WHERE id = $1")))
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| StoreError::not_found("image", id))?;
        img.tags =
            sqlx::query_scalar("SELECT tag FROM image_tags WHERE image_id = $1 ORDER BY tag")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        Ok(img)
    }

    /// Writes the user-settable metadata and tags of an image (not status, size or hashes).
    pub async fn update_image(&self, img: &Image) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let r = sqlx::query(
            "UPDATE images SET name = $2, visibility = $3, protected = $4, os_hidden = $5,
                disk_format = $6, container_format = $7, min_ram = $8, min_disk = $9,
                properties = $10, owner = $11, updated_at = $12
             WHERE id = $1",
        )
        .bind(&img.id)
        .bind(&img.name)
        .bind(&img.visibility)
        .bind(img.protected)
        .bind(img.os_hidden)
        .bind(&img.disk_format)
        .bind(&img.container_format)
        .bind(img.min_ram)
        .bind(img.min_disk)
        .bind(Value::Object(img.properties.0.clone()).to_string())
        .bind(&img.owner)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        found(r.rows_affected(), "image", &img.id)?;
        sqlx::query("DELETE FROM image_tags WHERE image_id = $1")
            .bind(&img.id)
            .execute(&mut *tx)
            .await?;
        insert_tags(&mut tx, &img.id, &img.tags).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves an image from one status to another; false when it was not in `from`.
    pub async fn transition_image(
        &self,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE images SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records stored data and makes a `saving` image `active`; false when it is no longer
    /// saving (deleted or killed meanwhile).
    pub async fn activate_image(&self, id: &str, data: &ImageData) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE images SET status = 'active', size = $2, virtual_size = $3, checksum = $4,
                os_hash_algo = 'sha512', os_hash_value = $5, updated_at = $6
             WHERE id = $1 AND status = 'saving'",
        )
        .bind(id)
        .bind(data.size)
        .bind(data.virtual_size)
        .bind(&data.md5)
        .bind(&data.sha512)
        .bind(now_micros())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes an image row with its tags and members.
    pub async fn delete_image(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "image", id)
    }

    /// Adds one tag (idempotent) and touches `updated_at`.
    pub async fn add_image_tag(&self, id: &str, tag: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(tag)
        .execute(self.pool())
        .await?;
        self.touch_image(id).await
    }

    /// Removes one tag; `NotFound` when the image did not have it.
    pub async fn remove_image_tag(&self, id: &str, tag: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM image_tags WHERE image_id = $1 AND tag = $2")
            .bind(id)
            .bind(tag)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "tag", tag)?;
        self.touch_image(id).await
    }

    async fn touch_image(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE images SET updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_micros())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Adds tags to an image inside a transaction.
async fn insert_tags(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    tags: &[String],
) -> Result<(), StoreError> {
    for tag in tags {
        sqlx::query(
            "INSERT INTO image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(tag)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// What an upload stored (from the `images` store), as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageData {
    /// Bytes.
    pub size: i64,
    /// Virtual size, if known.
    pub virtual_size: Option<i64>,
    /// md5 hex.
    pub md5: String,
    /// sha512 hex.
    pub sha512: String,
}
