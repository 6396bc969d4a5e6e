-- Identity: domains, projects, users, roles and their assignments, the service catalog, and
-- token revocation events. Portable SQL (SQLite now, PostgreSQL later): TEXT ids, BIGINT times
-- in microseconds since the Unix epoch, BOOLEAN flags, JSON kept as TEXT.

CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    extra       TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    domain_id   TEXT NOT NULL REFERENCES domains (id),
    parent_id   TEXT,
    description TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    extra       TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    domain_id          TEXT NOT NULL REFERENCES domains (id),
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    password_hash      TEXT,
    default_project_id TEXT,
    extra              TEXT NOT NULL DEFAULT '{}',
    created_at         BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

-- Global roles only (keystone's domain-specific roles are not supported).
CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    extra       TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

-- admin implies member implies reader (keystone-manage bootstrap sets the same rules).
CREATE TABLE implied_roles (
    prior_role_id   TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    implied_role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

-- target_kind is 'project' or 'domain'; target_id is then a projects.id or domains.id.
CREATE TABLE role_assignments (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    role_id     TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, target_kind, target_id, role_id)
);
CREATE INDEX role_assignments_target ON role_assignments (target_kind, target_id);

CREATE TABLE regions (
    id               TEXT PRIMARY KEY,
    description      TEXT NOT NULL DEFAULT '',
    parent_region_id TEXT REFERENCES regions (id),
    extra            TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE services (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    extra       TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE endpoints (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    region_id  TEXT REFERENCES regions (id),
    interface  TEXT NOT NULL,
    url        TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    extra      TEXT NOT NULL DEFAULT '{}'
);

-- A token matches an event when every non-null column matches and it was issued at or before
-- issued_before. Rows older than the longest token lifetime are pruned.
CREATE TABLE revocation_events (
    id            TEXT PRIMARY KEY,
    audit_id      TEXT,
    user_id       TEXT,
    project_id    TEXT,
    issued_before BIGINT NOT NULL,
    revoked_at    BIGINT NOT NULL
);
CREATE INDEX revocation_events_revoked_at ON revocation_events (revoked_at);
