//! JWT verification (RFC 8725): the algorithm is pinned by configuration, never read from the
//! token; `exp`, `iss`, `aud`, `sub`, `program` and `role` are required; `nbf` is honoured; the
//! leeway is small and explicit. [`JwtAuth::actor_from_headers`] is the one place that turns a
//! request into an [`Actor`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use loyalty_domain::{Actor, Role};
use serde::{Deserialize, Serialize};

use crate::config::{rsa_bits, Config, JwtConfig, JwtKey, MIN_RSA_BITS};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_SUB_BYTES: usize = 256;
const MAX_PROGRAM_BYTES: usize = 64;

/// Why a presented token was refused; the message goes to the client as `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("expected an `Authorization: Bearer <token>` header")]
    BadScheme,
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    #[error("invalid token")]
    Invalid,
}

/// The claims this server issues and accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub program: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
}

/// What verification reads from a token; options so that a missing claim gets its own message
/// after the standard checks ran.
#[derive(Deserialize)]
struct PresentedClaims {
    /// Any JSON: a non-numeric `exp` must read as jsonwebtoken reports it, not as malformed.
    exp: Option<serde_json::Value>,
    sub: Option<String>,
    program: Option<String>,
    role: Option<String>,
}

/// Verifies (and, when it holds a signing key, issues) tokens.
pub struct JwtAuth {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.encoding.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Selects jsonwebtoken's RustCrypto backend for the process. The `rust_crypto` feature already
/// implies it, but if another crate in the graph enabled `aws_lc_rs` too, jsonwebtoken could no
/// longer infer one and would fail at the first signature; installing it explicitly removes the
/// guess. Installing twice (tests build many servers) keeps the first, which is the same one.
fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

impl JwtAuth {
    pub fn new(config: &JwtConfig) -> anyhow::Result<JwtAuth> {
        install_crypto_provider();
        let (algorithm, decoding, encoding) = match &config.key {
            JwtKey::Hs256 { secret } => {
                let bytes = secret.expose().as_bytes();
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(bytes),
                    Some(EncodingKey::from_secret(bytes)),
                )
            }
            JwtKey::Rs256 {
                public_key_pem,
                private_key_pem,
            } => {
                let decoding = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
                    .context("JWT_PUBLIC_KEY_PEM is not a valid RSA public key")?;
                // Configuration refuses these too; a `Config` built in code must not slip by.
                if let Some(bits) = rsa_bits(public_key_pem).filter(|b| *b < MIN_RSA_BITS) {
                    anyhow::bail!(
                        "JWT_PUBLIC_KEY_PEM is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits \
                         are required"
                    );
                }
                let encoding = private_key_pem
                    .as_ref()
                    .map(|pem| EncodingKey::from_rsa_pem(pem.expose().as_bytes()))
                    .transpose()
                    .context("JWT_PRIVATE_KEY_PEM is not a valid RSA private key")?;
                (Algorithm::RS256, decoding, encoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(JwtAuth {
            algorithm,
            decoding,
            encoding,
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The caller of a request: `Ok(None)` without an `Authorization` header, an error when one
    /// is present but not a valid bearer token.
    pub fn actor_from_headers(&self, headers: &HeaderMap) -> Result<Option<Actor>, AuthError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().map_err(|_| AuthError::BadScheme)?;
        self.verify_authorization(value)
            .map(|(actor, _)| Some(actor))
    }

    /// Verifies an `Authorization` value (`Bearer <token>`, scheme in any case): the caller and
    /// the token's `exp`. HTTP headers and WebSocket `connection_init` payloads both use it.
    pub fn verify_authorization(&self, value: &str) -> Result<(Actor, u64), AuthError> {
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::BadScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::BadScheme);
        }
        self.verify_expiring(token.trim())
    }

    /// Verifies a token and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        self.verify_expiring(token).map(|(actor, _)| actor)
    }

    /// Verifies a token and returns who it speaks for and its `exp` (UNIX seconds): long-lived
    /// sessions (WebSockets) end when their token does.
    pub fn verify_expiring(&self, token: &str) -> Result<(Actor, u64), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        // The header is checked on its own first so that `alg: none` or an algorithm of the
        // other family reads as what it is rather than as a generic decoding failure.
        match jsonwebtoken::decode_header(token) {
            Ok(header) if header.alg == self.algorithm => {}
            Ok(_) => return Err(AuthError::UnsupportedAlgorithm),
            Err(err) => return Err(map_header_error(err.kind())),
        }
        let data = jsonwebtoken::decode::<PresentedClaims>(token, &self.decoding, &self.validation)
            .map_err(|err| map_error(err.kind()))?;
        let claims = data.claims;
        let subject = required(claims.sub, "sub", MAX_SUB_BYTES)?;
        let program = required(claims.program, "program", MAX_PROGRAM_BYTES)?;
        let role = required(claims.role, "role", 16)?;
        let role = Role::parse(&role).ok_or(AuthError::InvalidClaim("role"))?;
        // `exp` is a required claim, so validation has already refused a token without it.
        let exp = claims
            .exp
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .unwrap_or_default();
        Ok((
            Actor {
                program,
                role,
                subject,
            },
            exp,
        ))
    }

    /// Signs arbitrary claims with the configured key (tests use this for malformed claims).
    pub fn sign<C: Serialize>(&self, claims: &C) -> anyhow::Result<String> {
        let key = self.encoding.as_ref().context(
            "no signing key: RS256 needs JWT_PRIVATE_KEY_PEM to issue tokens (or use JWT_SECRET)",
        )?;
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, key)
            .context("signing the token failed")
    }

    /// Claims for `program`/`role`/`sub`, valid for `ttl` from now.
    pub fn claims(&self, program: &str, role: Role, sub: &str, ttl: Duration) -> Claims {
        let now = unix_now();
        Claims {
            sub: sub.to_owned(),
            program: program.to_owned(),
            role: role.as_str().to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
        }
    }

    /// Issues a token for `program`/`role`/`sub`, valid for `ttl`.
    pub fn mint(
        &self,
        program: &str,
        role: Role,
        sub: &str,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.sign(&self.claims(program, role, sub, ttl))
    }

    /// Signs and verifies one token so that a broken key or crypto backend fails at start, not
    /// on the first request. Without a signing key (RS256, public key only) parsing the key in
    /// [`JwtAuth::new`] is the check.
    pub fn self_check(&self) -> anyhow::Result<()> {
        if self.encoding.is_none() {
            return Ok(());
        }
        let token = self
            .mint(
                "self-check",
                Role::Service,
                "self-check",
                Duration::from_secs(60),
            )
            .context("JWT self-check: signing failed")?;
        let actor = self
            .verify(&token)
            .map_err(|err| anyhow::anyhow!("JWT self-check: verifying our own token failed: {err} (does JWT_PRIVATE_KEY_PEM match JWT_PUBLIC_KEY_PEM?)"))?;
        anyhow::ensure!(
            actor.program == "self-check" && actor.role == Role::Service,
            "JWT self-check: the verified token carries other claims"
        );
        Ok(())
    }
}

/// Issues a token signed with the configured key (the `token` subcommand and tests).
pub fn mint(
    config: &Config,
    program: &str,
    role: Role,
    sub: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    JwtAuth::new(&config.jwt)?.mint(program, role, sub, ttl)
}

/// Signs arbitrary claims with the configured key (tests craft wrong claims with it).
pub fn sign<C: Serialize>(config: &Config, claims: &C) -> anyhow::Result<String> {
    JwtAuth::new(&config.jwt)?.sign(claims)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn required(
    value: Option<String>,
    name: &'static str,
    max_bytes: usize,
) -> Result<String, AuthError> {
    match value {
        None => Err(AuthError::MissingClaim(name.to_owned())),
        Some(value) if value.trim().is_empty() => Err(AuthError::MissingClaim(name.to_owned())),
        Some(value) if value.len() > max_bytes || value.chars().any(char::is_control) => {
            Err(AuthError::InvalidClaim(name))
        }
        Some(value) => Ok(value),
    }
}

fn map_header_error(kind: &ErrorKind) -> AuthError {
    match kind {
        // An `alg` outside jsonwebtoken's list (`none`, `HS1024`, ...) fails to deserialize.
        ErrorKind::Json(err) if err.to_string().contains("unknown variant") => {
            AuthError::UnsupportedAlgorithm
        }
        _ => AuthError::Malformed,
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::UnsupportedAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSubject => AuthError::InvalidClaim("sub"),
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        // A time claim that is not a number (CVE-2026-25537: before 10.3 it was skipped).
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "nbf" => AuthError::InvalidClaim("nbf"),
            "exp" => AuthError::InvalidClaim("exp"),
            _ => AuthError::Malformed,
        },
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::RsaFailedSigning
        | ErrorKind::Signing(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => AuthError::Invalid,
        // jsonwebtoken's ErrorKind is non-exhaustive.
        _ => AuthError::Invalid,
    }
}

#[cfg(test)]
mod tests;
