//! `list` and `count`: walking the listing buckets in order (bucket, then member) behind a
//! cursor `NNNN:<last member>`, and counting from the capacity set.

use redis::Value;
use shoal_core::{Error, ListPage, ListQuery, Result, SessionFilter, SessionId, Timestamp};

use super::{
    exec::{array, server_error},
    handle::StoreState,
    session_ops::push_item_error,
};
use crate::{
    keys::BUCKETS,
    meta::{self, bytes_of},
};

/// The cursor of the position after `member` in `bucket`.
fn cursor_of(bucket: u32, member: &str) -> String {
    format!("{bucket:04}:{member}")
}

/// The bucket to start in and the member to start after; `(0, None)` without a cursor.
fn parse_cursor(cursor: Option<&str>) -> Result<(u32, Option<String>)> {
    let Some(c) = cursor else {
        return Ok((0, None));
    };
    let bad = || Error::invalid(format!("bad list cursor {c:?}"));
    let (b, member) = c.split_once(':').ok_or_else(bad)?;
    let bucket: u32 = b.parse().map_err(|_| bad())?;
    if bucket >= BUCKETS || b.len() != 4 {
        return Err(bad());
    }
    if member.is_empty() {
        return Ok((bucket, None));
    }
    SessionId::new(member).map_err(|_| bad())?;
    Ok((bucket, Some(member.to_string())))
}

/// The members one window read from one listing bucket.
struct BucketRead {
    members: Vec<String>,
    /// The bucket has more members than were read.
    more: bool,
}

/// What one `list` call has gathered so far.
#[derive(Default)]
struct PageInProgress {
    page: ListPage,
    /// The last position consumed: the next page starts after it.
    last_pos: Option<(u32, String)>,
    /// Index members whose session is gone, removed once the page is done.
    dangling: Vec<String>,
}

impl StoreState {
    pub(super) async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        let (mut bucket, mut after) = parse_cursor(query.cursor.as_deref())?;
        let now = self.now();
        let chunk = (query.limit + 1).clamp(16, 1000);
        let mut progress = PageInProgress::default();
        // Buckets read per round trip: one at first (a dense store fills a page from one
        // bucket), four times more after each window that left the page short, so walking
        // an empty store costs a handful of round trips, not one per bucket.
        let mut window = 1u32;
        while bucket < BUCKETS {
            let w = window.min(BUCKETS - bucket);
            window = (window * 4).min(256);
            let per_bucket = self.read_window(bucket, after.as_deref(), w, chunk).await?;
            if self
                .take_window(query, now, bucket, &per_bucket, &mut progress)
                .await?
            {
                self.repair(&progress.dangling).await;
                return Ok(progress.page);
            }
            // The window is consumed: go on after its last bucket, or inside it if that one
            // has more members than were read.
            match per_bucket.last() {
                Some(BucketRead {
                    members,
                    more: true,
                }) => {
                    bucket += per_bucket.len() as u32 - 1;
                    after = members.last().cloned();
                    // The page is still short; go on in this bucket, one bucket at a time.
                    window = 1;
                }
                _ => {
                    bucket += per_bucket.len() as u32;
                    after = None;
                }
            }
        }
        self.repair(&progress.dangling).await;
        Ok(progress.page)
    }

    /// Reads up to `chunk` members from each of the `w` buckets from `first` on (in the first
    /// one, those after `after`), in one round trip. Stops at a bucket that has more members
    /// than were read: buckets after it wait until it is exhausted (the listing order is
    /// bucket, then member).
    async fn read_window(
        &self,
        first: u32,
        after: Option<&str>,
        w: u32,
        chunk: usize,
    ) -> Result<Vec<BucketRead>> {
        let mut cmds = Vec::with_capacity(w as usize);
        for i in 0..w {
            let key = self.keys.all(first + i);
            let min = match (i, after) {
                (0, Some(a)) => format!("({a}"),
                _ => "-".to_string(),
            };
            let mut c = redis::cmd("ZRANGEBYLEX");
            c.arg(&key)
                .arg(&min)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(chunk);
            cmds.push((key, c));
        }
        let mut per_bucket = Vec::with_capacity(w as usize);
        for v in self.multi("list", cmds).await? {
            if let Some(e) = server_error(&v) {
                return Err(self.map_error(e, "list", None));
            }
            let members =
                array(v).ok_or_else(|| Error::backend("redis list: ZRANGEBYLEX gave no array"))?;
            let members: Vec<String> = members
                .iter()
                .filter_map(|m| bytes_of(m).map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect();
            let more = members.len() >= chunk;
            per_bucket.push(BucketRead { members, more });
            if more {
                break;
            }
        }
        Ok(per_bucket)
    }

    /// Adds the window's sessions (buckets from `first` on) to the page, in listing order.
    /// Their metas are read a page's worth at a time, so a wide window over a sparse store
    /// does not read hundreds of sessions for the few the page still needs. Returns `true`
    /// when the page is full and one more item exists (the next cursor is then set).
    async fn take_window(
        &self,
        query: &ListQuery,
        now: Timestamp,
        first: u32,
        per_bucket: &[BucketRead],
        progress: &mut PageInProgress,
    ) -> Result<bool> {
        let entries: Vec<(u32, &String)> = per_bucket
            .iter()
            .enumerate()
            .flat_map(|(i, read)| read.members.iter().map(move |m| (first + i as u32, m)))
            .collect();
        let mut at = 0;
        while at < entries.len() {
            let take = (query.limit + 1 - progress.page.sessions.len()).max(16);
            let chunk = &entries[at..entries.len().min(at + take)];
            at += chunk.len();
            let ids: Vec<Option<SessionId>> = chunk
                .iter()
                .map(|(_, m)| SessionId::new(m.as_str()).ok())
                .collect();
            let valid: Vec<SessionId> = ids.iter().flatten().cloned().collect();
            let replies = self.hgetall_many(&valid).await?;
            let mut replies = replies.iter();
            for ((b, member), id) in chunk.iter().zip(&ids) {
                let Some(id) = id else {
                    // Not a session id at all: index garbage.
                    progress.dangling.push((*member).clone());
                    continue;
                };
                let reply = replies.next().unwrap_or(&Value::Nil);
                let item = match self.parse_meta_reply(id, reply) {
                    Ok(None) => {
                        progress.dangling.push((*member).clone());
                        None
                    }
                    Ok(Some(s)) if s.is_expired_at(now) || !query.filter.matches(&s) => None,
                    Ok(Some(s)) => Some(Ok(s)),
                    Err(e @ Error::Corrupt { .. }) => Some(Err(e)),
                    Err(e) => return Err(e),
                };
                if let Some(item) = item {
                    let page = &mut progress.page;
                    if page.sessions.len() == query.limit {
                        // One more item exists: there is a next page, starting after the
                        // last position this page consumed.
                        page.next_cursor = progress.last_pos.take().map(|(b, m)| cursor_of(b, &m));
                        return Ok(true);
                    }
                    match item {
                        Ok(s) => page.sessions.push(s),
                        Err(e) => push_item_error(&mut page.errors, id, e),
                    }
                }
                progress.last_pos = Some((*b, (*member).clone()));
            }
        }
        Ok(false)
    }

    pub(super) async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        if *filter != SessionFilter::default() {
            let mut n = 0;
            let mut cursor = None;
            loop {
                let page = self
                    .list(
                        &ListQuery::first(shoal_core::store::MAX_PAGE_LIMIT)
                            .with_filter(filter.clone())
                            .with_cursor(cursor),
                    )
                    .await?;
                n += page.sessions.len() as u64;
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return Ok(n),
                }
            }
        }
        // Unfiltered: members of the capacity set indexed with an expiry after now are live
        // (expiry only ever moves forward); the few at or before now are checked one by one.
        let now = self.now().as_millis();
        let cap = self.keys.cap();
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT")
            .arg(&cap)
            .arg(format!("({now}"))
            .arg("+inf");
        pipe.cmd("ZRANGEBYSCORE").arg(&cap).arg("-inf").arg(now);
        let mut c = self.conn();
        let (live, stale): (u64, Vec<String>) =
            self.io("count", None, pipe.query_async(&mut c)).await?;
        let candidates: Vec<SessionId> = stale
            .iter()
            .filter_map(|m| SessionId::new(m).ok())
            .collect();
        let mut total = live;
        if !candidates.is_empty() {
            let cmds = candidates
                .iter()
                .map(|id| {
                    let key = self.keys.meta(id);
                    let mut c = redis::cmd("HGET");
                    c.arg(&key).arg(meta::F_ACTIVITY);
                    (key, c)
                })
                .collect();
            let values = self.multi("count", cmds).await?;
            total += candidates
                .iter()
                .zip(&values)
                .filter(|(id, v)| {
                    bytes_of(v)
                        .and_then(|a| meta::parse_activity(id, a).ok())
                        .is_some_and(|a| a.expires_at.as_millis() > now)
                })
                .count() as u64;
        }
        Ok(total)
    }
}
