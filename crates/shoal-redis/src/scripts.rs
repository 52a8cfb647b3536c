//! The Lua scripts (in `src/scripts/*.lua`), each run with `EVALSHA` and reloaded
//! automatically after a `NOSCRIPT` (a restarted server or a new cluster node).
//!
//! Every per-session script gets exactly the session's three keys (`meta`, `frames`,
//! `requests`; `session_lease` also the lease's key), all under the `{<sid>}` hash tag, and
//! never touches another key: index
//! and metric keys live in other cluster slots and are written by separate commands. The one
//! exception, `create_placed`, runs on a single server only (standalone, Sentinel), where
//! slots do not matter: it takes the capacity set and the listing bucket as well.
//!
//! A per-session script's source is `common.lua`, a newline, then its own file; the constants
//! below are those full sources, the text whose SHA1 `EVALSHA` names.

use redis::Script;

/// The full source of a per-session script: `common.lua`, a newline, then the script's file.
macro_rules! session_source {
    ($file:literal) => {
        concat!(
            include_str!("scripts/common.lua"),
            "\n",
            include_str!(concat!("scripts/", $file))
        )
    };
}

/// `common.lua` + `create.lua`: writes a new session's meta hash unless it exists.
pub const CREATE_SOURCE: &str = session_source!("create.lua");
/// `common.lua` + `create_placed.lua`: a create with its place under `max_sessions` and its
/// listing entry, in one script — single server only (it also takes the capacity set and the
/// listing bucket, which live in other cluster slots).
pub const CREATE_PLACED_SOURCE: &str = session_source!("create_placed.lua");
/// `common.lua` + `append.lua`: appends frames, trims to the retention bound, slides the TTL.
pub const APPEND_SOURCE: &str = session_source!("append.lua");
/// `common.lua` + `touch.lua`: slides a live session's TTL.
pub const TOUCH_SOURCE: &str = session_source!("touch.lua");
/// `common.lua` + `update.lua`.
const UPDATE_SOURCE: &str = session_source!("update.lua");
/// `common.lua` + `delete.lua`.
const DELETE_SOURCE: &str = session_source!("delete.lua");
/// `common.lua` + `expire.lua`.
const EXPIRE_SOURCE: &str = session_source!("expire.lua");
/// `common.lua` + `frames.lua`.
const FRAMES_SOURCE: &str = session_source!("frames.lua");
/// `common.lua` + `delete_frames.lua`.
const DELETE_FRAMES_SOURCE: &str = session_source!("delete_frames.lua");
/// `common.lua` + `add_pending.lua`.
const ADD_PENDING_SOURCE: &str = session_source!("add_pending.lua");
/// `common.lua` + `take_pending.lua`.
const TAKE_PENDING_SOURCE: &str = session_source!("take_pending.lua");
/// `common.lua` + `restore.lua`.
const RESTORE_SOURCE: &str = session_source!("restore.lua");
/// `common.lua` + `session_lease.lua` (a fourth key: the lease).
const SESSION_LEASE_SOURCE: &str = session_source!("session_lease.lua");
/// `release_lease.lua` (not a per-session script: no `common.lua`): releases the sweep lease.
const RELEASE_LEASE_SOURCE: &str = include_str!("scripts/release_lease.lua");
/// `renew_lease.lua` (not a per-session script): extends the sweep lease while its holder
/// still has it.
const RENEW_LEASE_SOURCE: &str = include_str!("scripts/renew_lease.lua");
/// `quota.lua` (not a per-session script: no `common.lua`): a subject's admission quota.
const QUOTA_SOURCE: &str = include_str!("scripts/quota.lua");
/// `reserve.lua` (not a per-session script: no `common.lua`): reserves a place under
/// `max_sessions` in the capacity set.
pub const RESERVE_SOURCE: &str = include_str!("scripts/reserve.lua");

/// `release_place.lua` (not a per-session script): gives back the place of a session whose
/// create failed in doubt, unless the session exists.
const RELEASE_PLACE_SOURCE: &str = include_str!("scripts/release_place.lua");

/// `analytics_apply.lua` (not a per-session script): applies a batch of feed entries to a
/// shard's analytics, each at most once (only entries its `XACK` acknowledged).
const ANALYTICS_APPLY_SOURCE: &str = include_str!("scripts/analytics_apply.lua");

/// Every script, hashed once.
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) create_placed: Script,
    pub(crate) append: Script,
    pub(crate) touch: Script,
    pub(crate) update: Script,
    pub(crate) delete: Script,
    pub(crate) expire: Script,
    pub(crate) frames: Script,
    pub(crate) delete_frames: Script,
    pub(crate) add_pending: Script,
    pub(crate) take_pending: Script,
    pub(crate) restore: Script,
    pub(crate) session_lease: Script,
    pub(crate) release_lease: Script,
    pub(crate) renew_lease: Script,
    pub(crate) quota: Script,
    pub(crate) reserve: Script,
    pub(crate) release_place: Script,
    pub(crate) analytics_apply: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            create: Script::new(CREATE_SOURCE),
            create_placed: Script::new(CREATE_PLACED_SOURCE),
            append: Script::new(APPEND_SOURCE),
            touch: Script::new(TOUCH_SOURCE),
            update: Script::new(UPDATE_SOURCE),
            delete: Script::new(DELETE_SOURCE),
            expire: Script::new(EXPIRE_SOURCE),
            frames: Script::new(FRAMES_SOURCE),
            delete_frames: Script::new(DELETE_FRAMES_SOURCE),
            add_pending: Script::new(ADD_PENDING_SOURCE),
            take_pending: Script::new(TAKE_PENDING_SOURCE),
            restore: Script::new(RESTORE_SOURCE),
            session_lease: Script::new(SESSION_LEASE_SOURCE),
            release_lease: Script::new(RELEASE_LEASE_SOURCE),
            renew_lease: Script::new(RENEW_LEASE_SOURCE),
            quota: Script::new(QUOTA_SOURCE),
            reserve: Script::new(RESERVE_SOURCE),
            release_place: Script::new(RELEASE_PLACE_SOURCE),
            analytics_apply: Script::new(ANALYTICS_APPLY_SOURCE),
        }
    }
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripts")
    }
}
