//! `/v3/auth/tokens`: issue (password and token methods), validate, check and revoke; and the
//! `/v3/auth/{projects,domains,catalog}` helpers clients use after authenticating.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use orchestrator::StoreError;
use orchestrator::identity::{ProjectFilter, RevocationEvent, Target, User};
use orchestrator::store::now_micros;
use serde::Deserialize;
use serde_json::{Value, json};

use super::render;
use crate::auth::Auth;
use crate::auth::token::{Claims, TokenRole, new_audit_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

/// The header naming the token a request is about (and carrying a new token).
pub const SUBJECT_HEADER: &str = "x-subject-token";

#[derive(Deserialize)]
pub(super) struct AuthRequest {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    identity: IdentityBody,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Deserialize)]
struct IdentityBody {
    methods: Vec<String>,
    password: Option<PasswordMethod>,
    token: Option<TokenMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: UserRef,
}

#[derive(Deserialize)]
struct UserRef {
    id: Option<String>,
    name: Option<String>,
    domain: Option<DomainRef>,
    password: String,
}

#[derive(Deserialize)]
struct DomainRef {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct ProjectRef {
    id: Option<String>,
    name: Option<String>,
    domain: Option<DomainRef>,
}

#[derive(Deserialize)]
struct TokenMethod {
    id: String,
}

#[derive(Deserialize)]
pub(super) struct CatalogQuery {
    nocatalog: Option<String>,
}

fn auth_failed() -> ApiError {
    ApiError::unauthorized("The request you have made requires authentication.")
}

/// `POST /v3/auth/tokens`.
pub(super) async fn issue(
    State(st): State<AppState>,
    BaseUrl(_base): BaseUrl,
    Query(q): Query<CatalogQuery>,
    JsonBody(req): JsonBody<AuthRequest>,
) -> ApiResult<Response> {
    let id = req.auth.identity;
    if id.methods.is_empty() {
        return Err(ApiError::bad_request(
            "auth.identity.methods must not be empty.",
        ));
    }
    let now = now_micros();
    let lifetime = i64::try_from(st.config().token.expiration)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    let (user, mut expires_at, mut audit_ids, methods) =
        if id.methods.iter().any(|m| m == "password") {
            let p = id
                .password
                .ok_or_else(|| ApiError::bad_request("auth.identity.password is missing."))?;
            let user = password_user(&st, p.user).await?;
            (
                user,
                now + lifetime,
                Vec::new(),
                vec!["password".to_string()],
            )
        } else if id.methods.iter().any(|m| m == "token") {
            let t = id
                .token
                .ok_or_else(|| ApiError::bad_request("auth.identity.token is missing."))?;
            let old = st.check_token(&t.id)?;
            let user = enabled_user(&st, &old.user_id).await?;
            // A rescoped token lives no longer than the one it came from and carries its audit id.
            let parent = old.audit_ids.first().cloned().into_iter().collect();
            let mut methods = old.methods.clone();
            if !methods.iter().any(|m| m == "token") {
                methods.push("token".into());
            }
            (user, old.expires_at, parent, methods)
        } else {
            return Err(ApiError::unauthorized(format!(
                "Unsupported authentication methods {:?}; use password or token.",
                id.methods
            )));
        };
    expires_at = expires_at.min(now + lifetime);
    audit_ids.insert(0, new_audit_id().map_err(ApiError::internal)?);

    let (project_id, domain_id, target) = resolve_scope(&st, &user, req.auth.scope).await?;
    let roles = match &target {
        Some(t) => {
            let roles = st.store().effective_roles(&user.id, t).await?;
            if roles.is_empty() {
                return Err(ApiError::unauthorized(format!(
                    "User {} has no access to the requested scope.",
                    user.id
                )));
            }
            roles
        }
        None => Vec::new(),
    };
    let claims = Claims {
        user_id: user.id.clone(),
        project_id,
        domain_id,
        roles: roles
            .into_iter()
            .map(|r| TokenRole {
                id: r.id,
                name: r.name,
            })
            .collect(),
        methods,
        issued_at: now,
        expires_at,
        audit_ids,
    };
    let token = st.keys().seal(&claims).map_err(ApiError::internal)?;
    let body = token_body(&st, &claims, q.nocatalog.is_none()).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        SUBJECT_HEADER,
        HeaderValue::from_str(&token).map_err(ApiError::internal)?,
    );
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

async fn password_user(st: &AppState, u: UserRef) -> ApiResult<User> {
    let found = match (u.id, u.name) {
        (Some(id), _) => st.store().get_user(&id).await,
        (None, Some(name)) => {
            let d = u
                .domain
                .ok_or_else(|| ApiError::bad_request("A user given by name needs its domain."))?;
            let domain_id = domain_id_of(st, d).await?;
            st.store().find_user(&domain_id, &name).await
        }
        (None, None) => return Err(ApiError::bad_request("The user needs an id or a name.")),
    };
    let user = match found {
        Ok(user) => user,
        Err(StoreError::NotFound { .. }) => {
            st.store().check_password_of_nobody(&u.password).await?;
            return Err(auth_failed());
        }
        Err(e) => return Err(e.into()),
    };
    if !st.store().check_password(&user.id, &u.password).await? {
        tracing::info!(user = %user.id, "password authentication failed");
        return Err(auth_failed());
    }
    enabled_user(st, &user.id).await
}

/// The user if it and its domain are enabled, else 401.
async fn enabled_user(st: &AppState, user_id: &str) -> ApiResult<User> {
    let user = match st.store().get_user(user_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound { .. }) => return Err(auth_failed()),
        Err(e) => return Err(e.into()),
    };
    let domain = st.store().get_domain(&user.domain_id).await?;
    if !user.enabled || !domain.enabled {
        return Err(ApiError::unauthorized(format!(
            "User {} is disabled.",
            user.id
        )));
    }
    Ok(user)
}

async fn domain_id_of(st: &AppState, d: DomainRef) -> ApiResult<String> {
    let domain = match (d.id, d.name) {
        (Some(id), _) => st.store().get_domain(&id).await,
        (None, Some(name)) => st.store().find_domain_by_name(&name).await,
        (None, None) => return Err(ApiError::bad_request("A domain needs an id or a name.")),
    };
    match domain {
        Ok(d) => Ok(d.id),
        Err(StoreError::NotFound { .. }) => Err(auth_failed()),
        Err(e) => Err(e.into()),
    }
}

type Scope = (Option<String>, Option<String>, Option<Target>);

async fn resolve_scope(st: &AppState, user: &User, scope: Option<Value>) -> ApiResult<Scope> {
    let scope = match scope {
        None => {
            // Like keystone: no scope asked means the default project, if the user has one.
            if let Some(p) = &user.default_project_id {
                let t = Target::Project(p.clone());
                if !st.store().effective_roles(&user.id, &t).await?.is_empty() {
                    return Ok((Some(p.clone()), None, Some(t)));
                }
            }
            return Ok((None, None, None));
        }
        Some(Value::String(s)) if s == "unscoped" => return Ok((None, None, None)),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ApiError::bad_request("auth.scope must be an object.")),
    };
    if let Some(p) = scope.get("project") {
        let p: ProjectRef = serde_json::from_value(p.clone())
            .map_err(|e| ApiError::bad_request(format!("auth.scope.project: {e}")))?;
        let project = match (p.id, p.name) {
            (Some(id), _) => st.store().get_project(&id).await,
            (None, Some(name)) => {
                let d = p.domain.ok_or_else(|| {
                    ApiError::bad_request("A project given by name needs its domain.")
                })?;
                let did = domain_id_of(st, d).await?;
                st.store().find_project(&did, &name).await
            }
            (None, None) => {
                return Err(ApiError::bad_request("The project needs an id or a name."));
            }
        };
        let project = match project {
            Ok(p) => p,
            Err(StoreError::NotFound { id, .. }) => {
                return Err(ApiError::unauthorized(format!(
                    "Could not find project: {id}."
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let domain = st.store().get_domain(&project.domain_id).await?;
        if !project.enabled || !domain.enabled {
            return Err(ApiError::unauthorized(format!(
                "Project {} is disabled.",
                project.id
            )));
        }
        let t = Target::Project(project.id.clone());
        return Ok((Some(project.id), None, Some(t)));
    }
    if let Some(d) = scope.get("domain") {
        let d: DomainRef = serde_json::from_value(d.clone())
            .map_err(|e| ApiError::bad_request(format!("auth.scope.domain: {e}")))?;
        let id = domain_id_of(st, d).await?;
        if !st.store().get_domain(&id).await?.enabled {
            return Err(ApiError::unauthorized(format!("Domain {id} is disabled.")));
        }
        return Ok((None, Some(id.clone()), Some(Target::Domain(id))));
    }
    if scope.contains_key("system") {
        return Err(ApiError::bad_request(
            "System scope is not supported; scope to a project.",
        ));
    }
    Err(ApiError::bad_request(
        "auth.scope must name a project or a domain.",
    ))
}

/// Keystone's timestamp format, e.g. `2026-01-02T03:04:05.000000Z`.
pub fn iso_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The `{"token": {...}}` body of an issue or validate answer.
async fn token_body(st: &AppState, c: &Claims, with_catalog: bool) -> ApiResult<Value> {
    let store = st.store();
    let user = store.get_user(&c.user_id).await?;
    let user_domain = store.get_domain(&user.domain_id).await?;
    let mut t = json!({
        "methods": c.methods,
        "user": {
            "id": user.id, "name": user.name, "password_expires_at": null,
            "domain": {"id": user_domain.id, "name": user_domain.name},
        },
        "audit_ids": c.audit_ids,
        "expires_at": iso_micros(c.expires_at),
        "issued_at": iso_micros(c.issued_at),
    });
    let obj = t
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("token body"))?;
    if let Some(pid) = &c.project_id {
        let p = store.get_project(pid).await?;
        let pd = store.get_domain(&p.domain_id).await?;
        obj.insert(
            "project".into(),
            json!({"id": p.id, "name": p.name, "domain": {"id": pd.id, "name": pd.name}}),
        );
        obj.insert("is_domain".into(), json!(false));
    }
    if let Some(did) = &c.domain_id {
        let d = store.get_domain(did).await?;
        obj.insert("domain".into(), json!({"id": d.id, "name": d.name}));
    }
    if c.project_id.is_some() || c.domain_id.is_some() {
        obj.insert(
            "roles".into(),
            json!(
                c.roles
                    .iter()
                    .map(|r| json!({"id": r.id, "name": r.name}))
                    .collect::<Vec<_>>()
            ),
        );
        if with_catalog {
            obj.insert("catalog".into(), render::catalog(&store.catalog().await?));
        }
    }
    Ok(json!({ "token": t }))
}

/// The subject token of a validate/check/revoke request: 404 when it is not a live token.
fn subject(st: &AppState, auth: &Auth, headers: &HeaderMap) -> ApiResult<Claims> {
    let text = headers
        .get(SUBJECT_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("The X-Subject-Token header is missing."))?;
    let claims = st
        .open_token(text)
        .map_err(|_| ApiError::not_found("Could not find token."))?;
    if claims.user_id != auth.claims.user_id {
        auth.require_admin("identity:validate_token")?;
    }
    Ok(claims)
}

/// `GET /v3/auth/tokens`.
pub(super) async fn validate(
    State(st): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<CatalogQuery>,
) -> ApiResult<Response> {
    let claims = subject(&st, &auth, &headers)?;
    let body = token_body(&st, &claims, q.nocatalog.is_none()).await?;
    let mut h = HeaderMap::new();
    if let Some(v) = headers.get(SUBJECT_HEADER) {
        h.insert(SUBJECT_HEADER, v.clone());
    }
    Ok((StatusCode::OK, h, Json(body)).into_response())
}

/// `HEAD /v3/auth/tokens`.
pub(super) async fn check(
    State(st): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    subject(&st, &auth, &headers)?;
    Ok(StatusCode::OK)
}

/// `DELETE /v3/auth/tokens`: revokes the token and every token rescoped from it.
pub(super) async fn revoke(
    State(st): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let claims = subject(&st, &auth, &headers)?;
    let audit = claims.audit_ids.first().cloned();
    st.revocations()
        .revoke(st.store(), RevocationEvent::now(audit, None, None))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/auth/projects`: projects the caller has a role on.
pub(super) async fn auth_projects(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    let f = ProjectFilter {
        user_id: Some(auth.claims.user_id.clone()),
        enabled: Some(true),
        ..Default::default()
    };
    let items = st.store().list_projects(&f).await?;
    let items = items.iter().map(|p| render::project(&base, p)).collect();
    Ok(Json(render::collection(
        "projects",
        items,
        format!("{base}/identity/v3/auth/projects"),
    )))
}

/// `GET /v3/auth/domains`: domains the caller has a role on.
pub(super) async fn auth_domains(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    for d in st.store().list_domains(None).await? {
        let t = Target::Domain(d.id.clone());
        if !st
            .store()
            .direct_roles(&auth.claims.user_id, &t)
            .await?
            .is_empty()
        {
            items.push(render::domain(&base, &d));
        }
    }
    Ok(Json(render::collection(
        "domains",
        items,
        format!("{base}/identity/v3/auth/domains"),
    )))
}

/// `GET /v3/auth/catalog`.
pub(super) async fn auth_catalog(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    _auth: Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({
        "catalog": render::catalog(&st.store().catalog().await?),
        "links": {"self": format!("{base}/identity/v3/auth/catalog"), "previous": null, "next": null},
    })))
}
