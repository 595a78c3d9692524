//! Access tokens from the token endpoint (OAuth 2.0 client credentials): HS256 JWTs that
//! carry the client id and an expiry. Verification is stateless, so every replica that
//! shares the signing key accepts every replica's tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientCredential, Secret};
use crate::domain::time::Clock;

const ISSUER: &str = "recording-events";

/// Why a client could not get a token (RFC 6749 §5.2 error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Unknown client or wrong secret (401).
    InvalidClient(String),
    /// A grant type other than `client_credentials` (400).
    UnsupportedGrantType(String),
    /// A missing or repeated parameter, or an unreadable body (400).
    InvalidRequest(String),
    /// A body that did not arrive in time (408, error code `invalid_request`).
    BodyTimedOut(String),
}

/// Why a presented JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Its signature, algorithm or claims are not ours.
    Invalid,
    /// It was ours but has expired.
    Expired,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// An issued token.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    pub expires_in: u64,
}

struct Client {
    id_digest: [u8; 32],
    id: String,
    secret_digest: [u8; 32],
}

/// Issues and verifies access tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    clients: Vec<Client>,
    ttl: Duration,
    clock: Clock,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "clients",
                &self.clients.iter().map(|c| &c.id).collect::<Vec<_>>(),
            )
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Tokens {
    /// Tokens signed with `key`, for `clients` (their secrets kept only as SHA-256
    /// digests), valid for `ttl`.
    pub fn new(key: &Secret, clients: &[ClientCredential], ttl: Duration, clock: Clock) -> Self {
        Tokens {
            encoding: EncodingKey::from_secret(key.expose().as_bytes()),
            decoding: DecodingKey::from_secret(key.expose().as_bytes()),
            clients: clients
                .iter()
                .map(|c| Client {
                    id_digest: digest(&c.id),
                    id: c.id.clone(),
                    secret_digest: digest(c.secret.expose()),
                })
                .collect(),
            ttl,
            clock,
        }
    }

    /// Checks the client's credentials (every client is compared, in constant time, so
    /// timing tells nothing about which ids exist) and issues a token.
    ///
    /// # Errors
    /// [`TokenError::InvalidClient`] for an unknown id or a wrong secret.
    pub fn issue(&self, client_id: &str, client_secret: &str) -> Result<Issued, TokenError> {
        let (id, secret) = (digest(client_id), digest(client_secret));
        let mut found = subtle::Choice::from(0);
        for client in &self.clients {
            found |= client.id_digest.ct_eq(&id) & client.secret_digest.ct_eq(&secret);
        }
        if !bool::from(found) {
            return Err(TokenError::InvalidClient(
                "client authentication failed".into(),
            ));
        }
        let now = self.clock.now().timestamp();
        let ttl = self.ttl.as_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: client_id.into(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|e| TokenError::InvalidRequest(format!("cannot issue a token: {e}")))?;
        Ok(Issued {
            access_token: Secret::new(token),
            expires_in: ttl,
        })
    }

    /// Verifies a token: HS256 only (so `alg: none` and other algorithms are refused),
    /// our issuer, our signature, and not expired by the injected clock.
    ///
    /// # Errors
    /// [`Rejected`] saying whether it is invalid or expired.
    pub fn verify(&self, token: &str) -> Result<String, Rejected> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked below against the service's clock (injectable in tests).
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| Rejected::Invalid)?;
        if data.claims.exp <= self.clock.now().timestamp() {
            return Err(Rejected::Expired);
        }
        Ok(data.claims.sub)
    }
}
