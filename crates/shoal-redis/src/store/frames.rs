//! A session's frames: `append_frames`, `frames`, `count_frames`, `delete_frames`.
//!
//! Frames are sent to the append script without their seq (the prefix before it once, then
//! each frame's bytes after it); the script numbers them, so seqs are totally ordered across
//! every writer.

use std::sync::Arc;

use shoal_core::{
    AppendedFrames, Change, ChangeKind, Error, Frame, FramePage, FrameQuery, Limits, NewFrame,
    Result, SessionId, codec,
};

use super::{
    exec::{array, not_found, now_arg, num_arg, u64_of},
    feed_write::FeedMode,
    handle::StoreState,
    metrics::M_FRAMES,
    sweep::ExpireOutcome,
};
use crate::meta::{self, MAX_LUA_INT, bytes_of};

/// Room for a frame's envelope, ids and seq beyond its counted size.
const ENTRY_OVERHEAD: usize = 1024;

/// A bound on the stored bytes of a session's caller-owned fields under `limits` (see
/// [`StoreState::metadata_allowance`]).
pub(crate) fn metadata_allowance(limits: &Limits) -> u64 {
    (limits.max_metadata_bytes as u64)
        .saturating_mul(2)
        .saturating_add(4096)
}

impl StoreState {
    /// A bound on the stored bytes of a session's caller-owned fields (metadata, client and
    /// server info, …): while frames and pending requests leave this much room in the budget,
    /// the scripts do not measure the metadata.
    pub(super) fn metadata_allowance(&self) -> u64 {
        metadata_allowance(&self.limits)
    }

    pub(super) async fn append_frames(
        self: &Arc<Self>,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        let max_bytes = self.limits.max_frame_bytes;
        if frames.iter().any(|f| f.size() > max_bytes) {
            return Err(Error::LimitExceeded {
                what: "frame bytes",
                limit: max_bytes as u64,
            });
        }
        let now = self.now();
        let expires = self.expiry_from(now);
        let n = frames.len() as u64;
        let summaries = self.frame_summaries(&frames);
        let detail = if self.feed_in_script() {
            super::feed_write::frames_detail(&summaries)
        } else {
            String::new()
        };
        let mut args = Vec::with_capacity(frames.len() + 5);
        args.push(now_arg(now));
        args.push(num_arg(expires.as_millis()));
        args.push(num_arg(self.pexpire_ms(expires, now)));
        args.push(num_arg(self.limits.max_frames_per_session as u64));
        args.push(num_arg(self.limits.max_session_bytes as u64));
        args.push(num_arg(self.metadata_allowance()));
        args.push(num_arg(u64::from(self.config.frame_epochs)));
        args.push(self.frame_prefix.clone());
        let p = self.frame_prefix.len();
        for f in frames {
            let bytes = codec::encode_frame(&f.into_frame(id.clone(), 0))
                .map_err(|e| Error::invalid(format!("cannot encode frame: {e}")))?;
            if bytes.len() <= p || bytes[..p] != self.frame_prefix[..] || bytes[p] != 0 {
                return Err(Error::backend(
                    "redis append: the encoded frame does not have the expected layout",
                ));
            }
            args.push(bytes[p + 1..].to_vec());
        }
        let reply = self
            .script_reporting("append", id, &self.scripts.append, args, &detail)
            .await?;
        let reply = self.live("append", id, reply).await?;
        let epoch = reply
            .get(1)
            .and_then(u64_of)
            .ok_or_else(|| Error::backend("redis append: no epoch in the reply"))?;
        let seqs: Option<Vec<u64>> = reply[2..].iter().map(u64_of).collect();
        let seqs = seqs.ok_or_else(|| Error::backend("redis append: bad seqs in the reply"))?;
        if seqs.len() as u64 != n {
            return Err(Error::backend(format!(
                "redis append: {} seqs for {n} frames",
                seqs.len()
            )));
        }
        self.bump(M_FRAMES, n);
        if self.feed_mode() == FeedMode::After && !summaries.is_empty() {
            let changes = summaries
                .into_iter()
                .zip(&seqs)
                .map(|(summary, seq)| {
                    let mut c = Change::new(ChangeKind::Frame, id.as_str());
                    c.seq = Some(*seq);
                    c.frame = Some(summary);
                    c
                })
                .collect();
            self.feed_after(id.as_str(), changes);
        }
        Ok(AppendedFrames::new(seqs, epoch))
    }

    pub(super) async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let mut page = FramePage::default();
        let mut after = query.after_seq.min(MAX_LUA_INT);
        let filtered = query.stream_id.is_some();
        // Without a filter one extra entry tells whether there is more; with one, read ahead.
        let chunk = if filtered {
            (query.limit + 1).clamp(64, 1024)
        } else {
            query.limit + 1
        };
        let mut first_call = true;
        // Bytes of the entries in the page so far (stored encodings), against max_page_bytes;
        // each read is bounded by what is left, so no reply grows past the page's bound.
        let max_bytes = self.limits.max_page_bytes;
        let mut bytes = 0usize;
        // The largest entry a frame of max_frame_bytes encodes to, with room for the envelope.
        let biggest = self.limits.max_frame_bytes.saturating_add(ENTRY_OVERHEAD);
        loop {
            let args = vec![
                now_arg(self.now()),
                num_arg(after),
                num_arg(chunk as u64),
                num_arg(max_bytes.saturating_sub(bytes).max(1) as u64),
                num_arg(biggest as u64),
            ];
            let reply = self
                .script("frames", id, &self.scripts.frames, args)
                .await?;
            let reply = self.live("frames", id, reply).await?;
            let (Some(first), Some(last)) =
                (reply.get(1).and_then(u64_of), reply.get(2).and_then(u64_of))
            else {
                return Err(Error::backend("redis frames: bad reply"));
            };
            if first_call {
                page.last_seq = last;
                page.epochs = meta::parse_epochs(id, reply.get(6).and_then(bytes_of))?;
                first_call = false;
            }
            if after.saturating_add(1) < first {
                page.trimmed = true;
            }
            let items = reply.get(4).cloned().and_then(array).unwrap_or_default();
            let stopped = reply.get(5).and_then(u64_of) == Some(1);
            let expected_start = after.saturating_add(1).max(first);
            let count = items.len();
            for (i, item) in items.iter().enumerate() {
                let seq = expected_start + i as u64;
                let what = || format!("session {:?} frame {seq}", id.as_str());
                let entry = bytes_of(item).ok_or_else(|| Error::corrupt(what(), "not a string"))?;
                let bytes_len = entry.len();
                let frame: Frame = codec::decode_frame(id, entry)
                    .map_err(|e| Error::corrupt(what(), e.to_string()))?;
                if frame.seq != seq {
                    return Err(Error::corrupt(
                        what(),
                        format!("holds seq {} at the position of {seq}", frame.seq),
                    ));
                }
                after = seq;
                if let Some(s) = &query.stream_id
                    && frame.stream_id.as_ref() != Some(s)
                {
                    continue;
                }
                if page.frames.len() == query.limit
                    || (!page.frames.is_empty() && bytes + bytes_len > max_bytes)
                {
                    page.has_more = true;
                    return Ok(page);
                }
                bytes += bytes_len;
                page.frames.push(frame);
            }
            if after >= last || (count < chunk && !stopped) {
                return Ok(page);
            }
            if stopped && !filtered {
                // Every entry read is in the page and the next one does not fit.
                page.has_more = true;
                return Ok(page);
            }
        }
    }

    pub(super) async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        let mut c = redis::cmd("HGET");
        c.arg(self.keys.meta(id)).arg(meta::F_ACTIVITY);
        let reply = self.cmd("count_frames", Some(id), c).await?;
        let activity = self.activity_reply("count_frames", id, &reply).await?;
        if activity.expires_at <= self.now() {
            if let ExpireOutcome::Removed | ExpireOutcome::Gone = self.expire_one(id).await? {
                self.unindex(&[id.as_str()]).await;
            }
            return Err(not_found(id));
        }
        Ok(activity.frame_count)
    }

    pub(super) async fn delete_frames(
        &self,
        id: &SessionId,
        through_seq: Option<u64>,
    ) -> Result<u64> {
        let through = through_seq.map_or_else(Vec::new, |t| num_arg(t.min(MAX_LUA_INT)));
        let reply = self
            .script(
                "delete_frames",
                id,
                &self.scripts.delete_frames,
                vec![now_arg(self.now()), through],
            )
            .await?;
        let reply = self.live("delete_frames", id, reply).await?;
        reply
            .get(1)
            .and_then(u64_of)
            .ok_or_else(|| Error::backend("redis delete_frames: bad reply"))
    }
}
