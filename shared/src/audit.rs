//! The audit trail's records and the hash chain that makes them tamper-evident.
//!
//! Every record carries the hash of the one before it, and its own hash covers its content and
//! that link, so editing, removing or reordering any record breaks the chain at a place
//! [`verify_chain`] names. The store keeps the records append-only (the database refuses UPDATE
//! and DELETE); this module only seals and checks them, without I/O.
//!
//! The hash input is `countersign-audit-v1\n`, the previous hash, a newline, and the record
//! without its link fields as JSON: the sequence number, the entry's fields, the SQL hash.
//! Changing a field's name, type or order changes every hash: do it only with a new prefix.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_PREFIX: &[u8] = b"countersign-audit-v1\n";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A request arrived (chat, automation endpoint).
    Received,
    /// The policy denied it.
    Denied,
    /// The policy allowed it at once.
    Allowed,
    /// It waits for approvals.
    Pending,
    /// A reviewer approved.
    Approved,
    /// A reviewer withdrew an approval (reaction removed).
    ApprovalWithdrawn,
    /// A reviewer rejected it.
    Rejected,
    /// Its approvals expired before it ran.
    Expired,
    /// The requester cancelled it.
    Cancelled,
    /// Its signed job was written to the outbox and published.
    Queued,
    /// The executor refused the job (signature, expiry, hash, scope, replay).
    Refused,
    /// The executor claimed the job and started it.
    Running,
    /// It ran and committed (or, for a read, returned its rows).
    Succeeded,
    /// It failed; nothing was committed.
    Failed,
    /// The row guard rolled it back.
    RolledBack,
    /// A write whose outcome cannot be known (the executor died mid-statement).
    OutcomeUnknown,
}

/// One audit record, sealed into the chain: an entry plus its place and links. In JSON (and in
/// the store) the entry's fields stand beside the chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Lowercase hex SHA-256 of the entry's SQL, computed when sealed.
    pub sql_sha256: Option<String>,
    /// The hash of the previous record ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This record's hash: lowercase hex SHA-256 of the prefix, `prev_hash` and the content.
    pub hash: String,
}

/// The content of a record: everything but the chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened (Unix milliseconds).
    pub at_ms: u64,
    /// What happened.
    pub event: AuditEvent,
    /// The request it concerns.
    pub request_id: String,
    /// Who did it.
    pub actor: String,
    /// The target database.
    pub target: String,
    /// The SQL, where the event concerns it.
    pub sql: Option<String>,
    /// The decision or outcome in a word.
    pub decision: Option<String>,
    /// Why, in sentences.
    pub reasons: Vec<String>,
    /// Who had approved at this point.
    pub approvers: Vec<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    /// How long it ran (milliseconds).
    pub duration_ms: Option<u64>,
    /// The error, for failures and refusals.
    pub error: Option<String>,
}

impl AuditEntry {
    /// An entry with the fields every event has; the rest start empty.
    pub fn new(
        event: AuditEvent,
        at_ms: u64,
        request_id: impl Into<String>,
        actor: impl Into<String>,
        target: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            at_ms,
            event,
            request_id: request_id.into(),
            actor: actor.into(),
            target: target.into(),
            sql: None,
            decision: None,
            reasons: Vec::new(),
            approvers: Vec::new(),
            rows: None,
            duration_ms: None,
            error: None,
        }
    }
}

/// The content as hashed: the entry's fields and the SQL's hash, in this order.
#[derive(Serialize)]
struct Content<'a> {
    #[serde(flatten)]
    entry: &'a AuditEntry,
    sql_sha256: &'a Option<String>,
}

/// The exact text a record's hash covers besides its place and link: the entry as JSON with the
/// SQL's SHA-256 added. The store keeps this text and hashes it itself (see
/// [`record_hash`]), so the two sides agree byte for byte.
pub fn content_text(entry: &AuditEntry) -> String {
    let sql_sha256 = entry.sql.as_deref().map(crate::job::sql_sha256);
    content_with(entry, &sql_sha256)
}

fn content_with(entry: &AuditEntry, sql_sha256: &Option<String>) -> String {
    // Serialising plain strings, numbers and lists cannot fail.
    serde_json::to_string(&Content { entry, sql_sha256 }).unwrap_or_default()
}

/// A record's hash: lowercase hex SHA-256 of `countersign-audit-v1\n`, the previous hash, `\n`,
/// the sequence number in decimal, `\n`, and the content text.
pub fn record_hash(prev_hash: &str, seq: u64, content: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(HASH_PREFIX);
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(content.as_bytes());
    hex::encode(hasher.finalize())
}

impl AuditRecord {
    /// Seals an entry as record `seq`, linked to the record whose hash is `prev_hash`.
    pub fn seal(entry: AuditEntry, seq: u64, prev_hash: &str) -> AuditRecord {
        let sql_sha256 = entry.sql.as_deref().map(crate::job::sql_sha256);
        let mut record = AuditRecord {
            seq,
            entry,
            sql_sha256,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        record.hash = record.computed_hash();
        record
    }

    /// A stored record from its parts: the content text as hashed, and the chain fields.
    pub fn from_stored(
        seq: u64,
        content: &str,
        prev_hash: String,
        hash: String,
    ) -> Result<AuditRecord, serde_json::Error> {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(flatten)]
            entry: AuditEntry,
            sql_sha256: Option<String>,
        }
        let stored: Stored = serde_json::from_str(content)?;
        Ok(AuditRecord {
            seq,
            entry: stored.entry,
            sql_sha256: stored.sql_sha256,
            prev_hash,
            hash,
        })
    }

    /// The hash this record's content and link call for.
    pub fn computed_hash(&self) -> String {
        record_hash(
            &self.prev_hash,
            self.seq,
            &content_with(&self.entry, &self.sql_sha256),
        )
    }

    /// The short reference posted in chat (see [`reference`]).
    pub fn reference(&self) -> String {
        reference(self.seq, &self.hash)
    }
}

/// The short reference to a sealed record posted in chat: `#<seq> <first 12 hex digits of its
/// hash>`, e.g. `#42 9f3c2a1be07d`.
pub fn reference(seq: u64, hash: &str) -> String {
    format!("#{seq} {}", &hash[..hash.len().min(12)])
}

/// One place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A record's content no longer matches its hash.
    #[error("record #{seq} was edited: its content does not match its hash")]
    Edited {
        /// The record's sequence number.
        seq: u64,
    },
    /// Records are missing between two others.
    #[error("records #{from} to #{to} are missing")]
    Missing {
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// A record stands out of order (or twice).
    #[error("record #{seq} is out of order: expected #{expected} at this place")]
    OutOfOrder {
        /// The record's sequence number.
        seq: u64,
        /// The sequence number that should stand here.
        expected: u64,
    },
    /// A record does not link to the record before it.
    #[error("record #{seq} does not follow the record before it: that record was replaced, or this one was re-linked")]
    BrokenLink {
        /// The record's sequence number.
        seq: u64,
    },
    /// The chain ends before the head the store recorded: its last records were removed.
    #[error(
        "records after #{last} are missing: the store's head is record #{head_seq} ({head_hash})"
    )]
    Truncated {
        /// The last record found.
        last: u64,
        /// The last record the store says it sealed.
        head_seq: u64,
        /// That record's hash.
        head_hash: String,
    },
    /// The chain's last record is not the head the store recorded.
    #[error("the chain's last record does not match the store's head #{head_seq} ({head_hash})")]
    HeadMismatch {
        /// The last record the store says it sealed.
        head_seq: u64,
        /// That record's hash.
        head_hash: String,
    },
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records read.
    pub records: u64,
    /// The last record's hash, to compare with one kept elsewhere (so truncation shows too).
    pub head: String,
    /// Every break found, in order; empty when the chain holds.
    pub breaks: Vec<ChainBreak>,
}

impl ChainReport {
    /// True when no break was found.
    pub fn holds(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Checks a whole chain, from its first record, in stored order. Streams: it keeps only the
/// previous record's hash.
pub fn verify_chain(records: impl IntoIterator<Item = AuditRecord>) -> ChainReport {
    let mut verifier = ChainVerifier::new();
    for record in records {
        verifier.push(&record);
    }
    verifier.finish()
}

/// Checks a chain one record at a time, for records that arrive as a stream.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    report: ChainReport,
    expected_seq: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting record #1 next.
    pub fn new() -> ChainVerifier {
        ChainVerifier {
            report: ChainReport {
                records: 0,
                head: GENESIS_HASH.to_string(),
                breaks: Vec::new(),
            },
            expected_seq: 1,
        }
    }

    /// Checks the next record in stored order.
    pub fn push(&mut self, record: &AuditRecord) {
        let report = &mut self.report;
        report.records += 1;
        if record.computed_hash() != record.hash {
            report.breaks.push(ChainBreak::Edited { seq: record.seq });
        }
        if record.seq > self.expected_seq {
            report.breaks.push(ChainBreak::Missing {
                from: self.expected_seq,
                to: record.seq - 1,
            });
        } else if record.seq < self.expected_seq {
            report.breaks.push(ChainBreak::OutOfOrder {
                seq: record.seq,
                expected: self.expected_seq,
            });
        }
        if record.prev_hash != report.head {
            report
                .breaks
                .push(ChainBreak::BrokenLink { seq: record.seq });
        }
        self.expected_seq = self.expected_seq.max(record.seq + 1);
        report.head.clone_from(&record.hash);
    }

    /// Counts a stored record that could not be read at all as edited.
    pub fn push_unreadable(&mut self, seq: u64) {
        self.report.records += 1;
        self.report.breaks.push(ChainBreak::Edited { seq });
        self.expected_seq = self.expected_seq.max(seq + 1);
        // Its hash is unknown, so the next record's link cannot be checked against it.
        self.report.head = String::new();
    }

    /// The report so far.
    pub fn report(&self) -> &ChainReport {
        &self.report
    }

    /// The report after the last record.
    pub fn finish(self) -> ChainReport {
        self.report
    }

    /// The report after the last record, checked against the head (sequence number and hash)
    /// the store recorded separately, so that removing the newest records shows too.
    pub fn finish_with_head(mut self, head_seq: u64, head_hash: &str) -> ChainReport {
        let last = self.expected_seq - 1;
        if last < head_seq {
            self.report.breaks.push(ChainBreak::Truncated {
                last,
                head_seq,
                head_hash: head_hash.to_string(),
            });
        } else if self.report.head != head_hash {
            self.report.breaks.push(ChainBreak::HeadMismatch {
                head_seq,
                head_hash: head_hash.to_string(),
            });
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = records
                .last()
                .map_or(GENESIS_HASH, |r| r.hash.as_str())
                .to_string();
            let event = if seq % 2 == 0 {
                AuditEvent::Approved
            } else {
                AuditEvent::Received
            };
            let entry = AuditEntry {
                sql: Some("DELETE FROM orders WHERE id = 1".into()),
                approvers: vec!["slack:U2".into()],
                ..AuditEntry::new(
                    event,
                    1_800_000_000_000 + seq,
                    format!("req-{seq}"),
                    "slack:U1",
                    "prod",
                )
            };
            records.push(AuditRecord::seal(entry, seq, &prev));
        }
        records
    }

    #[test]
    fn an_untouched_chain_holds_and_reports_its_head() {
        let records = chain(5);
        let head = records[4].hash.clone();
        let report = verify_chain(records);
        assert!(report.holds(), "{:?}", report.breaks);
        assert_eq!((report.records, report.head), (5, head));
        assert!(verify_chain(Vec::new()).holds());
    }

    #[test]
    fn sealing_records_the_sql_hash_and_a_short_reference() {
        let record = &chain(1)[0];
        assert_eq!(
            record.sql_sha256.as_deref(),
            Some(crate::job::sql_sha256("DELETE FROM orders WHERE id = 1").as_str())
        );
        assert_eq!(record.prev_hash, GENESIS_HASH);
        assert_eq!(record.reference(), format!("#1 {}", &record.hash[..12]));
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut records = chain(5);
        records[2].entry.rows = Some(1_000_000);
        let report = verify_chain(records);
        assert_eq!(report.breaks, [ChainBreak::Edited { seq: 3 }]);
    }

    #[test]
    fn an_edited_and_resealed_record_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].entry.reasons = vec!["nothing to see".into()];
        records[2].hash = records[2].computed_hash();
        let report = verify_chain(records);
        assert_eq!(report.breaks, [ChainBreak::BrokenLink { seq: 4 }]);
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut records = chain(5);
        records.remove(1);
        let report = verify_chain(records);
        assert_eq!(
            report.breaks,
            [
                ChainBreak::Missing { from: 2, to: 2 },
                ChainBreak::BrokenLink { seq: 3 }
            ]
        );
        let report = verify_chain(chain(5).into_iter().skip(2));
        assert_eq!(report.breaks[0], ChainBreak::Missing { from: 1, to: 2 });
    }

    #[test]
    fn reordered_records_are_named() {
        let mut records = chain(5);
        records.swap(1, 2);
        let report = verify_chain(records);
        assert!(
            report.breaks.contains(&ChainBreak::OutOfOrder {
                seq: 2,
                expected: 4
            }),
            "{:?}",
            report.breaks
        );
        assert!(
            report
                .breaks
                .contains(&ChainBreak::Missing { from: 2, to: 2 }),
            "{:?}",
            report.breaks
        );
        assert!(!report.holds());
    }

    #[test]
    fn a_truncated_tail_shows_as_a_different_head() {
        let records = chain(5);
        let full_head = records[4].hash.clone();
        let report = verify_chain(records.into_iter().take(3));
        assert!(report.holds());
        assert_ne!(report.head, full_head);
    }

    #[test]
    fn records_round_trip_through_json_and_still_verify() {
        let records = chain(3);
        let text: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect();
        let back: Vec<AuditRecord> = text
            .iter()
            .map(|t| serde_json::from_str(t).expect("parses"))
            .collect();
        assert!(verify_chain(back).holds());
    }
}
