//! [`Record`]: one entry of the durable journal.

use serde::{Deserialize, Serialize};

use crate::{NewFrame, PendingRequest, RequestId, Session, SessionId, SessionRecord};

/// One acknowledged fallback-path call, or a step of the drain. Replaying the calls in order
/// through a fresh wrapper (breaker open) rebuilds the fallback store and the in-memory
/// journal as they were; the drain steps say what was already settled and what may have
/// reached the primary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// `create` of a session during the outage.
    Create(Session),
    /// `restore` of a session during the outage.
    Restore(Box<SessionRecord>),
    /// `update`.
    Update(Session),
    /// `touch`.
    Touch(SessionId),
    /// `delete`.
    Delete(SessionId),
    /// `append_frames`.
    Append(SessionId, Vec<NewFrame>),
    /// `delete_frames` through a seq (`None`: all).
    DeleteFrames(SessionId, Option<u64>),
    /// `add_pending`.
    AddPending(SessionId, PendingRequest),
    /// `take_pending`.
    TakePending(SessionId, RequestId),
    /// The drain is about to write this session's journaled writes into the primary, whose
    /// `last_seq` was this (0 for a session created during the outage): after a crash, those
    /// writes are in doubt and are read back before being written again.
    DrainStarted(SessionId, u64),
    /// Every journaled write of this session is settled (in the primary, or dropped by a
    /// conflict rule): the records of it before this one are done.
    Settled(SessionId),
}

impl Record {
    /// The session the record is about.
    pub(crate) fn session(&self) -> &SessionId {
        match self {
            Record::Create(s) | Record::Update(s) => &s.id,
            Record::Restore(r) => &r.session.id,
            Record::Touch(id)
            | Record::Delete(id)
            | Record::Append(id, _)
            | Record::DeleteFrames(id, _)
            | Record::AddPending(id, _)
            | Record::TakePending(id, _)
            | Record::DrainStarted(id, _)
            | Record::Settled(id) => id,
        }
    }
}

/// The records still to replay: a `Settled` record ends every earlier record of its session
/// (and is dropped with them); the rest keep their order.
pub(crate) fn live(records: Vec<Record>) -> Vec<Record> {
    let mut last_settled = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Record::Settled(id) = r {
            last_settled.insert(id.clone(), i);
        }
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(i, r)| last_settled.get(r.session()).is_none_or(|s| i > s))
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, Transport, codec};

    #[test]
    fn settled_records_end_what_came_before_them() {
        let a = SessionId::new("a").unwrap_or_else(|e| panic!("{e}"));
        let b = SessionId::new("b").unwrap_or_else(|e| panic!("{e}"));
        let records = vec![
            Record::Touch(a.clone()),
            Record::Touch(b.clone()),
            Record::DrainStarted(a.clone(), 3),
            Record::Settled(a.clone()),
            Record::Delete(a.clone()),
        ];
        assert_eq!(
            live(records),
            vec![Record::Touch(b), Record::Delete(a)],
            "a's first outage is settled; its second (the delete) and b's touch are not"
        );
    }

    #[test]
    fn records_round_trip_through_the_codec() {
        let id = SessionId::new("s1").unwrap_or_else(|e| panic!("{e}"));
        let records = vec![
            Record::Create(Session::new(id.clone(), Transport::StreamableHttp)),
            Record::Append(
                id.clone(),
                vec![NewFrame::new(
                    Direction::ServerToClient,
                    b"{\"a\":1}".to_vec(),
                )],
            ),
            Record::TakePending(id.clone(), RequestId::Number(7)),
            Record::DrainStarted(id.clone(), 42),
            Record::Settled(id.clone()),
        ];
        for r in records {
            let bytes = codec::encode(&r).unwrap_or_else(|e| panic!("{e}"));
            let back: Record = codec::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, r);
            assert_eq!(back.session(), &id);
        }
    }
}
