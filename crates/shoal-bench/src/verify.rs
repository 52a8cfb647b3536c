//! `--verify`: re-read every frame the bench wrote and compare it with what the store
//! acknowledged.
//!
//! Each frame's content starts with `<session id>|<writer>|<n>|`: the writer is one task of one
//! phase and `n` its running count, so the pair (the [`Fingerprint`]) is unique across the run.
//! Every acknowledged append is recorded as an [`Ack`] (session, fingerprint, seq). Reading the
//! session back then shows:
//! - **lost**: an acknowledged frame that is not there;
//! - **duplicated**: a frame that is there twice, or a seq the store handed out twice;
//! - **out of order**: seqs that do not strictly increase in the read, or a frame found at a seq
//!   other than the one its append returned;
//! - **trimmed**: acknowledged frames older than the session's `first_seq` while the session is
//!   at the store's `max_frames_per_session` cap — legitimately gone, not lost;
//! - **unexpected**: frames no acknowledged append wrote (foreign or unreadable content, or an
//!   append that failed but was written). Reported, but not a failure.

use std::{collections::HashMap, sync::Arc};

use anyhow::Context as _;
use serde::Serialize;
use shoal_core::{FrameQuery, SessionId, SessionStore};

use crate::workload::Plan;

/// Who wrote a frame: a writer (one task of one phase) and its running count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint {
    /// The writer.
    pub(crate) writer: u32,
    /// The writer's running count.
    pub(crate) n: u64,
}

/// An append the store acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Index of the session in the plan's pool.
    pub(crate) session: u32,
    /// What was written.
    pub(crate) fp: Fingerprint,
    /// The seq the store returned.
    pub(crate) seq: u64,
}

/// A frame as read back: its seq and, when its content is ours and for this session, its
/// fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadFrame {
    /// The seq the store reports.
    pub(crate) seq: u64,
    /// The fingerprint in its content (`None`: not written by this bench for this session).
    pub(crate) fp: Option<Fingerprint>,
}

/// The frame content for `fp` in session `id`: the fingerprint header, padded with `.` to
/// `size` bytes (longer when the header alone exceeds `size`).
pub(crate) fn frame_content(id: &SessionId, fp: Fingerprint, size: usize) -> Vec<u8> {
    let mut v = format!("{id}|{}|{}|", fp.writer, fp.n).into_bytes();
    if v.len() < size {
        v.resize(size, b'.');
    }
    v
}

/// The session id and fingerprint in a frame's content, if it has the bench's format.
pub(crate) fn parse_content(content: &[u8]) -> Option<(&str, Fingerprint)> {
    let s = std::str::from_utf8(content).ok()?;
    let mut parts = s.rsplitn(4, '|');
    let padding = parts.next()?;
    let n = parts.next()?.parse().ok()?;
    let writer = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    if !padding.bytes().all(|b| b == b'.') {
        return None;
    }
    Some((id, Fingerprint { writer, n }))
}

/// What `--verify` found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct VerifyReport {
    /// Sessions read back.
    pub(crate) sessions: u64,
    /// Acknowledged appends checked.
    pub(crate) checked: u64,
    /// Acknowledged frames missing.
    pub(crate) lost: u64,
    /// Frames read more than once, or seqs acknowledged more than once.
    pub(crate) duplicated: u64,
    /// Seqs out of order in the read, or frames at a seq other than their acknowledged one.
    pub(crate) out_of_order: u64,
    /// Acknowledged frames legitimately trimmed by the store's retention cap.
    pub(crate) trimmed: u64,
    /// Frames read that no acknowledged append wrote.
    pub(crate) unexpected: u64,
}

impl VerifyReport {
    /// True when nothing was lost, duplicated or reordered.
    pub(crate) fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }

    /// Adds `other`'s counts to this one.
    pub(crate) fn add(&mut self, other: &VerifyReport) {
        self.sessions += other.sessions;
        self.checked += other.checked;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.trimmed += other.trimmed;
        self.unexpected += other.unexpected;
    }
}

/// Compares one session's acknowledged appends (fingerprint, seq) with the frames read back.
///
/// `trim_floor` is the session's `first_seq` when the store legitimately trimmed (the session
/// is at its retention cap): acknowledged frames with a lower seq count as trimmed, not lost.
pub(crate) fn check_session(
    acked: &[(Fingerprint, u64)],
    read: &[ReadFrame],
    trim_floor: Option<u64>,
) -> VerifyReport {
    let mut r = VerifyReport {
        sessions: 1,
        ..VerifyReport::default()
    };
    let mut acked_at: HashMap<Fingerprint, u64> = HashMap::with_capacity(acked.len());
    let mut acked_seqs: HashMap<u64, u32> = HashMap::with_capacity(acked.len());
    for (fp, seq) in acked {
        acked_at.insert(*fp, *seq);
        let times = acked_seqs.entry(*seq).or_insert(0);
        *times += 1;
        if *times > 1 {
            // The store handed out the same seq to two appends.
            r.duplicated += 1;
        }
    }
    let mut seen: HashMap<Fingerprint, u64> = HashMap::with_capacity(read.len());
    let mut prev: Option<u64> = None;
    for f in read {
        if prev.is_some_and(|p| f.seq <= p) {
            r.out_of_order += 1;
        }
        prev = Some(f.seq);
        let Some(fp) = f.fp else {
            r.unexpected += 1;
            continue;
        };
        if seen.insert(fp, f.seq).is_some() {
            r.duplicated += 1;
            continue;
        }
        match acked_at.get(&fp) {
            None => r.unexpected += 1,
            Some(seq) if *seq != f.seq => r.out_of_order += 1,
            Some(_) => {}
        }
    }
    for (fp, seq) in acked {
        r.checked += 1;
        if !seen.contains_key(fp) {
            if trim_floor.is_some_and(|floor| *seq < floor) {
                r.trimmed += 1;
            } else {
                r.lost += 1;
            }
        }
    }
    r
}

/// Frames per `frames` call when reading back.
const READ_PAGE: usize = 1_000;

/// Reads every pool session of `plan` back from `store` (paged `frames` calls, with
/// `plan.concurrency` tasks) and checks it against `acks`.
pub(crate) async fn verify_store(
    store: &Arc<dyn SessionStore>,
    plan: &Arc<Plan>,
    acks: &[Ack],
) -> anyhow::Result<VerifyReport> {
    let mut by_session: Vec<Vec<(Fingerprint, u64)>> = vec![Vec::new(); plan.sessions.len()];
    for a in acks {
        let slot = by_session
            .get_mut(a.session as usize)
            .context("an acknowledged append names a session outside the pool")?;
        slot.push((a.fp, a.seq));
    }
    let by_session = Arc::new(by_session);
    let c = plan.concurrency.max(1);
    let mut handles = Vec::with_capacity(c);
    for t in 0..c {
        let store = Arc::clone(store);
        let plan = Arc::clone(plan);
        let by_session = Arc::clone(&by_session);
        handles.push(tokio::spawn(async move {
            let mut total = VerifyReport::default();
            for i in (t..plan.sessions.len()).step_by(c) {
                if plan.stopped() {
                    break;
                }
                let r = verify_session(&store, &plan.sessions[i], &by_session[i]).await?;
                total.add(&r);
            }
            Ok::<_, anyhow::Error>(total)
        }));
    }
    let mut total = VerifyReport::default();
    for h in handles {
        let r = h.await.context("verify task failed")??;
        total.add(&r);
    }
    Ok(total)
}

/// Reads one session back and checks it.
async fn verify_session(
    store: &Arc<dyn SessionStore>,
    id: &SessionId,
    acked: &[(Fingerprint, u64)],
) -> anyhow::Result<VerifyReport> {
    let Some(session) = store
        .get(id)
        .await
        .with_context(|| format!("verify: reading session {id}"))?
    else {
        // The whole session is gone: everything acknowledged is lost.
        return Ok(check_session(acked, &[], None));
    };
    let mut read = Vec::with_capacity(acked.len());
    let mut after = 0u64;
    loop {
        let page = match store.frames(id, &FrameQuery::after(after, READ_PAGE)).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => break,
            Err(e) => return Err(e).with_context(|| format!("verify: reading frames of {id}")),
        };
        for f in &page.frames {
            let fp = parse_content(&f.content)
                .filter(|(sid, _)| *sid == id.as_str() && f.session_id == *id)
                .map(|(_, fp)| fp);
            read.push(ReadFrame { seq: f.seq, fp });
        }
        let next = page.next_after(after);
        // A page that does not move forward would loop forever; what was read is checked.
        if !page.has_more || next <= after {
            break;
        }
        after = next;
    }
    let at_cap = read.len() >= store.limits().max_frames_per_session;
    Ok(check_session(
        acked,
        &read,
        at_cap.then_some(session.first_seq),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(writer: u32, n: u64) -> Fingerprint {
        Fingerprint { writer, n }
    }

    /// Acknowledged appends 1..=n by alternating writers, and a faithful read of them.
    fn clean(n: u64) -> (Vec<(Fingerprint, u64)>, Vec<ReadFrame>) {
        let acked: Vec<_> = (1..=n).map(|s| (fp((s % 2) as u32, s), s)).collect();
        let read = acked
            .iter()
            .map(|(f, s)| ReadFrame {
                seq: *s,
                fp: Some(*f),
            })
            .collect();
        (acked, read)
    }

    #[test]
    fn content_round_trips_and_is_padded() {
        let id = SessionId::new("bench-abc-s7").unwrap();
        let c = frame_content(&id, fp(3, 99), 64);
        assert_eq!(c.len(), 64);
        assert!(c.starts_with(b"bench-abc-s7|3|99|"));
        assert_eq!(parse_content(&c), Some(("bench-abc-s7", fp(3, 99))));
        // Shorter than the header: the header is kept whole.
        let short = frame_content(&id, fp(1, 2), 4);
        assert_eq!(short, b"bench-abc-s7|1|2|");
        assert_eq!(parse_content(&short), Some(("bench-abc-s7", fp(1, 2))));
        assert_eq!(parse_content(b"{\"jsonrpc\":\"2.0\"}"), None);
        assert_eq!(parse_content(b"a|1|2|xx"), None);
        assert_eq!(parse_content(&[0xff, b'|', b'1', b'|', b'2', b'|']), None);
    }

    #[test]
    fn a_faithful_read_is_clean() {
        let (acked, read) = clean(50);
        let r = check_session(&acked, &read, None);
        assert_eq!(
            r,
            VerifyReport {
                sessions: 1,
                checked: 50,
                ..VerifyReport::default()
            }
        );
        assert!(r.ok());
    }

    #[test]
    fn detects_loss() {
        let (acked, mut read) = clean(20);
        read.remove(7);
        read.remove(0);
        let r = check_session(&acked, &read, None);
        assert_eq!((r.lost, r.duplicated, r.out_of_order), (2, 0, 0));
        assert!(!r.ok());
    }

    #[test]
    fn detects_duplication_of_frames_and_of_seqs() {
        let (acked, mut read) = clean(10);
        let copy = read[4];
        read.push(ReadFrame { seq: 11, ..copy });
        let r = check_session(&acked, &read, None);
        assert_eq!((r.duplicated, r.lost, r.out_of_order), (1, 0, 0), "{r:?}");

        // The store returned the same seq for two different appends.
        let (mut acked, read) = clean(5);
        acked.push((fp(9, 9), 3));
        let r = check_session(&acked, &read, None);
        assert_eq!(r.duplicated, 1, "{r:?}");
        assert_eq!(
            r.lost, 1,
            "the second append with seq 3 was never stored: {r:?}"
        );
        assert!(!r.ok());
    }

    #[test]
    fn detects_disorder_and_misplaced_frames() {
        // Seqs going backwards in the read.
        let (acked, mut read) = clean(10);
        read.swap(3, 4);
        let r = check_session(&acked, &read, None);
        assert_eq!((r.lost, r.duplicated), (0, 0));
        assert_eq!(r.out_of_order, 1, "{r:?}");

        // Seqs in order but contents swapped: both frames sit at the wrong seq.
        let (acked, mut read) = clean(10);
        let (a, b) = (read[3].fp, read[4].fp);
        read[3].fp = b;
        read[4].fp = a;
        let r = check_session(&acked, &read, None);
        assert_eq!(r.out_of_order, 2, "{r:?}");
        assert!(!r.ok());
    }

    #[test]
    fn trimming_at_the_cap_is_not_loss_but_a_gap_above_the_floor_is() {
        let (acked, read) = clean(30);
        // The store kept seqs 21..=30.
        let r = check_session(&acked, &read[20..], Some(21));
        assert_eq!((r.trimmed, r.lost), (20, 0), "{r:?}");
        assert!(r.ok());
        // Without the cap the same read is loss.
        let r = check_session(&acked, &read[20..], None);
        assert_eq!((r.trimmed, r.lost), (0, 20), "{r:?}");
        // A hole above first_seq is loss even at the cap.
        let mut kept = read[20..].to_vec();
        kept.remove(5);
        let r = check_session(&acked, &kept, Some(21));
        assert_eq!((r.trimmed, r.lost), (20, 1), "{r:?}");
    }

    #[test]
    fn foreign_and_unacknowledged_frames_are_unexpected_only() {
        let (acked, mut read) = clean(5);
        read.push(ReadFrame { seq: 6, fp: None });
        read.push(ReadFrame {
            seq: 7,
            fp: Some(fp(77, 1)),
        });
        let r = check_session(&acked, &read, None);
        assert_eq!(r.unexpected, 2);
        assert!(r.ok());
    }

    #[test]
    fn a_missing_session_loses_everything() {
        let (acked, _) = clean(8);
        let r = check_session(&acked, &[], None);
        assert_eq!((r.checked, r.lost), (8, 8));
    }

    #[test]
    fn reports_add_up() {
        let mut a = VerifyReport {
            sessions: 1,
            checked: 2,
            lost: 3,
            duplicated: 4,
            out_of_order: 5,
            trimmed: 6,
            unexpected: 7,
        };
        let b = a;
        a.add(&b);
        assert_eq!(a.checked, 4);
        assert_eq!(a.unexpected, 14);
        assert_eq!(a.sessions, 2);
    }
}
