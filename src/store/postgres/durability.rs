//! What "acknowledged means on disk" asks of PostgreSQL: sessions that wait for the disk
//! (made so), and a server that syncs and writes whole pages (said when it does not).

/// Makes a new session's commits durable: an acknowledgement means the callback is on
/// disk, so a session whose `synchronous_commit` is `off` (set for the database, the role
/// or in the URL, to trade durability for speed) is set to `on`. `local`, `on` and the
/// replication levels all wait for the primary's disk, and are left as they are.
///
/// Returns whether it had to.
///
/// # Errors
/// When the session does not answer.
pub async fn durable_commits(
    client: &tokio_postgres::Client,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT was = 'off', \
                    CASE WHEN was = 'off' THEN set_config('synchronous_commit', 'on', false) END \
             FROM (SELECT current_setting('synchronous_commit') AS was) AS session",
            &[],
        )
        .await?;
    let was_off: bool = row.get(0);
    if was_off {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "synchronous_commit is off for this database, role or URL: the service's \
                 sessions set it to on, so that an acknowledgement still means on disk"
            );
        });
    }
    Ok(was_off)
}

/// Logs a warning when the server runs with `fsync` or `full_page_writes` off.
///
/// # Errors
/// When the session does not answer.
pub async fn warn_if_the_server_is_not_crash_safe(
    client: &tokio_postgres::Client,
) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('full_page_writes')",
            &[],
        )
        .await?;
    if let Some(warning) = crash_safety(row.get(0), row.get(1)) {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// What the server's own settings mean for "acknowledged means on disk": the service can
/// make its sessions wait for the disk, but not a server that does not sync (`fsync`) or
/// can tear pages in a crash (`full_page_writes`). Said once at start; not refused, as
/// such settings have their uses (a test database, a disposable replica set).
fn crash_safety(fsync: &str, full_page_writes: &str) -> Option<String> {
    let off: Vec<&str> = [("fsync", fsync), ("full_page_writes", full_page_writes)]
        .into_iter()
        .filter(|(_, value)| *value == "off")
        .map(|(name, _)| name)
        .collect();
    (!off.is_empty()).then(|| {
        format!(
            "the PostgreSQL server runs with {} off: a crash of its host can lose or corrupt \
             callbacks already acknowledged; turn it on for production",
            off.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_does_not_sync_is_warned_about_naming_the_settings() {
        assert_eq!(crash_safety("on", "on"), None);
        let fsync_off = crash_safety("off", "on").unwrap();
        assert!(
            fsync_off.starts_with("the PostgreSQL server runs with fsync off: "),
            "{fsync_off}"
        );
        let both = crash_safety("off", "off").unwrap();
        assert!(
            both.contains("with fsync and full_page_writes off"),
            "{both}"
        );
    }
}
