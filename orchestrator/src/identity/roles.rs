//! Roles, implied roles and role assignments.

use std::collections::BTreeMap;

use super::Role;
use super::resources::{first, found, in_use};
use crate::store::{Store, StoreError, now_micros};

const ROLE_COLS: &str = "SELECT id, name, description, extra FROM roles";

/// What a role is assigned on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A project, by id.
    Project(String),
    /// A domain, by id.
    Domain(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Project(_) => "project",
            Target::Domain(_) => "domain",
        }
    }

    fn id(&self) -> &str {
        match self {
            Target::Project(id) | Target::Domain(id) => id,
        }
    }
}

/// One role assignment: a user has a role on a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The user.
    pub user_id: String,
    /// Project or domain.
    pub target: Target,
    /// The role.
    pub role_id: String,
}

/// Filters of an assignment list (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct AssignmentFilter {
    /// Only this user.
    pub user_id: Option<String>,
    /// Only this target.
    pub target: Option<Target>,
    /// Only this role.
    pub role_id: Option<String>,
}

impl Store {
    /// Creates a role; `Conflict` when the name is taken.
    pub async fn create_role(&self, r: &Role) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO roles (id, name, description, extra, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.description)
        .bind(r.extra.to_text())
        .bind(now_micros())
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::conflict_or(e, || format!("a role named '{}' exists", r.name)))?;
        Ok(())
    }

    /// The role with this id.
    pub async fn get_role(&self, id: &str) -> Result<Role, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{ROLE_COLS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("role", id))
    }

    /// Roles, optionally only the one with this name.
    pub async fn list_roles(&self, name: Option<&str>) -> Result<Vec<Role>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ROLE_COLS} WHERE ($1 IS NULL OR name = $1) ORDER BY name"
        )))
        .bind(name)
        .fetch_all(self.pool())
        .await?)
    }

    /// The role with this name.
    pub async fn find_role(&self, name: &str) -> Result<Role, StoreError> {
        first(self.list_roles(Some(name)).await?, "role", name)
    }

    /// Writes every column of an existing role.
    pub async fn update_role(&self, r: &Role) -> Result<(), StoreError> {
        let res =
            sqlx::query("UPDATE roles SET name = $2, description = $3, extra = $4 WHERE id = $1")
                .bind(&r.id)
                .bind(&r.name)
                .bind(&r.description)
                .bind(r.extra.to_text())
                .execute(self.pool())
                .await
                .map_err(|e| {
                    StoreError::conflict_or(e, || format!("a role named '{}' exists", r.name))
                })?;
        found(res.rows_affected(), "role", &r.id)
    }

    /// Deletes a role and, by cascade, its assignments and implication rules.
    pub async fn delete_role(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| in_use(e, || format!("role {id} is in use")))?;
        found(r.rows_affected(), "role", id)
    }

    /// Records that holding `prior` also grants `implied` (idempotent).
    pub async fn add_implied_role(&self, prior: &str, implied: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO implied_roles (prior_role_id, implied_role_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(prior)
        .bind(implied)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gives a user a role on a target (idempotent).
    pub async fn grant(&self, a: &Assignment) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO role_assignments (user_id, target_kind, target_id, role_id)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&a.user_id)
        .bind(a.target.kind())
        .bind(a.target.id())
        .bind(&a.role_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes a role away; `NotFound` when the user did not have it there.
    pub async fn revoke_grant(&self, a: &Assignment) -> Result<(), StoreError> {
        let r = sqlx::query(
            "DELETE FROM role_assignments
             WHERE user_id = $1 AND target_kind = $2 AND target_id = $3 AND role_id = $4",
        )
        .bind(&a.user_id)
        .bind(a.target.kind())
        .bind(a.target.id())
        .bind(&a.role_id)
        .execute(self.pool())
        .await?;
        found(r.rows_affected(), "role assignment", &a.role_id)
    }

    /// Direct assignments matching the filter.
    pub async fn list_assignments(
        &self,
        f: &AssignmentFilter,
    ) -> Result<Vec<Assignment>, StoreError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT user_id, target_kind, target_id, role_id FROM role_assignments
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR target_kind = $2)
               AND ($3 IS NULL OR target_id = $3) AND ($4 IS NULL OR role_id = $4)
             ORDER BY user_id, target_kind, target_id, role_id",
        )
        .bind(&f.user_id)
        .bind(f.target.as_ref().map(Target::kind))
        .bind(f.target.as_ref().map(Target::id))
        .bind(&f.role_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, kind, target_id, role_id)| Assignment {
                user_id,
                target: if kind == "domain" {
                    Target::Domain(target_id)
                } else {
                    Target::Project(target_id)
                },
                role_id,
            })
            .collect())
    }

    /// Roles assigned directly to the user on the target.
    pub async fn direct_roles(
        &self,
        user_id: &str,
        target: &Target,
    ) -> Result<Vec<Role>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT r.id, r.name, r.description, r.extra FROM roles r
             JOIN role_assignments a ON a.role_id = r.id
             WHERE a.user_id = $1 AND a.target_kind = $2 AND a.target_id = $3
             ORDER BY r.name",
        )
        .bind(user_id)
        .bind(target.kind())
        .bind(target.id())
        .fetch_all(self.pool())
        .await?)
    }

    /// Roles the user holds on the target, implied ones included (what a token carries).
    pub async fn effective_roles(
        &self,
        user_id: &str,
        target: &Target,
    ) -> Result<Vec<Role>, StoreError> {
        let mut roles: BTreeMap<String, Role> = self
            .direct_roles(user_id, target)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let rules: Vec<(String, String)> =
            sqlx::query_as("SELECT prior_role_id, implied_role_id FROM implied_roles")
                .fetch_all(self.pool())
                .await?;
        // Follow the rules to a fixed point; the set only grows, so this ends.
        loop {
            let new: Vec<String> = rules
                .iter()
                .filter(|(p, i)| roles.contains_key(p) && !roles.contains_key(i))
                .map(|(_, i)| i.clone())
                .collect();
            if new.is_empty() {
                break;
            }
            for id in new {
                let role = self.get_role(&id).await?;
                roles.insert(id, role);
            }
        }
        let mut out: Vec<Role> = roles.into_values().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
