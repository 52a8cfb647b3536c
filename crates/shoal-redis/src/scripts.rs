//! The Lua scripts (in `src/scripts/*.lua`), each run with `EVALSHA` and reloaded
//! automatically after a `NOSCRIPT` (a restarted server or a new cluster node).
//!
//! Every per-session script gets exactly the session's three keys (`meta`, `frames`,
//! `requests`), all under the `{<sid>}` hash tag, and never touches another key: index
//! and metric keys live in other cluster slots and are written by separate commands.

use redis::Script;

macro_rules! session_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("scripts/common.lua"),
            "\n",
            include_str!(concat!("scripts/", $file))
        ))
    };
}

/// Every script, hashed once.
pub(crate) struct Scripts {
    pub(crate) create: Script,
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
    pub(crate) release_lease: Script,
    pub(crate) reserve: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            create: session_script!("create.lua"),
            append: session_script!("append.lua"),
            touch: session_script!("touch.lua"),
            update: session_script!("update.lua"),
            delete: session_script!("delete.lua"),
            expire: session_script!("expire.lua"),
            frames: session_script!("frames.lua"),
            delete_frames: session_script!("delete_frames.lua"),
            add_pending: session_script!("add_pending.lua"),
            take_pending: session_script!("take_pending.lua"),
            restore: session_script!("restore.lua"),
            release_lease: Script::new(include_str!("scripts/release_lease.lua")),
            reserve: Script::new(include_str!("scripts/reserve.lua")),
        }
    }
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripts")
    }
}
