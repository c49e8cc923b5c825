//! Signed job envelopes: what the bot asks the executor to run, and the proof that it was
//! decided and approved.
//!
//! The bot holds the Ed25519 signing key; the executor only the public key (DESIGN.md section
//! 3). A [`SignedJob`] carries the job as the exact JSON bytes that were signed, so nothing is
//! re-serialised before the signature is checked: the executor verifies those bytes first and
//! parses them second. [`JobVerifier::verify`] then checks the SQL's hash and the expiry;
//! [`check_scope`] checks a re-classification against what was approved. Claiming a job once is
//! the control plane's business (a conditional update in PostgreSQL), not this module's.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sql::{Category, Classification};

/// How far in the future a job's `issued_at` may lie, for clocks that disagree a little.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

const SECRET_PREFIX: &str = "countersign-ed25519-secret:";
const PUBLIC_PREFIX: &str = "countersign-ed25519-public:";

/// One approved (or allowed) request, as the executor must run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The request's id; the executor claims each id once.
    pub request_id: String,
    /// The target database's name in the policy.
    pub target: String,
    /// The SQL exactly as approved.
    pub sql: String,
    /// Lowercase hex SHA-256 of `sql`.
    pub sql_sha256: String,
    /// Who asked (a principal such as `slack:U024BE7LH`).
    pub requester: String,
    /// Who approved; empty for a request the policy allowed at once.
    pub approvers: Vec<String>,
    /// SHA-256 of the policy file that decided.
    pub policy_version: String,
    /// The category the decision covered; a re-classification above it is refused.
    pub category: Category,
    /// Most rows a write may touch before it is rolled back.
    pub row_limit: Option<u64>,
    /// When the job was signed (Unix seconds).
    pub issued_at: u64,
    /// After this instant (Unix seconds) the job must not run.
    pub expires_at: u64,
}

/// A job as it travels: the signed JSON bytes and their signature, both as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedJob {
    /// The job as JSON, exactly the bytes that were signed.
    pub payload: String,
    /// Base64 Ed25519 signature over `payload`.
    pub signature: String,
}

/// A request for a row estimate, which the executor answers without running the statement.
/// Signed like a job, so that only the bot can make the executor plan SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightRequest {
    /// An id for the reply.
    pub id: String,
    /// The target database's name in the policy.
    pub target: String,
    /// The SQL to estimate.
    pub sql: String,
    /// Who asked.
    pub requester: String,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// After this instant (Unix seconds) it is ignored.
    pub expires_at: u64,
}

const PREFLIGHT_CONTEXT: &[u8] = b"countersign-preflight-v1\n";

/// Why a job is refused. Each is audited and reported in the request's thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The signature does not verify with the executor's public key.
    #[error("the job's signature does not verify: it was not signed by this deployment's bot, or it was changed")]
    BadSignature,
    /// The signed payload is not a job.
    #[error("the signed job is malformed: {0}")]
    Malformed(String),
    /// The SQL does not hash to the approved hash.
    #[error("the job's SQL does not match the SQL that was approved")]
    SqlHashMismatch,
    /// The job expired before it could run.
    #[error("the job expired at {expires_at} (now {now}); approve the request again to run it")]
    Expired {
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The executor's clock (Unix seconds).
        now: u64,
    },
    /// The job claims to be issued in the future, beyond the allowed clock skew.
    #[error("the job claims to be issued at {issued_at}, after now ({now}): clocks disagree or the job is forged")]
    IssuedInFuture {
        /// The claimed issue time (Unix seconds).
        issued_at: u64,
        /// The executor's clock (Unix seconds).
        now: u64,
    },
    /// The SQL re-classifies to something the approval did not cover.
    #[error("the SQL now classifies as {found}, but only {approved} was approved")]
    OutOfScope {
        /// What was approved.
        approved: Category,
        /// What the executor's classification found.
        found: Category,
    },
    /// The SQL could not be re-classified at all.
    #[error("the job's SQL could not be classified again: {0}")]
    Unclassifiable(String),
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key of the expected kind.
    #[error("not a Countersign {expected} key: expected a line starting with `{prefix}` followed by 64 hex digits")]
    Format {
        /// `signing` or `public`.
        expected: &'static str,
        /// The prefix the line must start with.
        prefix: &'static str,
    },
    /// The bytes are not a valid Ed25519 public key.
    #[error("the public key is not a valid Ed25519 point")]
    InvalidPublicKey,
}

/// Lowercase hex SHA-256 of SQL text.
pub fn sql_sha256(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Signs jobs. Only the bot has one.
pub struct JobSigner {
    key: SigningKey,
}

impl JobSigner {
    /// A signer from a 32-byte secret seed (see `countersign keys generate`).
    pub fn from_seed(seed: [u8; 32]) -> JobSigner {
        JobSigner {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads the text of a signing key file.
    pub fn from_text(text: &str) -> Result<JobSigner, KeyError> {
        let bytes = parse_key(text, SECRET_PREFIX, "signing")?;
        Ok(JobSigner::from_seed(bytes))
    }

    /// The key as the text of a signing key file.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex::encode(self.key.to_bytes()))
    }

    /// The verifier for this signer's signatures.
    pub fn verifier(&self) -> JobVerifier {
        JobVerifier {
            key: self.key.verifying_key(),
        }
    }

    /// Signs a job: serialises it once and signs those bytes.
    pub fn sign(&self, job: &Job) -> SignedJob {
        // Serialising plain strings, numbers and lists cannot fail.
        let payload = serde_json::to_string(job).unwrap_or_default();
        let signature = self.key.sign(payload.as_bytes());
        SignedJob {
            payload,
            signature: BASE64.encode(signature.to_bytes()),
        }
    }
}

impl JobSigner {
    /// Signs a preflight request. The signed bytes carry a context prefix, so a signed
    /// preflight can never pass as a job (nor a job as a preflight).
    pub fn sign_preflight(&self, request: &PreflightRequest) -> SignedJob {
        let payload = serde_json::to_string(request).unwrap_or_default();
        let mut message = PREFLIGHT_CONTEXT.to_vec();
        message.extend_from_slice(payload.as_bytes());
        let signature = self.key.sign(&message);
        SignedJob {
            payload,
            signature: BASE64.encode(signature.to_bytes()),
        }
    }
}

impl std::fmt::Debug for JobSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JobSigner")
            .field("public", &self.verifier())
            .finish()
    }
}

/// Verifies jobs. The executor has one, built from the public key only.
#[derive(Clone, PartialEq, Eq)]
pub struct JobVerifier {
    key: VerifyingKey,
}

impl std::fmt::Debug for JobVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobVerifier({})", hex::encode(self.key.to_bytes()))
    }
}

impl JobVerifier {
    /// Reads the text of a public key file.
    pub fn from_text(text: &str) -> Result<JobVerifier, KeyError> {
        let bytes = parse_key(text, PUBLIC_PREFIX, "public")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(JobVerifier { key })
    }

    /// The key as the text of a public key file.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", hex::encode(self.key.to_bytes()))
    }

    /// Checks the signature over the payload bytes, then parses them, then checks the SQL's
    /// hash and the expiry against `now` (Unix seconds). Nothing in the payload is trusted
    /// before the signature is.
    pub fn verify(&self, signed: &SignedJob, now: u64) -> Result<Job, JobError> {
        self.check_signature(signed.payload.as_bytes(), &signed.signature)?;
        let job: Job = serde_json::from_str(&signed.payload)
            .map_err(|e| JobError::Malformed(e.to_string()))?;
        if sql_sha256(&job.sql) != job.sql_sha256 {
            return Err(JobError::SqlHashMismatch);
        }
        check_window(job.issued_at, job.expires_at, now)?;
        Ok(job)
    }

    /// Checks a preflight request's signature (with its context prefix), then its expiry.
    pub fn verify_preflight(
        &self,
        signed: &SignedJob,
        now: u64,
    ) -> Result<PreflightRequest, JobError> {
        let mut message = PREFLIGHT_CONTEXT.to_vec();
        message.extend_from_slice(signed.payload.as_bytes());
        self.check_signature(&message, &signed.signature)?;
        let request: PreflightRequest = serde_json::from_str(&signed.payload)
            .map_err(|e| JobError::Malformed(e.to_string()))?;
        check_window(request.issued_at, request.expires_at, now)?;
        Ok(request)
    }

    /// Checks a base64 Ed25519 signature over `message` (strict verification).
    fn check_signature(&self, message: &[u8], signature: &str) -> Result<(), JobError> {
        let signature_bytes: [u8; 64] = BASE64
            .decode(signature.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(JobError::BadSignature)?;
        self.key
            .verify_strict(message, &Signature::from_bytes(&signature_bytes))
            .map_err(|_| JobError::BadSignature)
    }
}

/// Checks that `now` lies in a signed envelope's validity window (with the clock skew allowed
/// for its issue time).
fn check_window(issued_at: u64, expires_at: u64, now: u64) -> Result<(), JobError> {
    if issued_at > now.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(JobError::IssuedInFuture { issued_at, now });
    }
    if now >= expires_at {
        return Err(JobError::Expired { expires_at, now });
    }
    Ok(())
}

/// Checks the executor's own classification of a verified job's SQL against what was approved:
/// it must classify, and no statement may be more dangerous than the approved category.
pub fn check_scope(job: &Job, classification: &Classification) -> Result<(), JobError> {
    if let Some(error) = &classification.error {
        return Err(JobError::Unclassifiable(error.to_string()));
    }
    if classification.category > job.category {
        return Err(JobError::OutOfScope {
            approved: job.category,
            found: classification.category,
        });
    }
    Ok(())
}

fn parse_key(
    text: &str,
    prefix: &'static str,
    expected: &'static str,
) -> Result<[u8; 32], KeyError> {
    let error = KeyError::Format { expected, prefix };
    let hex_text = text.trim().strip_prefix(prefix).ok_or(error.clone())?;
    let bytes = hex::decode(hex_text.trim()).map_err(|_| error.clone())?;
    bytes.try_into().map_err(|_| error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{classify, ClassifyOptions, Dialect};

    const NOW: u64 = 1_800_000_000;

    fn signer(seed: u8) -> JobSigner {
        JobSigner::from_seed([seed; 32])
    }

    fn job(sql: &str) -> Job {
        Job {
            request_id: "req-1".into(),
            target: "prod".into(),
            sql: sql.into(),
            sql_sha256: sql_sha256(sql),
            requester: "slack:U1".into(),
            approvers: vec!["slack:U2".into(), "slack:U3".into()],
            policy_version: "ab".repeat(32),
            category: Category::Write,
            row_limit: Some(10),
            issued_at: NOW - 10,
            expires_at: NOW + 3600,
        }
    }

    #[test]
    fn preflights_and_jobs_cannot_stand_in_for_each_other() {
        let signer = signer(7);
        let request = PreflightRequest {
            id: "p1".into(),
            target: "prod".into(),
            sql: "DELETE FROM orders".into(),
            requester: "slack:U1".into(),
            issued_at: NOW - 1,
            expires_at: NOW + 30,
        };
        let signed = signer.sign_preflight(&request);
        let verifier = signer.verifier();
        assert_eq!(verifier.verify_preflight(&signed, NOW), Ok(request));
        assert_eq!(verifier.verify(&signed, NOW), Err(JobError::BadSignature));
        let job = signer.sign(&job("SELECT 1"));
        assert_eq!(
            verifier.verify_preflight(&job, NOW),
            Err(JobError::BadSignature)
        );
        assert!(matches!(
            verifier.verify_preflight(&signed, NOW + 31),
            Err(JobError::Expired { .. })
        ));
    }

    #[test]
    fn a_signed_job_verifies_and_comes_back_unchanged() {
        let signer = signer(7);
        let original = job("DELETE FROM orders WHERE id = 42");
        let signed = signer.sign(&original);
        assert_eq!(signer.verifier().verify(&signed, NOW), Ok(original));
    }

    #[test]
    fn a_job_signed_by_another_key_is_refused() {
        let signed = signer(1).sign(&job("SELECT 1"));
        assert_eq!(
            signer(2).verifier().verify(&signed, NOW),
            Err(JobError::BadSignature)
        );
    }

    #[test]
    fn any_change_to_the_payload_breaks_the_signature() {
        let signer = signer(3);
        let signed = signer.sign(&job("DELETE FROM orders WHERE id = 42"));
        let tampered = SignedJob {
            payload: signed.payload.replace("id = 42", "id > 0"),
            ..signed.clone()
        };
        assert_eq!(
            signer.verifier().verify(&tampered, NOW),
            Err(JobError::BadSignature)
        );
        let garbage = SignedJob {
            signature: "not base64!".into(),
            ..signed
        };
        assert_eq!(
            signer.verifier().verify(&garbage, NOW),
            Err(JobError::BadSignature)
        );
    }

    #[test]
    fn sql_that_does_not_match_its_hash_is_refused_even_when_signed() {
        // A compromised bot signing a mismatched job is still caught.
        let signer = signer(4);
        let mut bad = job("DELETE FROM orders WHERE id = 42");
        bad.sql = "DELETE FROM orders".into();
        let signed = signer.sign(&bad);
        assert_eq!(
            signer.verifier().verify(&signed, NOW),
            Err(JobError::SqlHashMismatch)
        );
    }

    #[test]
    fn expired_and_future_jobs_are_refused() {
        let signer = signer(5);
        let signed = signer.sign(&job("SELECT 1"));
        assert!(matches!(
            signer.verifier().verify(&signed, NOW + 3600),
            Err(JobError::Expired { .. })
        ));
        let mut future = job("SELECT 1");
        future.issued_at = NOW + CLOCK_SKEW_SECONDS + 1;
        future.expires_at = NOW + 7200;
        assert!(matches!(
            signer.verifier().verify(&signer.sign(&future), NOW),
            Err(JobError::IssuedInFuture { .. })
        ));
        let mut skewed = job("SELECT 1");
        skewed.issued_at = NOW + CLOCK_SKEW_SECONDS;
        assert!(signer.verifier().verify(&signer.sign(&skewed), NOW).is_ok());
    }

    #[test]
    fn a_payload_with_unknown_fields_is_malformed() {
        let signer = signer(6);
        let mut value = serde_json::to_value(job("SELECT 1")).expect("json");
        value["run_as"] = "superuser".into();
        let payload = value.to_string();
        let signature = BASE64.encode(signer.key.sign(payload.as_bytes()).to_bytes());
        let signed = SignedJob { payload, signature };
        assert!(matches!(
            signer.verifier().verify(&signed, NOW),
            Err(JobError::Malformed(_))
        ));
    }

    #[test]
    fn a_re_classification_above_the_approved_category_is_out_of_scope() {
        let options = ClassifyOptions::default();
        let approved = job("DELETE FROM orders WHERE id = 1");
        let same = classify(&approved.sql, Dialect::Postgres, &options);
        assert_eq!(check_scope(&approved, &same), Ok(()));
        let read = classify("SELECT 1", Dialect::Postgres, &options);
        assert_eq!(check_scope(&approved, &read), Ok(()));
        let ddl = classify("DROP TABLE orders", Dialect::Postgres, &options);
        assert_eq!(
            check_scope(&approved, &ddl),
            Err(JobError::OutOfScope {
                approved: Category::Write,
                found: Category::Ddl
            })
        );
        let broken = classify("DELETE FROM", Dialect::Postgres, &options);
        assert!(matches!(
            check_scope(&approved, &broken),
            Err(JobError::Unclassifiable(_))
        ));
    }

    #[test]
    fn keys_round_trip_through_their_text_and_refuse_the_wrong_kind() {
        let signer = signer(9);
        let again = JobSigner::from_text(&signer.to_text()).expect("signing key reads");
        assert_eq!(again.verifier(), signer.verifier());
        let public =
            JobVerifier::from_text(&signer.verifier().to_text()).expect("public key reads");
        assert_eq!(public, signer.verifier());
        assert!(matches!(
            JobVerifier::from_text(&signer.to_text()),
            Err(KeyError::Format {
                expected: "public",
                ..
            })
        ));
        assert!(JobSigner::from_text("countersign-ed25519-secret:abcd").is_err());
        assert!(!format!("{signer:?}").contains(&hex::encode([9u8; 32])));
    }
}
