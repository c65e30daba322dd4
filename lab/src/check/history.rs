//! What the checker's clients saw, and the verdict on it.
//!
//! Every request is recorded with the times it was sent and answered, on
//! the same clock as the leases the service reports (one machine). The
//! checks are Jepsen-style: an operation took effect at some instant
//! between its send and its answer, so a check only calls a history wrong
//! when no ordering of those instants could explain it.
//!
//! Its length is one check per property, each with its tests: they read
//! the same records, and kept together they read as the list of what the
//! guarantee promises.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Slack for comparing the client's clock with lease ends the service
/// computed: same machine, so this only covers rounding.
const CLOCK_SLACK_MS: i64 = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClaimAnswer {
    /// 201: a token (new, a takeover, or the caller's own handed back).
    Granted {
        token: String,
        takeover: bool,
        lease_end: Option<DateTime<Utc>>,
    },
    /// 409 duplicate.
    Duplicate {
        completed: bool,
        /// The claimant that holds an in-progress claim, when it set one.
        holder: Option<String>,
        lease_end: Option<DateTime<Utc>>,
    },
    /// 503: undecided or unavailable, with Retry-After.
    Unavailable { retry_after: bool },
    /// No answer: connection refused or reset, timeout.
    NoAnswer,
    /// Any other status: never expected.
    Unexpected(u16),
}

/// When a request left and when its answer came (or the client gave up on
/// it): if it took effect, it did at some instant in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub sent: DateTime<Utc>,
    pub answered: DateTime<Utc>,
}

impl Span {
    /// Whether this request took effect, if at all, before `later` did:
    /// the one order of two requests a history can be sure of.
    pub fn precedes(&self, later: &Span) -> bool {
        self.answered < later.sent
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimRecord {
    pub key: String,
    pub claimant: String,
    #[serde(flatten)]
    pub span: Span,
    pub answer: ClaimAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TransitionKind {
    Complete,
    Release,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionRecord {
    pub key: String,
    pub token: String,
    pub kind: TransitionKind,
    #[serde(flatten)]
    pub span: Span,
    /// The HTTP status, or `None` when there was no answer.
    pub status: Option<u16>,
    /// The answer's body was not what the API sends for its status.
    pub malformed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SequenceAnswer {
    Accepted,
    /// 409 duplicate or gap, with the watermark the service reported.
    Duplicate {
        last: u64,
    },
    Gap {
        last: u64,
    },
    Unavailable {
        retry_after: bool,
    },
    NoAnswer,
    Unexpected(u16),
}

#[derive(Debug, Clone, Serialize)]
pub struct SequenceRecord {
    pub stream: String,
    pub seq: u64,
    /// The consumer's `offerer` id: it retries an offer whose answer it
    /// did not get, and a number it won answers "accepted" again.
    pub offerer: String,
    #[serde(flatten)]
    pub span: Span,
    pub answer: SequenceAnswer,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct History {
    pub claims: Vec<ClaimRecord>,
    pub transitions: Vec<TransitionRecord>,
    pub sequences: Vec<SequenceRecord>,
}

/// The figures of one run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub grants: u64,
    pub takeovers: u64,
    pub reentrant: u64,
    pub duplicates_in_progress: u64,
    pub duplicates_completed: u64,
    pub unavailable_503: u64,
    pub no_answer: u64,
    pub completions: u64,
    pub releases: u64,
    pub sequence_offers: u64,
    pub sequence_accepted: u64,
    pub sequence_duplicates: u64,
    pub keys_claimed: u64,
}

/// A grant: the first time a token was seen, and what became of it.
#[derive(Debug, Clone)]
struct Grant {
    token: String,
    claimant: String,
    span: Span,
    lease_end: Option<DateTime<Utc>>,
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

impl History {
    pub fn merge(&mut self, other: History) {
        self.claims.extend(other.claims);
        self.transitions.extend(other.transitions);
        self.sequences.extend(other.sequences);
    }

    pub fn figures(&self) -> Figures {
        let mut figures = Figures {
            requests: (self.claims.len() + self.transitions.len() + self.sequences.len()) as u64,
            ..Figures::default()
        };
        let mut tokens = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for record in &self.claims {
            keys.insert(record.key.as_str());
            match &record.answer {
                ClaimAnswer::Granted {
                    token, takeover, ..
                } => {
                    if tokens.insert(token.as_str()) {
                        figures.grants += 1;
                        figures.takeovers += u64::from(*takeover);
                    } else {
                        figures.reentrant += 1;
                    }
                }
                ClaimAnswer::Duplicate {
                    completed: true, ..
                } => figures.duplicates_completed += 1,
                ClaimAnswer::Duplicate { .. } => figures.duplicates_in_progress += 1,
                ClaimAnswer::Unavailable { .. } => figures.unavailable_503 += 1,
                ClaimAnswer::NoAnswer => figures.no_answer += 1,
                ClaimAnswer::Unexpected(_) => {}
            }
        }
        figures.keys_claimed = keys.len() as u64;
        for transition in &self.transitions {
            match (transition.kind, transition.status) {
                (TransitionKind::Complete, Some(200)) => figures.completions += 1,
                (TransitionKind::Release, Some(200)) => figures.releases += 1,
                (_, None) => figures.no_answer += 1,
                (_, Some(503)) => figures.unavailable_503 += 1,
                _ => {}
            }
        }
        for record in &self.sequences {
            figures.sequence_offers += 1;
            match record.answer {
                SequenceAnswer::Accepted => figures.sequence_accepted += 1,
                SequenceAnswer::Duplicate { .. } => figures.sequence_duplicates += 1,
                SequenceAnswer::Unavailable { .. } => figures.unavailable_503 += 1,
                SequenceAnswer::NoAnswer => figures.no_answer += 1,
                _ => {}
            }
        }
        figures
    }

    /// Every way the history breaks the guarantee; empty when it holds.
    pub fn violations(&self) -> Vec<String> {
        let mut violations = Vec::new();
        self.check_answers(&mut violations);
        self.check_double_grants(&mut violations);
        self.check_duplicate_holders(&mut violations);
        self.check_sequences(&mut violations);
        violations
    }

    /// Answers the API never gives: other statuses, a 503 without
    /// Retry-After.
    fn check_answers(&self, violations: &mut Vec<String>) {
        for record in &self.claims {
            match record.answer {
                ClaimAnswer::Unexpected(status) => {
                    violations.push(format!("claim of {} answered {status}", record.key))
                }
                ClaimAnswer::Unavailable { retry_after: false } => violations.push(format!(
                    "claim of {} answered 503 without Retry-After",
                    record.key
                )),
                _ => {}
            }
        }
        for record in &self.sequences {
            match record.answer {
                SequenceAnswer::Unexpected(status) => violations.push(format!(
                    "offer of {} to {} answered {status}",
                    record.seq, record.stream
                )),
                SequenceAnswer::Unavailable { retry_after: false } => violations.push(format!(
                    "offer to {} answered 503 without Retry-After",
                    record.stream
                )),
                _ => {}
            }
        }
        for transition in &self.transitions {
            if let (Some(status), true) = (transition.status, transition.malformed) {
                violations.push(format!(
                    "{:?} of {} answered {status} with a body the client could not read",
                    transition.kind, transition.key
                ));
            } else if let Some(status) = transition.status
                && !matches!(status, 200 | 404 | 409 | 503)
            {
                violations.push(format!(
                    "{:?} of {} answered {status}",
                    transition.kind, transition.key
                ));
            }
        }
    }

    fn grants_by_key(&self) -> BTreeMap<&str, Vec<Grant>> {
        let mut grants: BTreeMap<&str, Vec<Grant>> = BTreeMap::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for record in &self.claims {
            let ClaimAnswer::Granted {
                token, lease_end, ..
            } = &record.answer
            else {
                continue;
            };
            let list = grants.entry(record.key.as_str()).or_default();
            match seen.get(token.as_str()) {
                // The same token again (a re-entrant claim): the same grant.
                Some(&index) => {
                    let grant = &mut list[index];
                    grant.lease_end = grant.lease_end.max(*lease_end);
                }
                None => {
                    seen.insert(token.as_str(), list.len());
                    list.push(Grant {
                        token: token.clone(),
                        claimant: record.claimant.clone(),
                        span: record.span,
                        lease_end: *lease_end,
                    });
                }
            }
        }
        grants
    }

    /// No key is granted to a second token while an earlier grant is live:
    /// not released, not past its lease, and never after a completion.
    fn check_double_grants(&self, violations: &mut Vec<String>) {
        let completed: BTreeSet<&str> = self
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Complete && t.status == Some(200))
            .map(|t| t.token.as_str())
            .collect();
        // A release that was not refused may have applied: only a 404 or
        // 409 proves it did not.
        let released: HashMap<&str, DateTime<Utc>> = self
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Release && !matches!(t.status, Some(404 | 409)))
            .fold(HashMap::new(), |mut first, t| {
                let entry = first.entry(t.token.as_str()).or_insert(t.span.sent);
                *entry = (*entry).min(t.span.sent);
                first
            });
        for (key, grants) in self.grants_by_key() {
            for earlier in &grants {
                for later in &grants {
                    // Only pairs whose order is certain: the later one was
                    // sent after the earlier one was answered.
                    if later.token == earlier.token || !earlier.span.precedes(&later.span) {
                        continue;
                    }
                    if completed.contains(earlier.token.as_str()) {
                        violations.push(format!(
                            "double grant on {key}: {} was granted at {} after {} had completed",
                            later.token, later.span.answered, earlier.token
                        ));
                        continue;
                    }
                    let released_in_time = released
                        .get(earlier.token.as_str())
                        .is_some_and(|at| *at <= later.span.answered);
                    let lease_passed = earlier
                        .lease_end
                        .is_some_and(|end| ms(end) <= ms(later.span.answered) + CLOCK_SLACK_MS);
                    if !released_in_time && !lease_passed {
                        violations.push(format!(
                            "double grant on {key}: {} (claimant {}) was granted at {} while {} (claimant {}) held it until {:?}",
                            later.token,
                            later.claimant,
                            later.span.answered,
                            earlier.token,
                            earlier.claimant,
                            earlier.lease_end
                        ));
                    }
                }
            }
        }
    }

    /// No lost claims: whoever a 409 says holds a key must be a claimant
    /// that was granted it, or one whose claim of that key got no answer
    /// (a 503 or a lost connection: it may have landed), or one whose claim
    /// was still being decided when its lease ran out (it landed, resolving
    /// its unknown outcome outlasted the lease, someone took over, and
    /// "duplicate" naming the new holder was the truth when it heard it).
    /// A holder that was only ever answered "duplicate" while its lease was
    /// live was told a lie.
    fn check_duplicate_holders(&self, violations: &mut Vec<String>) {
        let mut may_hold: BTreeMap<(&str, &str), DateTime<Utc>> = BTreeMap::new();
        for record in &self.claims {
            let could_hold = matches!(
                record.answer,
                ClaimAnswer::Granted { .. }
                    | ClaimAnswer::Unavailable { .. }
                    | ClaimAnswer::NoAnswer
            );
            if could_hold {
                let entry = may_hold
                    .entry((record.key.as_str(), record.claimant.as_str()))
                    .or_insert(record.span.sent);
                *entry = (*entry).min(record.span.sent);
            }
        }
        for record in &self.claims {
            let ClaimAnswer::Duplicate {
                completed: false,
                holder: Some(holder),
                ..
            } = &record.answer
            else {
                continue;
            };
            if holder == &record.claimant {
                violations.push(format!(
                    "claim of {} by {} was answered duplicate, but {} itself holds it: it should have had its token back",
                    record.key, record.claimant, holder
                ));
                continue;
            }
            let lease_end = match &record.answer {
                ClaimAnswer::Duplicate { lease_end, .. } => *lease_end,
                _ => None,
            };
            let decided_after_its_lease = |claim: &&ClaimRecord| {
                claim.key == record.key
                    && &claim.claimant == holder
                    && claim.span.sent <= record.span.answered
                    && lease_end.is_some_and(|end| claim.span.answered >= end)
            };
            let explained = may_hold
                .get(&(record.key.as_str(), holder.as_str()))
                .is_some_and(|first| *first <= record.span.answered)
                || self
                    .claims
                    .iter()
                    .any(|claim| decided_after_its_lease(&claim));
            if !explained {
                violations.push(format!(
                    "lost claim on {}: held by {holder}, whose every claim of it was answered duplicate",
                    record.key
                ));
            }
        }
    }

    /// No sequence number is accepted twice for one stream, and the
    /// watermark a refusal reports never lies below a number whose
    /// acceptance was answered before that refusal's request was sent.
    fn check_sequences(&self, violations: &mut Vec<String>) {
        let mut accepted: HashMap<(&str, u64), usize> = HashMap::new();
        for record in &self.sequences {
            if record.answer == SequenceAnswer::Accepted {
                *accepted
                    .entry((record.stream.as_str(), record.seq))
                    .or_default() += 1;
            }
        }
        for refusal in &self.sequences {
            let (SequenceAnswer::Duplicate { last } | SequenceAnswer::Gap { last }) =
                refusal.answer
            else {
                continue;
            };
            let highest_known = self
                .sequences
                .iter()
                .filter(|other| {
                    other.stream == refusal.stream
                        && other.answer == SequenceAnswer::Accepted
                        && other.span.precedes(&refusal.span)
                })
                .map(|other| other.seq)
                .max();
            if let Some(highest) = highest_known
                && last < highest
            {
                violations.push(format!(
                    "stream {} reported last = {last} after {highest} had been accepted",
                    refusal.stream
                ));
            }
        }
        // No number lost: every number a refusal shows as taken (at or
        // below the reported watermark) was accepted by a client that heard
        // so, or its offerer never learned the outcome: its last offer of
        // the number got no answer or a 503 (the phase ended before its
        // retry was decided). Consumers retry an undecided offer with their
        // offerer id, and an offerer's own number answers "accepted" again,
        // so an earlier unanswered offer excuses nothing. Taken, but every
        // offer of it refused, means the winner was told "duplicate".
        let mut highest_taken: HashMap<&str, u64> = HashMap::new();
        let mut heard_or_undecided: BTreeSet<(&str, u64)> = BTreeSet::new();
        let mut last_word: HashMap<(&str, u64, &str), &SequenceRecord> = HashMap::new();
        for record in &self.sequences {
            let stream = record.stream.as_str();
            match record.answer {
                SequenceAnswer::Duplicate { last } | SequenceAnswer::Gap { last } => {
                    let highest = highest_taken.entry(stream).or_default();
                    *highest = (*highest).max(last);
                }
                SequenceAnswer::Accepted => {
                    heard_or_undecided.insert((stream, record.seq));
                }
                SequenceAnswer::NoAnswer
                | SequenceAnswer::Unavailable { .. }
                | SequenceAnswer::Unexpected(_) => {}
            }
            last_word
                .entry((stream, record.seq, record.offerer.as_str()))
                .and_modify(|latest| {
                    if record.span.sent > latest.span.sent {
                        *latest = record;
                    }
                })
                .or_insert(record);
        }
        for ((stream, seq, _), latest) in last_word {
            if matches!(
                latest.answer,
                SequenceAnswer::NoAnswer | SequenceAnswer::Unavailable { .. }
            ) {
                heard_or_undecided.insert((stream, seq));
            }
        }
        let mut streams: Vec<_> = highest_taken.into_iter().collect();
        streams.sort();
        for (stream, highest) in streams {
            for seq in 1..=highest {
                if !heard_or_undecided.contains(&(stream, seq)) {
                    violations.push(format!(
                        "lost number on stream {stream}: {seq} was taken, but every offer of it was refused"
                    ));
                }
            }
        }
        let mut twice: Vec<_> = accepted.into_iter().filter(|(_, n)| *n > 1).collect();
        twice.sort();
        for ((stream, seq), times) in twice {
            violations.push(format!("{seq} accepted {times} times on stream {stream}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn span(sent: i64, answered: i64) -> Span {
        Span {
            sent: at(sent),
            answered: at(answered),
        }
    }

    fn claims(claims: Vec<ClaimRecord>) -> History {
        claims_and_transitions(claims, Vec::new())
    }

    fn claims_and_transitions(
        claims: Vec<ClaimRecord>,
        transitions: Vec<TransitionRecord>,
    ) -> History {
        History {
            claims,
            transitions,
            ..History::default()
        }
    }

    fn offers(sequences: Vec<SequenceRecord>) -> History {
        History {
            sequences,
            ..History::default()
        }
    }

    /// A claim of `key` by `claimant`, sent and answered within `span`.
    fn claim(key: &str, claimant: &str, span: Span, answer: ClaimAnswer) -> ClaimRecord {
        ClaimRecord {
            key: key.into(),
            claimant: claimant.into(),
            span,
            answer,
        }
    }

    fn grant(
        key: &str,
        claimant: &str,
        token: &str,
        sent: i64,
        answered: i64,
        lease_end: i64,
    ) -> ClaimRecord {
        let granted = ClaimAnswer::Granted {
            token: token.into(),
            takeover: false,
            lease_end: Some(at(lease_end)),
        };
        claim(key, claimant, span(sent, answered), granted)
    }

    /// The grant most tests start from: "a" holds "k" as t1, granted at
    /// 10 ms, until 2 s.
    fn a_holds_k() -> ClaimRecord {
        grant("k", "a", "t1", 0, 10, 2000)
    }

    /// `claimant` told that `holder` holds `key`, for two more seconds.
    fn duplicate(key: &str, claimant: &str, holder: &str, answered: i64) -> ClaimRecord {
        let duplicate = ClaimAnswer::Duplicate {
            completed: false,
            holder: Some(holder.into()),
            lease_end: Some(at(answered) + Duration::seconds(2)),
        };
        claim(key, claimant, span(answered - 5, answered), duplicate)
    }

    fn transition(
        token: &str,
        kind: TransitionKind,
        sent: i64,
        status: Option<u16>,
    ) -> TransitionRecord {
        TransitionRecord {
            key: "k".into(),
            token: token.into(),
            kind,
            span: span(sent, sent + 1),
            status,
            malformed: false,
        }
    }

    /// An offer of `seq` on stream `s`, answered a millisecond after `sent`.
    fn offer(offerer: &str, seq: u64, sent: i64, answer: SequenceAnswer) -> SequenceRecord {
        SequenceRecord {
            stream: "s".into(),
            seq,
            offerer: offerer.into(),
            span: span(sent, sent + 1),
            answer,
        }
    }

    #[test]
    fn a_second_grant_inside_a_live_lease_is_a_double_grant() {
        let history = claims(vec![a_holds_k(), grant("k", "b", "t2", 500, 510, 2500)]);
        let violations = history.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].starts_with("double grant on k"));
    }

    #[test]
    fn takeover_after_the_lease_and_grant_after_release_are_fine() {
        let history = claims_and_transitions(
            vec![
                a_holds_k(),
                grant("k", "b", "t2", 1990, 2010, 4000),
                grant("k", "c", "t3", 3000, 3010, 5000),
            ],
            vec![transition("t2", TransitionKind::Release, 2900, None)],
        );
        assert_eq!(history.violations(), Vec::<String>::new());
    }

    #[test]
    fn a_refused_release_does_not_excuse_a_grant() {
        let history = claims_and_transitions(
            vec![a_holds_k(), grant("k", "b", "t2", 500, 510, 2500)],
            vec![transition("t1", TransitionKind::Release, 100, Some(409))],
        );
        assert_eq!(history.violations().len(), 1);
    }

    #[test]
    fn nothing_is_granted_after_a_completion_even_past_the_lease() {
        let history = claims_and_transitions(
            vec![a_holds_k(), grant("k", "b", "t2", 3000, 3010, 5000)],
            vec![transition("t1", TransitionKind::Complete, 100, Some(200))],
        );
        let violations = history.violations();
        assert!(violations[0].contains("had completed"), "{violations:?}");
    }

    #[test]
    fn a_transition_answered_with_an_unreadable_body_is_a_violation() {
        let mut malformed = transition("t1", TransitionKind::Complete, 100, Some(200));
        malformed.malformed = true;
        let history = claims_and_transitions(vec![a_holds_k()], vec![malformed]);
        let violations = history.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("could not read"), "{violations:?}");
    }

    #[test]
    fn the_same_token_twice_is_one_grant() {
        let history = claims(vec![a_holds_k(), grant("k", "a", "t1", 500, 510, 2000)]);
        assert!(history.violations().is_empty());
        assert_eq!(history.figures().grants, 1);
        assert_eq!(history.figures().reentrant, 1);
    }

    #[test]
    fn a_holder_nobody_granted_is_a_lost_claim() {
        // "a" was answered duplicate for its own winning claim: nobody
        // knows the key is taken by "a".
        let history = claims(vec![
            duplicate("k", "a", "b", 100),
            duplicate("k", "c", "a", 200),
        ]);
        let violations = history.violations();
        assert!(
            violations.iter().any(|v| v.starts_with("lost claim on k")),
            "{violations:?}"
        );
    }

    #[test]
    fn a_holder_decided_only_after_its_lease_ended_is_explained() {
        // "a"'s claim landed, but deciding it took until after a's lease
        // (ending at 2.1 s) and b's takeover: "held by b" was true at 5 s.
        let mut slow = duplicate("k", "a", "b", 5000);
        slow.span.sent = at(0);
        let takeover = claim(
            "k",
            "b",
            span(2500, 2600),
            ClaimAnswer::Granted {
                token: "t-b".into(),
                takeover: true,
                lease_end: Some(at(4600)),
            },
        );
        let history = claims(vec![slow, duplicate("k", "c", "a", 100), takeover]);
        let violations = history.violations();
        assert!(
            !violations.iter().any(|v| v.starts_with("lost claim on k")),
            "{violations:?}"
        );
    }

    #[test]
    fn a_holder_whose_claim_got_no_answer_is_explained() {
        let no_answer = claim("k", "a", span(0, 50), ClaimAnswer::NoAnswer);
        let history = claims(vec![no_answer, duplicate("k", "c", "a", 200)]);
        assert!(history.violations().is_empty());
    }

    #[test]
    fn a_duplicate_told_to_the_holder_itself_is_a_violation() {
        let history = claims(vec![a_holds_k(), duplicate("k", "a", "a", 100)]);
        assert_eq!(history.violations().len(), 1);
    }

    #[test]
    fn a_number_accepted_twice_is_a_violation() {
        let history = offers(vec![
            offer("c", 1, 0, SequenceAnswer::Accepted),
            offer("c", 2, 0, SequenceAnswer::Accepted),
            offer("c", 2, 0, SequenceAnswer::Duplicate { last: 2 }),
            offer("c", 2, 0, SequenceAnswer::Accepted),
        ]);
        assert_eq!(
            history.violations(),
            vec!["2 accepted 2 times on stream s".to_owned()]
        );
    }

    #[test]
    fn a_watermark_below_an_acknowledged_acceptance_is_a_violation() {
        let history = offers(vec![
            SequenceRecord {
                span: span(0, 10),
                ..offer("a", 5, 0, SequenceAnswer::Accepted)
            },
            SequenceRecord {
                span: span(20, 30),
                ..offer("b", 5, 20, SequenceAnswer::Duplicate { last: 4 })
            },
        ]);
        assert!(
            history
                .violations()
                .contains(&"stream s reported last = 4 after 5 had been accepted".to_owned())
        );
    }

    #[test]
    fn a_number_taken_but_refused_to_everyone_is_lost() {
        let is_lost = |history: &History| {
            history
                .violations()
                .iter()
                .any(|v| v.contains("lost number on stream s: 2"))
        };
        // 2 was taken (3 saw last = 2) but its only offer heard "duplicate".
        let lost = offers(vec![
            offer("a", 1, 0, SequenceAnswer::Accepted),
            offer("a", 2, 2, SequenceAnswer::Duplicate { last: 2 }),
            offer("b", 3, 4, SequenceAnswer::Duplicate { last: 2 }),
        ]);
        assert!(is_lost(&lost));
        // An offer of 2 left unanswered at the end: its acceptance may have
        // gone unheard.
        let undecided = offers(vec![
            offer("a", 1, 0, SequenceAnswer::Accepted),
            offer("b", 2, 2, SequenceAnswer::Duplicate { last: 2 }),
            offer("a", 2, 4, SequenceAnswer::NoAnswer),
        ]);
        assert!(
            undecided.violations().is_empty(),
            "{:?}",
            undecided.violations()
        );
        // Unanswered, then retried by the same offerer and refused: the
        // retry would have heard "accepted" had its first offer won, so
        // someone else's refusal means the number was lost.
        let retried = offers(vec![
            offer("a", 1, 0, SequenceAnswer::Accepted),
            offer("a", 2, 2, SequenceAnswer::NoAnswer),
            offer("a", 2, 4, SequenceAnswer::Duplicate { last: 2 }),
        ]);
        assert!(is_lost(&retried));
    }

    #[test]
    fn a_503_without_retry_after_is_a_violation() {
        let unavailable = ClaimAnswer::Unavailable { retry_after: false };
        let history = claims(vec![claim("k", "a", span(0, 1), unavailable)]);
        assert_eq!(history.violations().len(), 1);
    }

    #[test]
    fn only_a_request_answered_before_another_was_sent_precedes_it() {
        assert!(span(0, 10).precedes(&span(11, 20)));
        assert!(!span(0, 10).precedes(&span(10, 20)));
        assert!(!span(0, 10).precedes(&span(5, 20)));
    }
}
