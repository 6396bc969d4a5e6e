//! The image list: glance's visibility rules, filters, sorting and marker paging, in one SQL
//! query (keyset paging on the sort key and the id, so a page costs the same wherever it is).

use sqlx::{QueryBuilder, Sqlite};

use super::{IMAGE_COLS, Image};
use crate::store::{Store, StoreError};

/// Who is listing.
#[derive(Clone, Debug)]
pub enum ListViewer {
    /// Sees every image.
    Admin,
    /// Sees its own, public, community (when asked) and shared-with-it images.
    Project(String),
}

/// Sort keys glance accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// `created_at` (the default).
    CreatedAt,
    /// `updated_at`.
    UpdatedAt,
    /// `name`.
    Name,
    /// `status`.
    Status,
    /// `size`.
    Size,
    /// `id`.
    Id,
    /// `disk_format`.
    DiskFormat,
    /// `container_format`.
    ContainerFormat,
    /// `visibility`.
    Visibility,
    /// `owner`.
    Owner,
    /// `min_ram`.
    MinRam,
    /// `min_disk`.
    MinDisk,
}

impl SortKey {
    /// Parses glance's name of a sort key.
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "disk_format" => SortKey::DiskFormat,
            "container_format" => SortKey::ContainerFormat,
            "visibility" => SortKey::Visibility,
            "owner" => SortKey::Owner,
            "min_ram" => SortKey::MinRam,
            "min_disk" => SortKey::MinDisk,
            _ => return None,
        })
    }

    /// The SQL expression sorted on; NULLs folded so comparisons stay total.
    fn expr(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Status => "status",
            SortKey::Size => "COALESCE(size, -1)",
            SortKey::Id => "id",
            SortKey::DiskFormat => "COALESCE(disk_format, '')",
            SortKey::ContainerFormat => "COALESCE(container_format, '')",
            SortKey::Visibility => "visibility",
            SortKey::Owner => "owner",
            SortKey::MinRam => "min_ram",
            SortKey::MinDisk => "min_disk",
        }
    }
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending (the default).
    Desc,
}

/// Filters, sorting and paging of a list.
#[derive(Clone, Debug)]
pub struct ImageFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Visibility; `None` lists the usual set (no community images of others).
    pub visibility: Option<String>,
    /// Owning project.
    pub owner: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Disk format.
    pub disk_format: Option<String>,
    /// Container format.
    pub container_format: Option<String>,
    /// Protected or not.
    pub protected: Option<bool>,
    /// Hidden or not; `None` means not hidden.
    pub os_hidden: Option<bool>,
    /// At least this many bytes.
    pub size_min: Option<i64>,
    /// At most this many bytes.
    pub size_max: Option<i64>,
    /// Sort key.
    pub sort_key: SortKey,
    /// Sort direction.
    pub sort_dir: SortDir,
    /// Start after this image (which must be visible to the viewer).
    pub marker: Option<String>,
    /// Page size.
    pub limit: u32,
}

impl Default for ImageFilter {
    fn default() -> Self {
        ImageFilter {
            name: None,
            status: None,
            visibility: None,
            owner: None,
            tags: Vec::new(),
            disk_format: None,
            container_format: None,
            protected: None,
            os_hidden: None,
            size_min: None,
            size_max: None,
            sort_key: SortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            marker: None,
            limit: 25,
        }
    }
}

/// The viewer's visibility condition, appended to `q`.
fn push_visible(q: &mut QueryBuilder<Sqlite>, viewer: &ListViewer, visibility: Option<&str>) {
    match viewer {
        ListViewer::Admin => {
            q.push("1 = 1");
        }
        ListViewer::Project(p) => {
            q.push("(owner = ").push_bind(p.clone());
            q.push(" OR visibility = 'public'");
            if visibility == Some("community") {
                q.push(" OR visibility = 'community'");
            }
            q.push(" OR (visibility = 'shared' AND id IN (SELECT image_id FROM image_members WHERE member_id = ")
                .push_bind(p.clone())
                .push(" AND status = 'accepted')))");
        }
    }
}

impl Store {
    /// Whether `viewer` may see image `id` at all (glance answers 404 otherwise).
    pub async fn image_visible(
        &self,
        viewer: &ListViewer,
        img: &Image,
    ) -> Result<bool, StoreError> {
        let p = match viewer {
            ListViewer::Admin => return Ok(true),
            ListViewer::Project(p) => p,
        };
        if &img.owner == p || img.visibility == "public" || img.visibility == "community" {
            return Ok(true);
        }
        if img.visibility != "shared" {
            return Ok(false);
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM image_members WHERE image_id = $1 AND member_id = $2",
        )
        .bind(&img.id)
        .bind(p)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// One page of images visible to `viewer`, with tags; `NotFound` for an unknown marker.
    pub async fn list_images(
        &self,
        viewer: &ListViewer,
        f: &ImageFilter,
    ) -> Result<Vec<Image>, StoreError> {
        let marker = match &f.marker {
            Some(m) => {
                let img = self.get_image(m).await?;
                if !self.image_visible(viewer, &img).await? {
                    return Err(StoreError::not_found("marker image", m.clone()));
                }
                Some(img)
            }
            None => None,
        };
        let mut q = QueryBuilder::<Sqlite>::new(IMAGE_COLS);
        q.push(" WHERE ");
        push_visible(&mut q, viewer, f.visibility.as_deref());
        let eq = |q: &mut QueryBuilder<Sqlite>, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                q.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        };
        eq(&mut q, "name", &f.name);
        eq(&mut q, "status", &f.status);
        eq(&mut q, "visibility", &f.visibility);
        eq(&mut q, "owner", &f.owner);
        eq(&mut q, "disk_format", &f.disk_format);
        eq(&mut q, "container_format", &f.container_format);
        if f.visibility.is_none() {
            // Community images of others are listed only when asked for (glance's rule).
            if let ListViewer::Project(p) = viewer {
                q.push(" AND (visibility <> 'community' OR owner = ")
                    .push_bind(p.clone())
                    .push(")");
            }
        }
        if let Some(b) = f.protected {
            q.push(" AND protected = ").push_bind(b);
        }
        q.push(" AND os_hidden = ")
            .push_bind(f.os_hidden.unwrap_or(false));
        if let Some(n) = f.size_min {
            q.push(" AND size >= ").push_bind(n);
        }
        if let Some(n) = f.size_max {
            q.push(" AND size <= ").push_bind(n);
        }
        for tag in &f.tags {
            q.push(" AND id IN (SELECT image_id FROM image_tags WHERE tag = ")
                .push_bind(tag.clone())
                .push(")");
        }
        let key = f.sort_key.expr();
        let (cmp, dir) = match f.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        if let Some(m) = &marker {
            q.push(format!(" AND ({key} {cmp} "));
            push_key_value(&mut q, f.sort_key, m);
            q.push(format!(" OR ({key} = "));
            push_key_value(&mut q, f.sort_key, m);
            q.push(format!(" AND id {cmp} "))
                .push_bind(m.id.clone())
                .push("))");
        }
        q.push(format!(" ORDER BY {key} {dir}, id {dir} LIMIT "))
            .push_bind(i64::from(f.limit));
        let mut images: Vec<Image> = q.build_query_as().fetch_all(self.pool()).await?;
        self.load_tags(&mut images).await?;
        Ok(images)
    }

    async fn load_tags(&self, images: &mut [Image]) -> Result<(), StoreError> {
        if images.is_empty() {
            return Ok(());
        }
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT image_id, tag FROM image_tags WHERE image_id IN (");
        let mut sep = q.separated(", ");
        for img in images.iter() {
            sep.push_bind(img.id.clone());
        }
        q.push(") ORDER BY tag");
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(self.pool()).await?;
        for (id, tag) in rows {
            if let Some(img) = images.iter_mut().find(|i| i.id == id) {
                img.tags.push(tag);
            }
        }
        Ok(())
    }
}

/// Binds the marker image's value of the sort key, folded as [`SortKey::expr`] folds it.
fn push_key_value(q: &mut QueryBuilder<Sqlite>, key: SortKey, m: &Image) {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match key {
        SortKey::CreatedAt => q.push_bind(m.created_at),
        SortKey::UpdatedAt => q.push_bind(m.updated_at),
        SortKey::Name => q.push_bind(text(&m.name)),
        SortKey::Status => q.push_bind(m.status.clone()),
        SortKey::Size => q.push_bind(m.size.unwrap_or(-1)),
        SortKey::Id => q.push_bind(m.id.clone()),
        SortKey::DiskFormat => q.push_bind(text(&m.disk_format)),
        SortKey::ContainerFormat => q.push_bind(text(&m.container_format)),
        SortKey::Visibility => q.push_bind(m.visibility.clone()),
        SortKey::Owner => q.push_bind(m.owner.clone()),
        SortKey::MinRam => q.push_bind(m.min_ram),
        SortKey::MinDisk => q.push_bind(m.min_disk),
    };
}
