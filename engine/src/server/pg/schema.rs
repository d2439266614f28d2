//! The schema, as numbered migrations applied at start.
//!
//! `schema_migrations` lists the versions applied. Opening applies the missing ones, each in
//! the transaction that records it, under a lock on that table (servers starting together
//! apply each migration once), and refuses a database whose schema is newer than this build.
//!
//! Tables are meant to be read by people: typed columns for everything a query filters,
//! sorts or joins on (ids, app, job, status, times, names), `jsonb` for the nested workflow
//! definitions and snapshots. The full record of a job, an instance, a workflow instance, an
//! alarm and a channel is kept too, in `record`, in the versioned and validated encoding of
//! the log store, so that every field round-trips exactly and a bad value is a typed error.
//!
//! Ready for several servers: every instance row carries `partition` (0 for a single
//! server), a `leases` table holds a partition's owner and epoch, and a scheduled fire is
//! unique per (job, trigger time) (`instances_fire_unique`), so two servers can never both
//! fire one trigger.

/// The migrations, in order: (version, SQL).
pub(super) const MIGRATIONS: &[(i32, &str)] = &[(1, V1)];

/// The newest schema version this build knows.
pub(super) const LATEST: i32 = 1;

const V1: &str = r#"
CREATE TABLE counters (
    name text PRIMARY KEY,
    next bigint NOT NULL
);
COMMENT ON TABLE counters IS 'id high-water marks (ids below next may have been handed out)';

CREATE TABLE apps (
    id bigint PRIMARY KEY,
    name text NOT NULL UNIQUE,
    secret text NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE jobs (
    id bigint PRIMARY KEY,
    app_id bigint NOT NULL,
    name text NOT NULL,
    enabled boolean NOT NULL,
    time_expression_type text NOT NULL,
    time_expression text NOT NULL,
    execute_type text NOT NULL,
    processor text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX jobs_app ON jobs (app_id, id);

CREATE TABLE triggers (
    job_id bigint PRIMARY KEY,
    next_trigger bigint,
    runs bigint NOT NULL
);

CREATE TABLE instances (
    id bigint PRIMARY KEY,
    partition integer NOT NULL DEFAULT 0,
    app_id bigint NOT NULL,
    job_id bigint NOT NULL,
    run bigint NOT NULL,
    status text NOT NULL,
    final boolean NOT NULL,
    trigger_time bigint NOT NULL,
    finished_time bigint,
    worker text,
    record bytea NOT NULL
);
CREATE INDEX instances_app ON instances (app_id, id DESC);
CREATE INDEX instances_job ON instances (job_id, id DESC);
CREATE INDEX instances_active ON instances (id) WHERE NOT final;
CREATE UNIQUE INDEX instances_fire_unique ON instances (job_id, trigger_time) WHERE run > 0;

CREATE TABLE delayed_runs (
    instance_id bigint PRIMARY KEY,
    job_id bigint NOT NULL,
    due bigint NOT NULL
);

CREATE TABLE logs (
    instance_id bigint NOT NULL,
    seq bigint NOT NULL,
    time bigint NOT NULL,
    level text NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

CREATE TABLE workflows (
    id bigint PRIMARY KEY,
    app_id bigint NOT NULL,
    name text NOT NULL,
    version bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX workflows_app ON workflows (app_id, id);

CREATE TABLE workflow_versions (
    workflow_id bigint NOT NULL,
    version bigint NOT NULL,
    definition jsonb NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE workflow_triggers (
    workflow_id bigint PRIMARY KEY,
    next_trigger bigint,
    runs bigint NOT NULL
);

CREATE TABLE workflow_instances (
    id bigint PRIMARY KEY,
    partition integer NOT NULL DEFAULT 0,
    app_id bigint NOT NULL,
    workflow_id bigint NOT NULL,
    version bigint NOT NULL,
    run bigint NOT NULL,
    finished boolean NOT NULL,
    delayed_until bigint,
    snapshot jsonb NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX workflow_instances_app ON workflow_instances (app_id, id DESC);
CREATE INDEX workflow_instances_workflow ON workflow_instances (workflow_id, id DESC);
CREATE INDEX workflow_instances_active ON workflow_instances (id) WHERE NOT finished;

CREATE TABLE node_links (
    instance_id bigint PRIMARY KEY,
    workflow_instance_id bigint NOT NULL,
    node bigint NOT NULL,
    attempt bigint NOT NULL,
    context text NOT NULL
);

CREATE TABLE alarms (
    app_id bigint NOT NULL,
    seq bigint NOT NULL,
    pending boolean NOT NULL,
    alarm_id text NOT NULL,
    job_id bigint NOT NULL,
    instance_id bigint,
    kind text NOT NULL,
    raised_at bigint NOT NULL,
    status text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (app_id, seq)
);
CREATE INDEX alarms_pending ON alarms (app_id, seq) WHERE pending;

CREATE TABLE channels (
    app_id bigint NOT NULL,
    name text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    url text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE leases (
    partition integer PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz
);
COMMENT ON TABLE leases IS 'which server owns a partition, and its fencing epoch';
"#;
