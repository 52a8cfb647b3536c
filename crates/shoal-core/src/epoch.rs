//! Frame epochs: telling a frame from another that was given the same seq after a rollback.
//!
//! A backend whose acknowledged writes can be rolled back — Redis after a failover to a
//! replica that had not received the newest appends, or after a restart from an older
//! snapshot — hands the lost frames' seqs out again. An SSE event id made of a seq alone
//! then names a different frame than the one the client received, and a resume after it
//! skips or misdelivers events.
//!
//! Such a backend tracks the *epochs* of each session's frames: a new epoch starts at the
//! first append after the server's identity changed (Redis: its replication id, which a
//! promotion and a restart both change). An epoch is named by a number taken from that
//! identity (random, never reused; epochs are ordered by where they start, not by their
//! numbers). Every frame belongs to the epoch it was appended in, and an event id carries the
//! pair (epoch, seq). [`FrameEpochs::resume_after`] turns such a pair back into a safe
//! cursor: frames of a later epoch that reuse seqs at or before the id's seq were never seen
//! by the holder of the id, so the resume starts before them.
//!
//! Epoch 0 means "not known": the memory backend (which cannot roll back) and frames written
//! before a backend kept epochs. An id with epoch 0 is resumed after its seq, as before.

use std::fmt;

/// The most epoch starts a session keeps; the oldest is merged into the next (which can only
/// make a resume start earlier, never skip a frame).
pub const MAX_EPOCH_STARTS: usize = 3;

/// Where an epoch begins among a session's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    /// The epoch's number (not 0).
    pub epoch: u64,
    /// The seq of its first frame.
    pub first_seq: u64,
}

/// The epochs of a session's frames in the order they started: each entry starts an epoch
/// at a seq, and a frame belongs to the last entry starting at or before its seq (epoch 0
/// before the first entry). Empty for a backend without epochs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameEpochs(Vec<EpochStart>);

impl FrameEpochs {
    /// Epochs from starts in order: seqs strictly increasing, epochs not 0 and none twice;
    /// `None` otherwise.
    pub fn from_starts(starts: Vec<EpochStart>) -> Option<Self> {
        let ordered = starts.windows(2).all(|w| w[0].first_seq < w[1].first_seq);
        let distinct = starts
            .iter()
            .enumerate()
            .all(|(i, s)| s.epoch > 0 && starts[..i].iter().all(|o| o.epoch != s.epoch));
        (ordered && distinct).then_some(FrameEpochs(starts))
    }

    /// The starts, in order.
    pub fn starts(&self) -> &[EpochStart] {
        &self.0
    }

    /// Whether no epoch is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The epoch of the frame with `seq` (0 when no epoch covers it).
    pub fn of(&self, seq: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .find(|s| s.first_seq <= seq)
            .map_or(0, |s| s.epoch)
    }

    /// The newest epoch (0 when none is known).
    pub fn current(&self) -> u64 {
        self.0.last().map_or(0, |s| s.epoch)
    }

    /// Notes that frames from `first_seq` on were appended in `epoch`: an epoch other than
    /// the newest starts there (when `first_seq` is past the newest start); the newest
    /// changes nothing. At most [`MAX_EPOCH_STARTS`] are kept.
    pub fn record(&mut self, epoch: u64, first_seq: u64) {
        let starts_here = epoch > 0
            && self
                .0
                .last()
                .is_none_or(|last| epoch != last.epoch && first_seq > last.first_seq);
        if starts_here {
            // An epoch that comes back (a name taken again) is a new start: the old entry goes.
            self.0.retain(|s| s.epoch != epoch);
            self.0.push(EpochStart { epoch, first_seq });
            self.bound();
        }
    }

    /// Merges the oldest start into the next while more than [`MAX_EPOCH_STARTS`] are held:
    /// the next keeps its epoch and takes the older seq, so the frames in between count as
    /// the newer epoch (a resume from them may repeat frames, never skip one).
    fn bound(&mut self) {
        while self.0.len() > MAX_EPOCH_STARTS {
            let oldest = self.0.remove(0);
            self.0[0].first_seq = oldest.first_seq;
        }
    }

    /// The seq to resume after for an event id (`epoch`, `seq`): `seq` itself, unless frames
    /// of an epoch that started after the id's epoch begin at or before it — those reuse
    /// seqs of frames that were lost (the id's holder never received them), so the resume
    /// starts right before the first. An epoch no longer listed (lost in a rollback, or
    /// merged) resumes before the first listed epoch if that starts at or before `seq`.
    /// Epoch 0 (not known) resumes after `seq`.
    pub fn resume_after(&self, epoch: u64, seq: u64) -> u64 {
        if epoch == 0 {
            return seq;
        }
        let later = match self.0.iter().position(|s| s.epoch == epoch) {
            Some(i) => self.0.get(i + 1),
            None => self.0.first(),
        };
        match later {
            Some(next) if next.first_seq <= seq => next.first_seq.saturating_sub(1),
            _ => seq,
        }
    }
}

impl fmt::Display for FrameEpochs {
    /// `epoch@first_seq` pairs separated by commas (empty when none is known).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}@{}", s.epoch, s.first_seq)?;
        }
        Ok(())
    }
}

/// What an append wrote: the frames' seqs and the epoch they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendedFrames {
    /// The seqs, in the order the frames were given.
    pub seqs: Vec<u64>,
    /// The epoch every one of them was appended in (0 when the backend keeps none).
    pub epoch: u64,
}

impl AppendedFrames {
    /// Seqs appended in `epoch`.
    pub fn new(seqs: Vec<u64>, epoch: u64) -> Self {
        AppendedFrames { seqs, epoch }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(pairs: &[(u64, u64)]) -> FrameEpochs {
        FrameEpochs::from_starts(
            pairs
                .iter()
                .map(|&(epoch, first_seq)| EpochStart { epoch, first_seq })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn frames_belong_to_the_last_start_at_or_before_them() {
        let e = epochs(&[(7, 1), (3, 101), (9, 150)]);
        assert_eq!(e.of(0), 0);
        assert_eq!(e.of(1), 7);
        assert_eq!(e.of(100), 7);
        assert_eq!(e.of(101), 3);
        assert_eq!(e.of(149), 3);
        assert_eq!(e.of(10_000), 9);
        assert_eq!(e.current(), 9);
        assert_eq!(FrameEpochs::default().of(7), 0);
        assert_eq!(e.to_string(), "7@1,3@101,9@150");
    }

    #[test]
    fn a_resume_starts_before_seqs_reused_by_a_later_epoch() {
        // Frames 101..=105 of epoch 7 were lost; epoch 3 reused 101.. for new frames.
        let e = epochs(&[(7, 1), (3, 101)]);
        // The client holds epoch 7's frame 105: it never saw epoch 3's 101..
        assert_eq!(e.resume_after(7, 105), 100);
        // An id from before the lost part resumes after itself.
        assert_eq!(e.resume_after(7, 100), 100);
        assert_eq!(e.resume_after(7, 50), 50);
        // Ids of the current epoch are what they say.
        assert_eq!(e.resume_after(3, 103), 103);
        // A failover that lost nothing: the next epoch starts after the id.
        let clean = epochs(&[(7, 1), (3, 106)]);
        assert_eq!(clean.resume_after(7, 105), 105);
        // An epoch that is not listed (its start was lost too): before the first listed one.
        assert_eq!(e.resume_after(5, 108), 0);
        assert_eq!(epochs(&[(3, 50)]).resume_after(5, 40), 40);
        // Not known: as before.
        assert_eq!(e.resume_after(0, 105), 105);
        assert_eq!(FrameEpochs::default().resume_after(3, 9), 9);
    }

    #[test]
    fn recording_keeps_order_and_a_bound_that_never_skips() {
        let mut e = FrameEpochs::default();
        e.record(0, 1);
        assert!(e.is_empty(), "epoch 0 is not an epoch");
        e.record(11, 1);
        e.record(11, 5);
        e.record(22, 10);
        e.record(33, 5);
        assert_eq!(
            e.to_string(),
            "11@1,22@10",
            "a start before the newest is ignored"
        );
        e.record(33, 20);
        e.record(44, 30);
        // Epoch 11 merged into 22: frames 1..=9 now count as epoch 22.
        assert_eq!(e.to_string(), "22@1,33@20,44@30");
        // An epoch-11 id resumes no later than it would have before the merge.
        assert_eq!(e.resume_after(11, 8), 0);
        let twice = vec![
            EpochStart {
                epoch: 2,
                first_seq: 5,
            },
            EpochStart {
                epoch: 2,
                first_seq: 9,
            },
        ];
        assert!(FrameEpochs::from_starts(twice).is_none());
        let unordered = vec![
            EpochStart {
                epoch: 1,
                first_seq: 9,
            },
            EpochStart {
                epoch: 2,
                first_seq: 5,
            },
        ];
        assert!(FrameEpochs::from_starts(unordered).is_none());
    }
}
