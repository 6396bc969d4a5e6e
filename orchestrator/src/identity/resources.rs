//! Domains, projects and users.

use super::{Domain, Project, User, password};
use crate::store::{Store, StoreError, now_micros};

const DOMAIN_COLS: &str = "SELECT id, name, description, enabled, extra FROM domains";
const PROJECT_COLS: &str =
    "SELECT id, name, domain_id, parent_id, description, enabled, extra FROM projects";
const USER_COLS: &str = "SELECT id, name, domain_id, enabled, default_project_id, extra FROM users";

/// Filters of a project list (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct ProjectFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Owning domain.
    pub domain_id: Option<String>,
    /// Enabled or not.
    pub enabled: Option<bool>,
    /// Only projects where this user has a role.
    pub user_id: Option<String>,
}

/// Filters of a user list (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Owning domain.
    pub domain_id: Option<String>,
    /// Enabled or not.
    pub enabled: Option<bool>,
}

impl Store {
    /// Creates a domain; `Conflict` when the name is taken.
    pub async fn create_domain(&self, d: &Domain) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO domains (id, name, description, enabled, extra, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.description)
        .bind(d.enabled)
        .bind(d.extra.to_text())
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || format!("a domain named '{}' exists", d.name))
        })?;
        Ok(())
    }

    /// The domain with this id.
    pub async fn get_domain(&self, id: &str) -> Result<Domain, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{DOMAIN_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("domain", id))
    }

    /// Domains, optionally only the one with this name.
    pub async fn list_domains(&self, name: Option<&str>) -> Result<Vec<Domain>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DOMAIN_COLS} WHERE ($1 IS NULL OR name = $1) ORDER BY name"
        )))
        .bind(name)
        .fetch_all(self.pool())
        .await?)
    }

    /// The domain with this name.
    pub async fn find_domain_by_name(&self, name: &str) -> Result<Domain, StoreError> {
        first(self.list_domains(Some(name)).await?, "domain", name)
    }

    /// Writes every column of an existing domain.
    pub async fn update_domain(&self, d: &Domain) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE domains SET name = $2, description = $3, enabled = $4, extra = $5 WHERE id = $1",
        )
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.description)
        .bind(d.enabled)
        .bind(d.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || format!("a domain named '{}' exists", d.name))
        })?;
        found(r.rows_affected(), "domain", &d.id)
    }

    /// Deletes a domain; `Conflict` while projects or users remain in it.
    pub async fn delete_domain(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM domains WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| in_use(e, || format!("domain {id} still has projects or users")))?;
        found(r.rows_affected(), "domain", id)
    }

    /// Creates a project; `Conflict` when its name is taken in its domain.
    pub async fn create_project(&self, p: &Project) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO projects
                (id, name, domain_id, parent_id, description, enabled, extra, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.domain_id)
        .bind(&p.parent_id)
        .bind(&p.description)
        .bind(p.enabled)
        .bind(p.extra.to_text())
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!(
                    "a project named '{}' exists in domain {}",
                    p.name, p.domain_id
                )
            })
        })?;
        Ok(())
    }

    /// The project with this id.
    pub async fn get_project(&self, id: &str) -> Result<Project, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{PROJECT_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("project", id))
    }

    /// Projects matching the filter, by name.
    pub async fn list_projects(&self, f: &ProjectFilter) -> Result<Vec<Project>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{PROJECT_COLS} WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR domain_id = $2)
               AND ($3 IS NULL OR enabled = $3)
               AND ($4 IS NULL OR id IN (SELECT target_id FROM role_assignments
                                         WHERE target_kind = 'project' AND user_id = $4))
             ORDER BY name"
        )))
        .bind(&f.name)
        .bind(&f.domain_id)
        .bind(f.enabled)
        .bind(&f.user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The project with this name in this domain.
    pub async fn find_project(&self, domain_id: &str, name: &str) -> Result<Project, StoreError> {
        let f = ProjectFilter {
            name: Some(name.to_string()),
            domain_id: Some(domain_id.to_string()),
            ..Default::default()
        };
        first(self.list_projects(&f).await?, "project", name)
    }

    /// Writes every column of an existing project.
    pub async fn update_project(&self, p: &Project) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE projects SET name = $2, description = $3, enabled = $4, extra = $5
             WHERE id = $1",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.enabled)
        .bind(p.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!(
                    "a project named '{}' exists in domain {}",
                    p.name, p.domain_id
                )
            })
        })?;
        found(r.rows_affected(), "project", &p.id)
    }

    /// Deletes a project and the role assignments on it.
    pub async fn delete_project(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM role_assignments WHERE target_kind = 'project' AND target_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        found(r.rows_affected(), "project", id)?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a user with an optional password (hashed here with argon2).
    pub async fn create_user(&self, u: &User, password: Option<&str>) -> Result<(), StoreError> {
        let hash = match password {
            Some(p) => Some(password::hash_password_blocking(p.to_string()).await?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO users
                (id, name, domain_id, enabled, password_hash, default_project_id, extra, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.domain_id)
        .bind(u.enabled)
        .bind(hash)
        .bind(&u.default_project_id)
        .bind(u.extra.to_text())
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!("a user named '{}' exists in domain {}", u.name, u.domain_id)
            })
        })?;
        Ok(())
    }

    /// The user with this id.
    pub async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{USER_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("user", id))
    }

    /// Users matching the filter, by name.
    pub async fn list_users(&self, f: &UserFilter) -> Result<Vec<User>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{USER_COLS} WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR domain_id = $2)
               AND ($3 IS NULL OR enabled = $3) ORDER BY name"
        )))
        .bind(&f.name)
        .bind(&f.domain_id)
        .bind(f.enabled)
        .fetch_all(self.pool())
        .await?)
    }

    /// The user with this name in this domain.
    pub async fn find_user(&self, domain_id: &str, name: &str) -> Result<User, StoreError> {
        let f = UserFilter {
            name: Some(name.to_string()),
            domain_id: Some(domain_id.to_string()),
            ..Default::default()
        };
        first(self.list_users(&f).await?, "user", name)
    }

    /// Writes every column of an existing user but its password.
    pub async fn update_user(&self, u: &User) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE users SET name = $2, enabled = $3, default_project_id = $4, extra = $5
             WHERE id = $1",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(u.enabled)
        .bind(&u.default_project_id)
        .bind(u.extra.to_text())
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_or(e, || {
                format!("a user named '{}' exists in domain {}", u.name, u.domain_id)
            })
        })?;
        found(r.rows_affected(), "user", &u.id)
    }

    /// Replaces a user's password.
    pub async fn set_password(&self, user_id: &str, password: &str) -> Result<(), StoreError> {
        let hash = password::hash_password_blocking(password.to_string()).await?;
        let r = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(hash)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "user", user_id)
    }

    /// Spends one password verification's time and answers false: for unknown users.
    pub async fn check_password_of_nobody(&self, password: &str) -> Result<bool, StoreError> {
        let p = password.to_string();
        tokio::task::spawn_blocking(move || password::burn_verification(&p))
            .await
            .map_err(|e| password::PasswordError::Task(e.to_string()))?;
        Ok(false)
    }

    /// Whether `password` is the user's password (false when the user has none).
    pub async fn check_password(&self, user_id: &str, password: &str) -> Result<bool, StoreError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        match hash.flatten() {
            Some(h) => password::verify_password_blocking(password.to_string(), h).await,
            None => Ok(false),
        }
    }

    /// Deletes a user (and, by cascade, their role assignments).
    pub async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        found(r.rows_affected(), "user", id)
    }
}

/// The first of `rows`, or `NotFound` of `kind` named `name`.
pub(crate) fn first<T>(rows: Vec<T>, kind: &'static str, name: &str) -> Result<T, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::not_found(kind, name))
}

/// `NotFound` when an UPDATE or DELETE touched no row.
pub(crate) fn found(rows: u64, kind: &'static str, id: &str) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::not_found(kind, id))
    } else {
        Ok(())
    }
}

/// A foreign-key violation on delete means the row is still referenced.
pub(crate) fn in_use(err: sqlx::Error, msg: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Conflict(msg()),
        _ => StoreError::Db(err),
    }
}
