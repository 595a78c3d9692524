//! The PostgreSQL schema's migrations: applied at start by the first replica to get the
//! migration lock (the others wait for it, and then find nothing to do), or alone by
//! `recording-events migrate`, e.g. before a rolling deploy whose migration is long.

use std::time::Instant;

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

use super::CREATE_WITHIN;
use crate::store::{Migrated, MigrationLog};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_events_by_recording.sql"),
    include_str!("../../../migrations/postgres/0003_spans_by_stream.sql"),
    include_str!("../../../migrations/postgres/0004_rare_states.sql"),
];
/// The columns of this service's `schema_migrations`, as information_schema names them.
const OUR_SHAPE: &str = "version integer, applied_at timestamp with time zone";
/// Serializes migrations when several replicas start at once.
pub const MIGRATION_LOCK: i64 = 0x7265_635f_6d69_6772;

/// Applies the migrations not yet recorded in `schema_migrations`, in one transaction,
/// under an advisory lock. Waiting for that lock (another replica migrating) is logged,
/// and each migration as [`MigrationLog`] says.
pub(super) async fn migrate(client: &mut Client) -> anyhow::Result<Migrated> {
    let tx = client.transaction().await?;
    let free: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?
        .get(0);
    if !free {
        tracing::info!("another process is migrating the PostgreSQL schema; waiting for it");
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
    }
    // "relation already exists, skipping" notices are no news at every start.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; \
         CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    // A table of that name made by another tool (golang-migrate's `version bigint, dirty
    // boolean`, Rails' `version varchar`, …) would have its versions taken for ours.
    let shape: String = tx
        .query_one(
            "SELECT coalesce(string_agg(column_name || ' ' || data_type, ', ' \
             ORDER BY ordinal_position), '') FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        shape == OUR_SHAPE,
        "the schema_migrations table in this schema is another tool's ({shape}; ours is \
         {OUR_SHAPE}): give recording-events a database or a schema of its own, e.g. \
         ?options=-c%20search_path%3Drecording_events in the URL"
    );
    let version: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let before = usize::try_from(version).unwrap_or(0);
    let log = MigrationLog::new("postgres", before, MIGRATIONS.len());
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(before) {
        let n = i + 1;
        log.applying(n);
        let started = Instant::now();
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("postgres migration {n}"))?;
        let v = i32::try_from(n)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&v])
            .await?;
        log.applied(n, started);
    }
    tx.commit().await?;
    log.done();
    Ok(Migrated::checked(before, MIGRATIONS.len()))
}

/// Connects to the database of `url`, migrates it, and disconnects.
///
/// # Errors
/// When the URL is invalid, or the database cannot be reached or migrated.
pub async fn migrate_url(url: &str) -> anyhow::Result<Migrated> {
    let config = super::config(url)?;
    let (mut client, connection) = tokio::time::timeout(CREATE_WITHIN, config.connect(NoTls))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "PostgreSQL did not answer within {} s while connecting",
                CREATE_WITHIN.as_secs()
            )
        })?
        .context("cannot connect to PostgreSQL")?;
    let driver = tokio::spawn(connection);
    let migrated = migrate(&mut client).await;
    drop(client);
    let _ = driver.await;
    migrated
}
