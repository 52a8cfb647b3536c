//! Configuration: built-in defaults < TOML file (`--config`) < `SHOAL_*` environment variables <
//! command-line flags, merged with figment and checked strictly.
//!
//! # File format
//! ```toml
//! store = "memory://"            # or "file:///var/lib/shoal/sessions.jsonl", "redis://…"
//!
//! [limits]
//! max_frame_bytes = 4194304
//! max_frames_per_session = 10000
//! max_sessions = 100000
//! session_ttl = "24h"            # humantime: "90s", "15m", "1h 30m", "7days"
//! max_metadata_bytes = 65536
//! max_pending_per_session = 10000
//! max_session_bytes = 67108864    # frames + pending requests + metadata of one session
//! max_pending_bytes = 8192
//! max_page_bytes = 16777216       # one page of frames (replay, export)
//!
//! [memory]
//! sweep_interval = "30s"
//!
//! [redis]                        # only used by redis://, rediss://, redis+cluster://, redis+sentinel://
//! key_prefix = "shoal"           # first part of every key (alias: prefix)
//! connect_timeout = "5s"         # bounds connecting (an unreachable server fails within it)
//! response_timeout = "2s"        # bounds one round trip
//! connections = 1                # multiplexed connections, round robin
//! # tls_ca_file = "/etc/shoal/redis-ca.pem"   # PEM CA of a rediss:// server's private CA
//! expiry_grace = "1m"            # server-side TTL beyond the logical expiry
//! sweep_lease = "30s"            # how long one instance may hold the sweep lease
//! reconnect_retries = 2
//! max_clock_skew = "1s"          # beyond it, time is read as the Redis server's (TIME)
//! clock_resync = "1m"            # how often the clock difference is measured again
//! evicting_policy = "warn"       # or "refuse": a server whose maxmemory-policy can evict keys
//! wait_replicas = 0              # replicas that must confirm each write (WAIT); 0 = async
//! wait_timeout = "500ms"         # how long a write waits for them (then "not replicated")
//! frame_epochs = true            # tell frames apart after a rollback (INFO per append)
//! sweep_interval = "30s"         # background expiry sweeps while a command runs
//!
//! [log]
//! level = "warn"                 # a tracing EnvFilter directive, e.g. "info,shoal_core=debug"
//! format = "text"                # or "json"
//!
//! [resilience]                   # off unless `fallback` is set (or --fallback is given)
//! fallback = "memory"            # none | memory | read-only (Redis stores only)
//! op_timeout = "1s"              # deadline of one point operation on Redis
//! bulk_timeout = "10s"           # deadline of list, count, frames, sweeps
//! drain_timeout = "10s"          # at exit, how long to wait for the outage journal to drain
//! [resilience.retry]             # max_retries, min_delay, max_delay
//! [resilience.breaker]           # failure_threshold, failure_ratio, min_calls, window,
//!                                # cooldown, half_open_probes, close_after, failure_burst
//! [resilience.health]            # interval, timeout (the health monitor's probe)
//! [resilience.journal]           # max_entries, max_bytes, seq_map_capacity,
//!                                # replay_concurrency (sessions drained at once),
//!                                # path (a file: the journal survives a restart; one per
//!                                # instance), fsync ("always" | "never"), max_file_bytes
//!
//! [cache]                        # off unless enabled (or --cache is given)
//! enabled = true
//! max_entries = 100000
//! max_bytes = 268435456
//! ttl = "5s"
//! consistency = "invalidate"     # local | invalidate | strict
//! write_mode = "write_through"   # write_through | write_behind | read_through
//! touch_interval = "1s"          # touch coalescing ("0s": every touch is written)
//! [cache.bus]                    # Redis pub/sub between instances: ping_interval,
//!                                # reconnect_min, reconnect_max, max_ids_per_message
//! ```
//!
//! `[limits]`, `[memory]`, `[redis]`, `[resilience]` and `[cache]` are the library's
//! [`shoal_redis::StackConfig`] sections themselves — their keys, defaults, humantime
//! durations and checks live in the library types; `store`, `[log]` and `[proxy]` are the
//! command's own.
//!
//! # Environment
//! `SHOAL_<KEY>` with `__` between levels: `SHOAL_STORE`, `SHOAL_LIMITS__MAX_SESSIONS`,
//! `SHOAL_MEMORY__SWEEP_INTERVAL`, `SHOAL_REDIS__PREFIX`, `SHOAL_LOG__LEVEL`. Only variables
//! whose first part names a section are read, so unrelated `SHOAL_*` variables
//! (`SHOAL_CONFIG`, a test harness's `SHOAL_REDIS_URL`) are left alone.
//!
//! # Adding a section
//! A store section: a field of [`shoal_redis::StackConfig`] (a serde type with a `Default`
//! and a `validate`), then the same field in [`Config`] with its line in [`Config::stack`].
//! A section of the command's own: a field of [`Config`]. Either way its name goes into
//! [`model::SECTIONS`] at the place `config show` prints it (a test checks the list against
//! [`Config`]).

mod env;
mod errors;
mod model;
#[cfg(test)]
mod properties;
mod show;
mod sources;
#[cfg(test)]
mod tests;

pub(crate) use model::{Config, LogConfig, LogFormat, comma_list};
pub(crate) use show::to_toml;
pub(crate) use sources::{Overrides, Sources, load};
