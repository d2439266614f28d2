//! The schema, as numbered migrations applied at start.
//!
//! `schema_migrations` lists the versions applied. Opening applies the missing ones (every
//! version not listed, in order, also one below the newest listed), each in
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

//!
//! A migration, once released, never changes: a later schema is a new version.
//!
//! | version | adds |
//! |---|---|
//! | 1 | apps, jobs, triggers, instances, delayed runs, logs, workflows, alarms, channels, leases |
//! | 2 | jobs' retry backoff, overlap policy and log settings; log lines' attempt and fields; API tokens; the previous worker secret of a rotation |
//! | 3 | job definition versions; the audit trail |
//! | 4 | calendars; the calendars a job names |
//! | 5 | `Idempotency-Key` answers |
//! | 6 | workflow instances' logical trigger time |
//! | 7 | cluster membership (`cluster_servers`); when a lease was acquired and renewed |
//! | 8 | each server's advertised HTTP URL; the cluster's forwarding key (`cluster_settings`) |

/// The migrations, in order: (version, SQL).
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
];

/// The newest schema version this build knows.
pub(super) const LATEST: i32 = 8;

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

/// Version 2. The new job columns mirror fields of the record (which stays the source of
/// truth); a row written by version 1 gets the values its record decodes with (the
/// defaults). `retry_backoff` is the API's JSON form of the backoff. `fields` is the line's
/// structured fields as a JSON array of `{"key", "value"}` objects, in the processor's
/// order. A token row holds the SHA-256 of the token, never the token.
const V2: &str = r#"
ALTER TABLE jobs
    ADD COLUMN overlap_policy text NOT NULL DEFAULT 'FAIL',
    ADD COLUMN retry_backoff jsonb NOT NULL
        DEFAULT '{"shape":"EXPONENTIAL","initial_delay_ms":1000,"factor":2.0,"max_delay_ms":30000,"jitter":0.0}',
    ADD COLUMN log_type text NOT NULL DEFAULT 'ONLINE',
    ADD COLUMN log_level text NOT NULL DEFAULT 'INFO';

ALTER TABLE logs
    ADD COLUMN attempt bigint NOT NULL DEFAULT 0,
    ADD COLUMN fields jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN logs.attempt IS 'the dispatch attempt that wrote the line (1 for the first); 0 = unknown';

CREATE TABLE api_tokens (
    id bigint PRIMARY KEY,
    app_id bigint NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    hash bytea NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint
);
CREATE INDEX api_tokens_app ON api_tokens (app_id, id);
COMMENT ON COLUMN api_tokens.hash IS 'SHA-256 of the token';

CREATE TABLE app_previous_secrets (
    app_id bigint PRIMARY KEY,
    secret text NOT NULL,
    valid_until bigint NOT NULL
);
COMMENT ON TABLE app_previous_secrets IS 'the worker secret a rotation replaced, accepted until valid_until (ms, exclusive)';
"#;

/// Version 3. A job version's `record` is the job record in the log store's encoding, like
/// `jobs.record`; `updated_at` is when the version was made. Audit rows are numbered per app
/// (`seq`), newest kept.
const V3: &str = r#"
CREATE TABLE job_versions (
    job_id bigint NOT NULL,
    version bigint NOT NULL,
    updated_at bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (job_id, version)
);
COMMENT ON TABLE job_versions IS 'the newest definitions of each job (the current one included)';

CREATE TABLE audit (
    app_id bigint NOT NULL,
    seq bigint NOT NULL,
    time bigint NOT NULL,
    actor text NOT NULL,
    token_id bigint,
    role text NOT NULL,
    peer text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    summary text NOT NULL,
    PRIMARY KEY (app_id, seq)
);
CREATE INDEX audit_target ON audit (app_id, target, seq);
COMMENT ON TABLE audit IS 'who changed what through the API, per app, newest kept';
"#;

/// Version 4. A calendar's `record` is the calendar in the log store's encoding; `excluded`
/// mirrors its entries as a JSON array of strings (`"2026-12-25"`,
/// `"2026-12-24..2026-12-26"`). `jobs.calendars` mirrors the names in the job's record (a
/// workflow's are in its definition); a row written before gets the record's default, none.
const V4: &str = r#"
CREATE TABLE calendars (
    app_id bigint NOT NULL,
    name text COLLATE "C" NOT NULL,
    time_zone text NOT NULL,
    excluded jsonb NOT NULL,
    updated_at bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (app_id, name)
);
COMMENT ON TABLE calendars IS 'named sets of excluded dates in a time zone, per app';

ALTER TABLE jobs ADD COLUMN calendars jsonb NOT NULL DEFAULT '[]';
"#;

const V5: &str = r#"
CREATE TABLE idempotency_keys (
    path text NOT NULL,
    key text NOT NULL,
    at bigint NOT NULL,
    status bigint,
    record bytea NOT NULL,
    PRIMARY KEY (path, key)
);
COMMENT ON TABLE idempotency_keys IS 'Idempotency-Key answers of the create and run routes (status null: cut off before its answer)';
"#;

/// Version 6. `trigger_time` mirrors the record's logical trigger time (the record stays the
/// source of truth); a row written before has none in the column, and its record reads with
/// its creation time (see `wf_codec.rs`).
const V6: &str = r#"
ALTER TABLE workflow_instances ADD COLUMN trigger_time bigint;
COMMENT ON COLUMN workflow_instances.trigger_time IS 'logical trigger time, ms since the epoch (null: written before schema version 6)';
"#;

/// Version 7: the servers of a cluster and their heartbeats (`lease.rs`). Every time is the
/// database's own clock (`now()`): expiry is decided there, never by a server's clock.
const V7: &str = r#"
CREATE TABLE cluster_servers (
    server_id text PRIMARY KEY,
    addresses text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX cluster_servers_expiry ON cluster_servers (expires_at);
COMMENT ON TABLE cluster_servers IS 'servers of a cluster: live while expires_at > now(), by the database clock';

ALTER TABLE leases
    ADD COLUMN acquired_at timestamptz,
    ADD COLUMN renewed_at timestamptz;
COMMENT ON COLUMN leases.epoch IS 'incremented on every grant; writes of the partition are fenced on it';
COMMENT ON COLUMN leases.expires_at IS 'by the database clock; null when released';
"#;

/// Version 8: where each server's HTTP API answers, so that the others can forward an app's
/// requests to its owner, and the key that marks a request as forwarded by a server of the
/// cluster (`lease.rs`, `http::forward`). One row: the first server to start writes a random
/// key, every later one reads it.
const V8: &str = r#"
ALTER TABLE cluster_servers ADD COLUMN http_url text;
COMMENT ON COLUMN cluster_servers.http_url IS 'the server''s advertised HTTP API base URL; null: it cannot be forwarded to';

CREATE TABLE cluster_settings (
    id smallint PRIMARY KEY CHECK (id = 1),
    forward_key text NOT NULL
);
COMMENT ON TABLE cluster_settings IS 'one row: settings every server of a cluster shares';
COMMENT ON COLUMN cluster_settings.forward_key IS 'proves a request was forwarded by a server of the cluster (a secret: as sensitive as the admin token)';
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogLevel, LogType};
    use crate::policy::{OverlapPolicy, RetryBackoff};

    /// The defaults a version 1 row gets are the ones its record decodes with.
    #[test]
    fn version_2_defaults_are_the_records_defaults() {
        let backoff = serde_json::to_string(&RetryBackoff::default()).unwrap();
        assert!(V2.contains(&format!("DEFAULT '{backoff}'")), "{backoff}");
        for name in [
            serde_json::to_string(&OverlapPolicy::default()).unwrap(),
            serde_json::to_string(&LogType::default()).unwrap(),
            serde_json::to_string(&LogLevel::Info).unwrap(),
        ] {
            let name = name.trim_matches('"');
            assert!(V2.contains(&format!("DEFAULT '{name}'")), "{name}");
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(LATEST));
    }
}
