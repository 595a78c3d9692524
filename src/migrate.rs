//! The `migrate` subcommand: apply the schema migrations a store lacks, and exit.
//!
//! Every start migrates too; this is for doing it apart, e.g. as a step before a rolling
//! deploy whose migration indexes a large table, so that no replica spends minutes
//! starting (without ports, failing its probes) while it migrates.

use std::time::Instant;

use anyhow::Context;

use crate::config::MigrateArgs;

/// Migrates the store `args` names and returns the report for the operator.
///
/// # Errors
/// When the store cannot be opened or migrated (see [`crate::store::migrate`]).
pub async fn run(args: &MigrateArgs) -> anyhow::Result<String> {
    let started = Instant::now();
    let store = format!("{:?}", args.database_url);
    let migrated = crate::store::migrate(args.database_url.expose())
        .await
        .with_context(|| format!("cannot migrate the store {store}"))?;
    Ok(if migrated.before > migrated.known {
        format!(
            "{store}: schema at version {}, newer than this build's {}: a newer version \
             migrated it; nothing applied\n",
            migrated.before, migrated.known
        )
    } else if migrated.after == migrated.before {
        format!(
            "{store}: schema up to date (version {}), nothing applied\n",
            migrated.after
        )
    } else {
        format!(
            "{store}: schema migrated from version {} to {} in {:.2} s\n",
            migrated.before,
            migrated.after,
            started.elapsed().as_secs_f64()
        )
    })
}
