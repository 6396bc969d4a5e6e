//! `virgad bootstrap`, like `keystone-manage bootstrap`: the default domain, the roles `admin`,
//! `member` and `reader` (admin implies member implies reader), an admin project and user with
//! the admin role on it, a region and the catalog entries of the services this daemon serves.
//! Running it again changes nothing but the admin password and endpoint URLs given.

use super::{
    Assignment, DEFAULT_DOMAIN_ID, Domain, Endpoint, Extra, Project, Region, Role, Service, Target,
    User,
};
use crate::store::{Store, StoreError, new_id};

/// Services the daemon can put in the catalog: (type, name, path under the public URL).
pub const KNOWN_SERVICES: [(&str, &str, &str); 3] = [
    ("identity", "keystone", "/identity"),
    ("image", "glance", "/image"),
    ("compute", "nova", "/compute/v2.1"),
];

/// What to bootstrap.
#[derive(Clone, Debug)]
pub struct BootstrapSpec {
    /// Admin user name.
    pub admin_user: String,
    /// Admin password (set again when the user exists).
    pub admin_password: String,
    /// Admin project name.
    pub admin_project: String,
    /// Region id for the endpoints.
    pub region: String,
    /// Base URL clients reach this daemon at, e.g. `http://127.0.0.1:5000`.
    pub public_url: String,
    /// Service types to put in the catalog (from [`KNOWN_SERVICES`]).
    pub services: Vec<String>,
}

/// Ids of what bootstrap made or found.
#[derive(Clone, Debug)]
pub struct BootstrapReport {
    /// The admin user.
    pub user_id: String,
    /// The admin project.
    pub project_id: String,
    /// The admin role.
    pub admin_role_id: String,
}

impl Store {
    /// Creates what is missing of `spec` (see the module doc).
    pub async fn bootstrap(&self, spec: &BootstrapSpec) -> Result<BootstrapReport, StoreError> {
        if let Err(StoreError::NotFound { .. }) = self.get_domain(DEFAULT_DOMAIN_ID).await {
            self.create_domain(&Domain {
                id: DEFAULT_DOMAIN_ID.into(),
                name: "Default".into(),
                description: "The default domain".into(),
                enabled: true,
                extra: Extra::default(),
            })
            .await?;
        }
        let admin = self.ensure_role("admin").await?;
        let member = self.ensure_role("member").await?;
        let reader = self.ensure_role("reader").await?;
        self.add_implied_role(&admin.id, &member.id).await?;
        self.add_implied_role(&member.id, &reader.id).await?;

        let project = match self
            .find_project(DEFAULT_DOMAIN_ID, &spec.admin_project)
            .await
        {
            Ok(p) => p,
            Err(StoreError::NotFound { .. }) => {
                let p = Project {
                    id: new_id(),
                    name: spec.admin_project.clone(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    parent_id: None,
                    description: "Bootstrap project for initializing the cloud.".into(),
                    enabled: true,
                    extra: Extra::default(),
                };
                self.create_project(&p).await?;
                p
            }
            Err(e) => return Err(e),
        };
        let user = match self.find_user(DEFAULT_DOMAIN_ID, &spec.admin_user).await {
            Ok(u) => {
                self.set_password(&u.id, &spec.admin_password).await?;
                u
            }
            Err(StoreError::NotFound { .. }) => {
                let u = User {
                    id: new_id(),
                    name: spec.admin_user.clone(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    enabled: true,
                    default_project_id: None,
                    extra: Extra::default(),
                };
                self.create_user(&u, Some(&spec.admin_password)).await?;
                u
            }
            Err(e) => return Err(e),
        };
        self.grant(&Assignment {
            user_id: user.id.clone(),
            target: Target::Project(project.id.clone()),
            role_id: admin.id.clone(),
        })
        .await?;

        if let Err(StoreError::NotFound { .. }) = self.get_region(&spec.region).await {
            self.create_region(&Region {
                id: spec.region.clone(),
                description: String::new(),
                parent_region_id: None,
                extra: Extra::default(),
            })
            .await?;
        }
        let base = spec.public_url.trim_end_matches('/');
        for (stype, name, path) in KNOWN_SERVICES {
            if spec.services.iter().any(|s| s == stype) {
                self.ensure_service(stype, name, &format!("{base}{path}"), &spec.region)
                    .await?;
            }
        }
        tracing::info!(user = %user.id, project = %project.id, "bootstrap complete");
        Ok(BootstrapReport {
            user_id: user.id,
            project_id: project.id,
            admin_role_id: admin.id,
        })
    }

    async fn ensure_role(&self, name: &str) -> Result<Role, StoreError> {
        match self.find_role(name).await {
            Err(StoreError::NotFound { .. }) => {
                let r = Role {
                    id: new_id(),
                    name: name.into(),
                    description: String::new(),
                    extra: Extra::default(),
                };
                self.create_role(&r).await?;
                Ok(r)
            }
            other => other,
        }
    }

    /// One service of this type, with public, internal and admin endpoints at `url`.
    async fn ensure_service(
        &self,
        stype: &str,
        name: &str,
        url: &str,
        region: &str,
    ) -> Result<(), StoreError> {
        let service = match self
            .list_services(None, Some(stype))
            .await?
            .into_iter()
            .next()
        {
            Some(s) => s,
            None => {
                let s = Service {
                    id: new_id(),
                    service_type: stype.into(),
                    name: name.into(),
                    description: String::new(),
                    enabled: true,
                    extra: Extra::default(),
                };
                self.create_service(&s).await?;
                s
            }
        };
        for interface in super::INTERFACES {
            let existing = self
                .list_endpoints(Some(&service.id), Some(interface), Some(region))
                .await?;
            match existing.into_iter().next() {
                Some(mut e) if e.url != url => {
                    e.url = url.into();
                    self.update_endpoint(&e).await?;
                }
                Some(_) => {}
                None => {
                    self.create_endpoint(&Endpoint {
                        id: new_id(),
                        service_id: service.id.clone(),
                        region_id: Some(region.into()),
                        interface: interface.into(),
                        url: url.into(),
                        enabled: true,
                        extra: Extra::default(),
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            admin_user: "admin".into(),
            admin_password: "pw1".into(),
            admin_project: "admin".into(),
            region: "RegionOne".into(),
            public_url: "http://127.0.0.1:5000/".into(),
            services: vec!["identity".into(), "image".into()],
        }
    }

    #[tokio::test]
    async fn bootstrap_is_idempotent_and_resets_password() {
        let store = Store::open_url("sqlite::memory:").await.unwrap();
        let first = store.bootstrap(&spec()).await.unwrap();
        let mut again = spec();
        again.admin_password = "pw2".into();
        let second = store.bootstrap(&again).await.unwrap();
        assert_eq!(first.user_id, second.user_id);
        assert!(store.check_password(&first.user_id, "pw2").await.unwrap());
        assert!(!store.check_password(&first.user_id, "pw1").await.unwrap());
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 2);
        for (svc, eps) in &catalog {
            assert_eq!(eps.len(), 3, "{}", svc.service_type);
        }
        let image = catalog
            .iter()
            .find(|(s, _)| s.service_type == "image")
            .unwrap();
        assert_eq!(image.1[0].url, "http://127.0.0.1:5000/image");
        // admin implies member implies reader.
        let roles = store
            .effective_roles(&first.user_id, &Target::Project(first.project_id.clone()))
            .await
            .unwrap();
        let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["admin", "member", "reader"]);
    }
}
