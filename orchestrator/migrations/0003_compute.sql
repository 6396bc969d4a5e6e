-- Compute: flavors, key pairs, quotas, compute hosts (one row per compute service) and servers.
-- Portable SQL as in 0001: TEXT ids, BIGINT microsecond times, BOOLEAN flags, JSON as TEXT.

CREATE TABLE flavors (
    id          TEXT PRIMARY KEY,          -- the flavor id clients see ("1", a UUID, ...)
    name        TEXT NOT NULL UNIQUE,
    vcpus       BIGINT NOT NULL,
    ram_mb      BIGINT NOT NULL,
    disk_gb     BIGINT NOT NULL,
    ephemeral_gb BIGINT NOT NULL DEFAULT 0,
    swap_mb     BIGINT NOT NULL DEFAULT 0,
    rxtx_factor DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    is_public   BOOLEAN NOT NULL DEFAULT TRUE,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    extra_specs TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

-- Nova's defaults, plus one sized for the tiny test guest (64 MiB, no disk).
INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gb, created_at) VALUES
    ('1', 'm1.tiny', 1, 512, 1, 0),
    ('2', 'm1.small', 1, 2048, 20, 0),
    ('3', 'm1.medium', 2, 4096, 40, 0),
    ('4', 'm1.large', 4, 8192, 80, 0),
    ('tiny-guest', 'tiny-guest.64M', 1, 64, 0, 0);

CREATE TABLE keypairs (
    seq         INTEGER PRIMARY KEY,       -- the integer `id` nova shows
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

-- Per-project hard limits; a missing row means the configured default.
CREATE TABLE compute_quotas (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);

-- One row per compute service (a virgad with the compute role). The *_used columns are the
-- scheduler's claims, changed only by conditional UPDATEs so two schedulers never overcommit.
CREATE TABLE compute_hosts (
    seq               INTEGER PRIMARY KEY,  -- the integer id of os-hypervisors / os-services
    host              TEXT NOT NULL UNIQUE,
    vcpus             BIGINT NOT NULL,
    memory_mb         BIGINT NOT NULL,
    disk_gb           BIGINT NOT NULL,
    vcpus_used        BIGINT NOT NULL DEFAULT 0,
    memory_mb_used    BIGINT NOT NULL DEFAULT 0,
    disk_gb_used      BIGINT NOT NULL DEFAULT 0,
    running_vms       BIGINT NOT NULL DEFAULT 0,
    cpu_ratio         DOUBLE PRECISION NOT NULL,
    ram_ratio         DOUBLE PRECISION NOT NULL,
    disk_ratio        DOUBLE PRECISION NOT NULL,
    availability_zone TEXT NOT NULL,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason   TEXT,
    heartbeat_at      BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);

CREATE TABLE servers (
    id                TEXT PRIMARY KEY,     -- UUID with dashes, as nova shows it
    seq               INTEGER NOT NULL UNIQUE, -- instance-%08x
    name              TEXT NOT NULL,
    project_id        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    image_id          TEXT NOT NULL,
    flavor_id         TEXT NOT NULL,        -- no foreign key: a flavor may go, its servers stay
    vcpus             BIGINT NOT NULL,
    ram_mb            BIGINT NOT NULL,
    disk_gb           BIGINT NOT NULL,
    key_name          TEXT,
    user_data         TEXT,                 -- base64, as given
    metadata          TEXT NOT NULL DEFAULT '{}',
    availability_zone TEXT,
    reservation_id    TEXT NOT NULL,
    launch_index      BIGINT NOT NULL DEFAULT 0,
    access_ipv4       TEXT NOT NULL DEFAULT '',
    access_ipv6       TEXT NOT NULL DEFAULT '',
    disk_config       TEXT NOT NULL DEFAULT 'MANUAL',
    host              TEXT,
    claimed           BOOLEAN NOT NULL DEFAULT FALSE,
    vm_state          TEXT NOT NULL,
    task_state        TEXT,
    power_state       BIGINT NOT NULL DEFAULT 0,
    pid               BIGINT,
    fault             TEXT,                 -- JSON {code, message, details, created}
    launched_at       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id);
CREATE INDEX servers_host ON servers (host);
