//! The credentials a start resolves: the authenticator of both fronts (bearer tokens,
//! callback signatures) and the access-token issuer. What is not configured is generated
//! on first start and kept beside the database (mode 0600), so restarts accept the same
//! tokens; the generated API token is printed once, never logged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::auth::{Authenticator, SignatureVerifier};
use crate::config::{CallbackAuth, Secret, ServeArgs, Settings};
use crate::token::Tokens;

/// Builds the authenticator, generating and keeping a token on first start when none is
/// configured.
pub(crate) fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    let args = &settings.args;
    let policy = args
        .callback_auth
        .unwrap_or(if args.callback_keys.is_empty() {
            CallbackAuth::Bearer
        } else {
            CallbackAuth::BearerOrSignature
        });
    let signatures = if args.callback_keys.is_empty() {
        if policy != CallbackAuth::Bearer && !args.no_auth {
            anyhow::bail!("--callback-auth {policy:?} needs at least one --callback-key");
        }
        None
    } else {
        Some(
            SignatureVerifier::new(
                args.callback_keys.clone(),
                args.callback_sign_type,
                args.signature_skew,
                settings.clock.clone(),
            )
            .map_err(anyhow::Error::msg)?,
        )
    };
    if args.no_auth {
        tracing::warn!(
            "!!! AUTHENTICATION IS OFF (--no-auth): anyone who can reach the ports can write and read; development only !!!"
        );
        return Ok(Authenticator::new(&[], true, policy, signatures));
    }
    let tokens = if args.api_tokens.is_empty() {
        vec![generated_token(args, settings.print_banner)?]
    } else {
        for (i, token) in args.api_tokens.iter().enumerate() {
            check_secret(
                format_args!(
                    "--api-token / RECORDING_EVENTS_API_TOKENS (the token #{})",
                    i + 1
                ),
                token,
            )?;
        }
        tracing::info!(
            count = args.api_tokens.len(),
            "authentication: bearer tokens from --api-token / RECORDING_EVENTS_API_TOKENS"
        );
        args.api_tokens.clone()
    };
    if signatures.is_some() {
        tracing::info!(policy = ?policy, sign_type = ?args.callback_sign_type, keys = args.callback_keys.len(), "callback signatures checked");
    }
    Ok(Authenticator::new(&tokens, false, policy, signatures))
}

/// Access tokens (POST /oauth/token), when clients or a signing key are configured. The
/// signing key, unless given, is generated on first start and kept beside the database.
pub(crate) fn access_tokens(settings: &Settings) -> anyhow::Result<Option<Arc<Tokens>>> {
    let args = &settings.args;
    if args.clients.is_empty() && args.token_signing_key.is_none() {
        return Ok(None);
    }
    let key = match &args.token_signing_key {
        Some(key) => key.clone(),
        None => kept_secret(&sibling_file(args, "signing-key"), |_| {
            tracing::info!(
                "token signing key generated and kept beside the database; give replicas the same --token-signing-key"
            );
        })?,
    };
    if key.expose().len() < 32 {
        anyhow::bail!("--token-signing-key: must be at least 32 characters");
    }
    for client in &args.clients {
        check_secret(
            format_args!("--client {}: the secret", client.id),
            &client.secret,
        )?;
    }
    let ids: Vec<&str> = args.clients.iter().map(|c| c.id.as_str()).collect();
    tracing::info!(clients = ?ids, ttl = %humantime::format_duration(args.token_ttl), "token endpoint POST /oauth/token enabled");
    Ok(Some(Arc::new(Tokens::new(
        &key,
        &args.clients,
        args.token_ttl,
        settings.clock.clone(),
    ))))
}

/// A file beside the SQLite database (`<db>.<suffix>`), or in the working directory.
fn sibling_file(args: &ServeArgs, suffix: &str) -> PathBuf {
    match crate::store::sqlite_path(args.database_url.expose()) {
        Some(db) => PathBuf::from(format!("{}.{suffix}", db.display())),
        None => PathBuf::from(format!("recording-events.{suffix}")),
    }
}

/// Reads the token kept by an earlier start, or generates one and prints it once.
fn generated_token(args: &ServeArgs, print_banner: bool) -> anyhow::Result<Secret> {
    let path = args
        .token_file
        .clone()
        .unwrap_or_else(|| sibling_file(args, "token"));
    let token = kept_secret(&path, |token| {
        if print_banner {
            // Printed once, here, on purpose: the operator needs it. Never logged elsewhere.
            println!(
                "\n================================================================\n\
                 No --api-token given: generated one (kept in {path}).\n\
                 Send it as:  Authorization: Bearer {token}\n\
                 It is shown only this once; later starts read it from the file.\n\
                 ================================================================\n",
                path = path.display(),
                token = token.expose(),
            );
        }
    })?;
    check_secret(
        format_args!("{} (the kept API token)", path.display()),
        &token,
    )?;
    tracing::info!(
        "authentication: send `Authorization: Bearer <token>`; the generated token is kept in {}",
        path.display()
    );
    Ok(token)
}

/// The fewest characters of an API token or a client secret not warned about: shorter
/// ones are cheap to guess.
pub const MIN_SECRET_CHARS: usize = 16;

/// Checks a secret, naming `what` (never the secret): an empty one is refused (it is a
/// configuration mistake, such as `RECORDING_EVENTS_API_TOKENS=` or a trailing comma); one
/// shorter than [`MIN_SECRET_CHARS`] is taken, with a warning at start.
fn check_secret(what: std::fmt::Arguments<'_>, secret: &Secret) -> anyhow::Result<()> {
    let chars = secret.expose().trim().chars().count();
    anyhow::ensure!(
        chars > 0,
        "{what}: is empty (make one with `openssl rand -hex 32`)"
    );
    if chars < MIN_SECRET_CHARS {
        tracing::warn!(
            "{what}: only {chars} characters, cheap to guess; use at least {MIN_SECRET_CHARS} \
             (make one with `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

/// Reads a secret kept in `path` by an earlier start, or generates one (256 random bits),
/// keeps it (mode 0600, synced) and calls `created` with it.
fn kept_secret(path: &std::path::Path, created: impl FnOnce(&Secret)) -> anyhow::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok(Secret::new(kept.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = Secret::new(hex::encode(rand::random::<[u8; 32]>()));
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?
    };
    // Synced, and so is its directory entry: a token printed once and then lost to a
    // crash would be replaced by a new one at the next start, locking out every client.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    writeln!(file, "{}", secret.expose())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    created(&secret);
    Ok(secret)
}
