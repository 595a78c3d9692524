//! Authentication: bearer tokens on both fronts, and Huawei's callback signatures on the
//! callback route. Every secret comparison is constant-time.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{CallbackAuth, Secret, SignType};
use crate::domain::time::Clock;
use crate::error::{Code, Error};
use crate::pb::v1::VodCallBackRequest;
use crate::token::{Rejected, Tokens};

/// Checks the credentials of a request.
#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 of each accepted static token: comparing fixed-size digests keeps the
    /// comparison constant-time whatever the lengths, and no plain token stays in memory.
    token_digests: Vec<[u8; 32]>,
    disabled: bool,
    policy: CallbackAuth,
    signatures: Option<SignatureVerifier>,
    access_tokens: Option<std::sync::Arc<Tokens>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.token_digests.len())
            .field("disabled", &self.disabled)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator accepting `tokens` (unless `disabled`) and, on the callback route,
    /// what `policy` allows.
    pub fn new(
        tokens: &[Secret],
        disabled: bool,
        policy: CallbackAuth,
        signatures: Option<SignatureVerifier>,
    ) -> Self {
        Authenticator {
            token_digests: tokens.iter().map(|t| digest(t.expose())).collect(),
            disabled,
            policy,
            signatures,
            access_tokens: None,
        }
    }

    /// Also accepts access tokens issued by the token endpoint.
    pub fn with_access_tokens(mut self, tokens: std::sync::Arc<Tokens>) -> Self {
        self.access_tokens = Some(tokens);
        self
    }

    /// Checks an `Authorization` header value (`Bearer <token>`, scheme in any case).
    ///
    /// # Errors
    /// `Unauthenticated`, saying what is wrong without echoing the credential.
    pub fn check_bearer(&self, header: Option<&[u8]>) -> Result<(), Error> {
        if self.disabled {
            return Ok(());
        }
        let header = header.ok_or_else(|| {
            unauthenticated("authorization: missing; send `Authorization: Bearer <token>`")
        })?;
        let token = parse_bearer(header)?;
        let presented = digest(token);
        let mut ok = subtle::Choice::from(0);
        for known in &self.token_digests {
            ok |= known.ct_eq(&presented);
        }
        if bool::from(ok) {
            return Ok(());
        }
        match self.access_tokens.as_ref().map(|t| t.verify(token)) {
            Some(Ok(_client)) => Ok(()),
            Some(Err(Rejected::Expired)) => Err(unauthenticated(
                "authorization: the access token has expired; get a new one from /oauth/token",
            )),
            Some(Err(Rejected::Invalid)) | None => Err(unauthenticated(
                "authorization: the bearer token is not valid",
            )),
        }
    }

    /// Checks what the headers of a callback can tell, before its body is read: the
    /// bearer token when it decides (`--callback-auth bearer`, or a token presented under
    /// `bearer-or-signature`), so that a client without credentials is refused without
    /// its body being read or parsed. `Ok(Callback::Checked)` when nothing more is needed,
    /// `Ok(Callback::NeedsSignature)` when the body's signature decides.
    ///
    /// # Errors
    /// `Unauthenticated` naming the header at fault.
    pub fn check_callback_headers(&self, header: Option<&[u8]>) -> Result<Callback, Error> {
        if self.disabled {
            return Ok(Callback::Checked);
        }
        match self.policy {
            CallbackAuth::Bearer => self.check_bearer(header).map(|()| Callback::Checked),
            // A presented bearer token decides; without one, the signature does.
            CallbackAuth::BearerOrSignature if header.is_some() => {
                self.check_bearer(header).map(|()| Callback::Checked)
            }
            CallbackAuth::Signature | CallbackAuth::BearerOrSignature => {
                Ok(Callback::NeedsSignature)
            }
        }
    }

    /// Checks a callback's Huawei signature (after [`Self::check_callback_headers`] said
    /// it decides).
    ///
    /// # Errors
    /// `Unauthenticated` naming the field at fault.
    pub fn check_signature(&self, req: &VodCallBackRequest) -> Result<(), Error> {
        match &self.signatures {
            Some(verifier) => verifier.verify(req),
            None => Err(unauthenticated("auth_sign: no callback key is configured")),
        }
    }
}

/// What [`Authenticator::check_callback_headers`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// The credentials are checked.
    Checked,
    /// The body's signature decides: check it once the body is parsed.
    NeedsSignature,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Why `ts`, a signed callback's `auth_timestamp`, is refused at `now` (both Unix seconds):
/// how far it is from the server's clock and which way, so that a sender's drifting clock
/// (or the server's) is told from a replay, and a timestamp sent in milliseconds is named.
fn outside_window(ts: i64, now: i64, skew: Duration) -> String {
    let window = humantime::format_duration(skew);
    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .filter(|t| chrono::Datelike::year(t) <= 9999)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    if (ts / 1000).abs_diff(now) <= skew.as_secs() {
        return format!(
            "auth_timestamp: {ts} reads as milliseconds; it is Unix seconds (the accepted \
             window is ±{window})"
        );
    }
    let (Some(when), Some(clock)) = (at(ts), at(now)) else {
        return format!("auth_timestamp: {ts} is outside the accepted window of ±{window}");
    };
    let by = humantime::format_duration(Duration::from_secs(now.abs_diff(ts)));
    let side = if ts > now { "ahead of" } else { "behind" };
    format!(
        "auth_timestamp: {ts} ({when}) is {by} {side} this server's clock ({clock}), \
         outside the accepted window of ±{window}"
    )
}

fn unauthenticated(message: &str) -> Error {
    Error::new(Code::Unauthenticated, message)
}

fn parse_bearer(header: &[u8]) -> Result<&str, Error> {
    let malformed = || unauthenticated("authorization: expected `Bearer <token>`");
    let header = std::str::from_utf8(header).map_err(|_| malformed())?;
    let (scheme, token) = header.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// Verifies Huawei's `auth_sign` with up to two keys (current and next, for rotation) and
/// a window on `auth_timestamp`.
#[derive(Clone)]
pub struct SignatureVerifier {
    keys: Vec<Secret>,
    sign_type: SignType,
    skew: Duration,
    clock: Clock,
}

impl SignatureVerifier {
    /// A verifier. Keys must be at least 32 letters or digits; at most two.
    ///
    /// # Errors
    /// A message naming `--callback-key` when a key is unfit.
    pub fn new(
        keys: Vec<Secret>,
        sign_type: SignType,
        skew: Duration,
        clock: Clock,
    ) -> Result<Self, String> {
        if keys.len() > 2 {
            return Err("--callback-key: at most two keys (current and next)".into());
        }
        for (i, key) in keys.iter().enumerate() {
            let k = key.expose();
            if k.len() < 32 || !k.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "--callback-key #{}: must be at least 32 letters or digits",
                    i + 1
                ));
            }
        }
        Ok(SignatureVerifier {
            keys,
            sign_type,
            skew,
            clock,
        })
    }

    /// Checks `auth_timestamp` against the window, then `auth_sign` against each key.
    ///
    /// # Errors
    /// `Unauthenticated` naming `auth_sign` or `auth_timestamp`.
    pub fn verify(&self, req: &VodCallBackRequest) -> Result<(), Error> {
        if req.auth_sign.is_empty() {
            return Err(unauthenticated(
                "auth_sign: missing; send a bearer token or a signed callback",
            ));
        }
        let ts = req
            .auth_timestamp
            .ok_or_else(|| unauthenticated("auth_timestamp: missing from a signed callback"))?;
        let now = self.clock.now().timestamp();
        if now.abs_diff(ts) > self.skew.as_secs() {
            return Err(unauthenticated(&outside_window(ts, now, self.skew)));
        }
        let presented = hex::decode(req.auth_sign.trim())
            .map_err(|_| unauthenticated("auth_sign: not a hex string"))?;
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= sign(self.sign_type, key.expose(), req).ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(unauthenticated("auth_sign: the signature does not match"))
        }
    }
}

/// Huawei's signature of a callback with one key (raw bytes, before hex).
pub fn sign(sign_type: SignType, key: &str, req: &VodCallBackRequest) -> Vec<u8> {
    let ts = req
        .auth_timestamp
        .map(|t| t.to_string())
        .unwrap_or_default();
    match sign_type {
        SignType::Hmacsha256 => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key size");
            for part in [
                ts.as_str(),
                &req.event_type,
                &req.publish_domain,
                &req.app,
                &req.stream,
                &req.download_url,
                &req.play_url,
            ] {
                mac.update(part.as_bytes());
            }
            mac.finalize().into_bytes().to_vec()
        }
        SignType::Md5 => {
            let mut h = Md5::new();
            h.update(key.as_bytes());
            h.update(ts.as_bytes());
            h.finalize().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tokens: &[&str]) -> Authenticator {
        let tokens: Vec<Secret> = tokens.iter().map(|t| Secret::new(*t)).collect();
        Authenticator::new(&tokens, false, CallbackAuth::Bearer, None)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = auth(&["t0k3n"]);
        assert!(a.check_bearer(Some(b"bearer t0k3n")).is_ok());
        assert!(a.check_bearer(Some(b"BEARER t0k3n")).is_ok());
        assert!(a.check_bearer(Some(b"Bearer t0k3n")).is_ok());
    }

    #[test]
    fn wrong_missing_and_malformed_tokens_are_rejected_without_echo() {
        let a = auth(&["t0k3n"]);
        for header in [
            None,
            Some(&b"Bearer nope"[..]),
            Some(b"Basic t0k3n"),
            Some(b"t0k3n"),
        ] {
            let e = a.check_bearer(header).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated);
            assert!(!e.message().contains("t0k3n") && !e.message().contains("nope"));
        }
    }

    #[test]
    fn fixed_vectors_match_the_sample_payloads() {
        // Checked independently with:
        //   printf '%s' 1795770000RECORD_FILE_COMPLETEpush.example.comlivecam_0001<download_url><play_url> \
        //     | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        //   printf '%s' 0123456789abcdef0123456789abcdef1795770000 | md5sum
        let key = "0123456789abcdef0123456789abcdef";
        let hmac: VodCallBackRequest =
            serde_json::from_str(include_str!("../tests/payloads/signed_hmacsha256.json")).unwrap();
        assert_eq!(
            hex::encode(sign(SignType::Hmacsha256, key, &hmac)),
            hmac.auth_sign
        );
        let md5: VodCallBackRequest =
            serde_json::from_str(include_str!("../tests/payloads/signed_md5.json")).unwrap();
        assert_eq!(hex::encode(sign(SignType::Md5, key, &md5)), md5.auth_sign);
    }
}
