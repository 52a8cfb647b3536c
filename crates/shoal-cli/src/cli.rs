//! The command line (clap derive types).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, builder::TypedValueParser as _};
use shoal_core::{
    ChangeKind, SessionFilter, SessionId, SessionStatus, Transport,
    cached::{Consistency, WriteMode},
    resilient::FallbackMode,
    store::MAX_PAGE_LIMIT,
};

use crate::config::LogFormat;

/// Text after `--help`: exit codes, environment, store URLs.
const AFTER_HELP: &str = "\
Store URLs:
  memory://            in-memory store, discarded when the command ends (default)
  file://PATH          in-memory store loaded from a Shoal JSON Lines export at PATH (missing
                       file = empty store) and saved back atomically after delete/import/sweep
  redis://[USER:PASSWORD@]HOST:PORT[/DB]
                       Redis, standalone (rediss:// over TLS)
  redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT,...
                       Redis Cluster, seed nodes (rediss+cluster:// over TLS)
  redis+sentinel://[USER:PASSWORD@]HOST:PORT,.../MASTER[/DB]
                       the master behind Sentinels (rediss+sentinel:// over TLS)
                       Redis settings: the [redis] config section (key_prefix, timeouts,
                       connections, tls_ca_file, ...; env SHOAL_REDIS__PREFIX, ...)

Resilience (Redis stores): --fallback none|memory|read-only wraps the store in a circuit
breaker with that fallback; settings in [resilience] (SHOAL_RESILIENCE__BREAKER__COOLDOWN, ...).
Cache: --cache puts the hot-session cache in front of the store; settings in [cache]
(SHOAL_CACHE__TTL, ...). Both together: cache, then breaker, then Redis.

Configuration (lowest to highest precedence): built-in defaults < TOML file (--config,
SHOAL_CONFIG) < environment (SHOAL_STORE, SHOAL_LIMITS__MAX_SESSIONS, SHOAL_LOG__LEVEL, ...)
< command-line flags. See `shoal config show`.

Exit codes:
  0    success
  1    error: store or I/O failure, session not found, import lines refused, export incomplete,
       store unhealthy, demo checks failed
  2    usage error: unknown flag or subcommand, bad argument value, malformed session id,
       invalid configuration (file, environment or store URL)
  130  interrupted (Ctrl-C)";

/// shoal: shared, durable sessions for MCP proxies — session admin, export/import, sweep,
/// health, bench.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Options valid before or after any subcommand.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options accepted everywhere.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Store URL [default: memory://]
    #[arg(long, global = true, env = "SHOAL_STORE", value_name = "URL")]
    pub(crate) store: Option<String>,

    /// TOML configuration file
    #[arg(long, global = true, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// More logs on stderr (-v debug, -vv trace); overrides RUST_LOG and log.level
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Log line format on stderr [default: text]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,

    /// Wrap a Redis store in the circuit breaker with this fallback (resilience.fallback):
    /// none = fail fast, memory = journal writes and replay them, read-only
    #[arg(long, global = true, value_name = "MODE", value_parser = fallback_parser())]
    pub(crate) fallback: Option<FallbackMode>,

    /// Put the hot-session cache in front of the store (cache.enabled; settings in the cache section)
    #[arg(long, global = true)]
    pub(crate) cache: bool,

    /// Cache consistency across instances (cache.consistency; implies --cache)
    #[arg(long, global = true, value_name = "MODE", value_parser = consistency_parser())]
    pub(crate) cache_consistency: Option<Consistency>,

    /// Cache write mode (cache.write_mode; implies --cache)
    #[arg(long, global = true, value_name = "MODE", value_parser = write_mode_parser())]
    pub(crate) cache_write_mode: Option<WriteMode>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Show the main job with zero set-up: two proxy instances share one store; one MCP session
    /// moves between them (initialize, tool call, a progress stream cut and resumed, delete)
    Demo(DemoArgs),
    /// Inspect and delete sessions
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Write every session to a JSON Lines file (or stdout)
    Export(ExportArgs),
    /// Read sessions from a JSON Lines export
    Import(ImportArgs),
    /// Remove expired sessions now (one pass)
    Sweep,
    /// Check the store; exit 1 when unhealthy
    Health,
    /// Session count and, for Redis, the store's counters (created, completed, failed, ...)
    Stats,
    /// Check or show configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the MCP Streamable HTTP reverse proxy (sessions in the store)
    Proxy(ProxyArgs),
    /// Follow the change feed: every session change and frame across the fleet, as it
    /// happens (one line each; --json: one JSON object per line)
    Tail(TailArgs),
    /// Session analytics from the change feed (Redis): sessions per minute, live clients and
    /// protocol versions, top methods and tools with error rates and latency, session lengths
    Analytics(AnalyticsArgs),
    /// The live console: a web dashboard of the fleet (proxies, Redis, incidents, analytics,
    /// sessions) on a loopback address, or anywhere with a token
    Console(ConsoleArgs),
}

/// `shoal console`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConsoleArgs {
    /// Address to listen on (off loopback a token is required)
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub(crate) listen: String,
    /// A proxy to watch, by its base URL (its /metrics is read); repeat or comma-separate
    #[arg(
        long = "proxy",
        env = "SHOAL_CONSOLE_PROXIES",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub(crate) proxies: Vec<String>,
    /// File holding the access token (at least 16 characters), required off loopback; or
    /// set SHOAL_CONSOLE_TOKEN
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Show everything, change nothing (no delete actions)
    #[arg(long)]
    pub(crate) read_only: bool,
    /// A Host name the console answers besides loopback names (against DNS rebinding);
    /// repeat for more, * for any
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub(crate) allowed_hosts: Vec<String>,
    /// How often the proxies are read
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    pub(crate) scrape_interval: humantime::Duration,
}

/// `shoal tail`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TailArgs {
    /// Only this session's entries
    #[arg(long, value_name = "ID")]
    pub(crate) session: Option<String>,
    /// Only these kinds, comma-separated: created, updated, touched, deleted, expired,
    /// evicted, frame
    #[arg(long, value_delimiter = ',', value_name = "KINDS", value_parser = kind_parser())]
    pub(crate) kinds: Vec<ChangeKind>,
    /// Where to start: now, start (the oldest entry kept), a feed id (1733300000000-0), or a
    /// time ago (10m, 2h)
    #[arg(long, default_value = "now", value_name = "FROM")]
    pub(crate) from: String,
    /// Stop after printing this many entries
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Stop after following this long (e.g. 30s) [default: until Ctrl-C]
    #[arg(long = "for", value_name = "DURATION")]
    pub(crate) follow_for: Option<humantime::Duration>,
}

/// `shoal analytics`.
#[derive(Args, Debug, Clone)]
pub(crate) struct AnalyticsArgs {
    /// The window of the per-minute session counts (they are kept 49 h)
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub(crate) since: humantime::Duration,
    /// How many methods and tools to show
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) top: u16,
}

/// `shoal proxy`: flags override the `[proxy]` configuration section.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ProxyArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Upstream MCP server: http(s)://HOST/mcp or stdio:'CMD ARGS'
    #[arg(long, value_name = "URL|stdio:CMD")]
    pub(crate) upstream: Option<String>,
    /// File with the event-id MAC key; give every instance the same one
    #[arg(long, value_name = "FILE")]
    pub(crate) event_id_key_file: Option<PathBuf>,
    /// Extra allowed Origin values, comma-separated (`*`: any)
    #[arg(long, value_name = "ORIGINS")]
    pub(crate) allowed_origins: Option<String>,
}

/// `shoal demo`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    /// Progress notifications the countdown tool sends (2–50)
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub(crate) steps: u64,
    /// Pause between two progress notifications, in milliseconds (0–2000)
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub(crate) interval_ms: u64,
    /// Progress notifications read on instance A before the client cuts the stream (1 to
    /// steps − 1)
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub(crate) cut_after: u64,
}

impl DemoArgs {
    /// Checks the ranges; the error names the flag.
    pub(crate) fn validate(&self) -> Result<(), crate::error::UsageError> {
        let fail = |m: String| Err(crate::error::UsageError(m));
        if !(2..=50).contains(&self.steps) {
            return fail(format!("--steps must be 2 to 50 (got {})", self.steps));
        }
        if self.interval_ms > 2_000 {
            return fail(format!(
                "--interval-ms must be 0 to 2000 (got {})",
                self.interval_ms
            ));
        }
        if self.cut_after == 0 || self.cut_after >= self.steps {
            return fail(format!(
                "--cut-after must be 1 to {} (one less than --steps; got {})",
                self.steps - 1,
                self.cut_after
            ));
        }
        Ok(())
    }
}

/// `shoal sessions …`.
#[derive(Subcommand, Debug)]
pub(crate) enum SessionsCommand {
    /// List sessions (one page, or all with --all)
    List(ListArgs),
    /// Show one session with its frame and pending-request counts
    Show(ShowArgs),
    /// Print a session's frames
    Frames(FramesArgs),
    /// Delete sessions (exit 1 if any did not exist, unless --missing-ok)
    Delete(DeleteArgs),
    /// Count sessions matching the filters
    Count(FilterArgs),
}

/// Filters shared by `list` and `count`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only sessions with this status
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub(crate) status: Option<SessionStatus>,
    /// Only sessions with this transport
    #[arg(long, value_name = "TRANSPORT", value_parser = transport_parser())]
    pub(crate) transport: Option<Transport>,
    /// Only sessions owned by this principal
    #[arg(long, value_name = "PRINCIPAL")]
    pub(crate) principal: Option<String>,
}

impl FilterArgs {
    /// As the store's filter.
    pub(crate) fn to_filter(&self) -> SessionFilter {
        let mut f = SessionFilter::default();
        if let Some(s) = self.status {
            f = f.with_status(s);
        }
        if let Some(t) = self.transport {
            f = f.with_transport(t);
        }
        if let Some(p) = &self.principal {
            f = f.with_principal(p.clone());
        }
        f
    }
}

/// `shoal sessions list`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ListArgs {
    /// Filters.
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Most sessions to print (one page)
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = page_limit(), conflicts_with = "all")]
    pub(crate) limit: usize,
    /// Continue a listing where the previous page ended (its next_cursor)
    #[arg(long, value_name = "CURSOR")]
    pub(crate) cursor: Option<String>,
    /// Print every matching session, fetching page after page
    #[arg(long)]
    pub(crate) all: bool,
}

/// `shoal sessions show`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ShowArgs {
    /// The session id
    #[arg(value_name = "ID", value_parser = parse_session_id)]
    pub(crate) id: SessionId,
}

/// `shoal sessions frames`.
#[derive(Args, Debug, Clone)]
pub(crate) struct FramesArgs {
    /// The session id
    #[arg(value_name = "ID", value_parser = parse_session_id)]
    pub(crate) id: SessionId,
    /// Only frames with a seq greater than this
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub(crate) after: u64,
    /// Most frames to print
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = page_limit(), conflicts_with = "all")]
    pub(crate) limit: usize,
    /// Print every retained frame after --after
    #[arg(long)]
    pub(crate) all: bool,
    /// Only frames of this stream
    #[arg(long, value_name = "STREAM")]
    pub(crate) stream: Option<String>,
    /// Print only the frame contents, exactly as stored, one per line (not with --json)
    #[arg(long)]
    pub(crate) raw: bool,
}

/// `shoal sessions delete`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DeleteArgs {
    /// Session ids
    #[arg(value_name = "ID", required = true, num_args = 1.., value_parser = parse_session_id)]
    pub(crate) ids: Vec<SessionId>,
    /// Exit 0 even if some ids did not exist
    #[arg(long)]
    pub(crate) missing_ok: bool,
}

/// `shoal export`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ExportArgs {
    /// Output file, written atomically; `-` is stdout
    #[arg(long = "out", short = 'o', value_name = "FILE", default_value = "-")]
    pub(crate) out: PathBuf,
}

/// What `import` does with ids that already exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum OnExistingArg {
    /// Refuse the line (exit 1)
    #[default]
    Fail,
    /// Keep the stored session, count the line as skipped
    Skip,
    /// Delete the stored session and import the line's
    Replace,
}

/// `shoal import`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ImportArgs {
    /// Input file; `-` is stdin
    #[arg(long = "in", short = 'i', value_name = "FILE", default_value = "-")]
    pub(crate) input: PathBuf,
    /// What to do when a session id already exists
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = OnExistingArg::Fail)]
    pub(crate) on_existing: OnExistingArg,
    /// Check every line, write nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Import the good lines even when some are bad (still exit 1)
    #[arg(long)]
    pub(crate) keep_going: bool,
}

/// `shoal config …`.
#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Check a config file (with environment and flags) and print the effective configuration
    Check(ConfigCheckArgs),
    /// Print the effective configuration (defaults, --config, environment, flags)
    Show,
}

/// `shoal config check`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConfigCheckArgs {
    /// The TOML file to check
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// Parses a session id for clap, so a malformed id is a usage error (exit 2).
fn parse_session_id(s: &str) -> Result<SessionId, String> {
    SessionId::new(s).map_err(|e| match e {
        shoal_core::Error::InvalidInput { reason } => reason,
        other => other.to_string(),
    })
}

fn page_limit() -> impl clap::builder::TypedValueParser<Value = usize> {
    clap::builder::RangedU64ValueParser::<u64>::new()
        .range(1..=MAX_PAGE_LIMIT as u64)
        .try_map(usize::try_from)
}

fn kind_parser() -> impl clap::builder::TypedValueParser<Value = ChangeKind> {
    clap::builder::PossibleValuesParser::new(
        ChangeKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>(),
    )
    .try_map(|s| s.parse::<ChangeKind>())
}

fn fallback_parser() -> impl clap::builder::TypedValueParser<Value = FallbackMode> {
    clap::builder::PossibleValuesParser::new(["none", "memory", "read-only"])
        .try_map(|s| s.parse::<FallbackMode>())
}

fn consistency_parser() -> impl clap::builder::TypedValueParser<Value = Consistency> {
    clap::builder::PossibleValuesParser::new(["local", "invalidate", "strict"])
        .try_map(|s| s.parse::<Consistency>())
}

fn write_mode_parser() -> impl clap::builder::TypedValueParser<Value = WriteMode> {
    clap::builder::PossibleValuesParser::new(["write_through", "write_behind", "read_through"])
        .try_map(|s| s.parse::<WriteMode>())
}

fn status_parser() -> impl clap::builder::TypedValueParser<Value = SessionStatus> {
    clap::builder::PossibleValuesParser::new(SessionStatus::ALL.iter().map(|s| s.as_str()))
        .try_map(|s| s.parse::<SessionStatus>())
}

fn transport_parser() -> impl clap::builder::TypedValueParser<Value = Transport> {
    clap::builder::PossibleValuesParser::new(Transport::ALL.iter().map(|t| t.as_str()))
        .try_map(|s| s.parse::<Transport>())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["shoal", "--store", "file:///x", "sessions", "count"])
            .expect("before");
        let b = Cli::try_parse_from(["shoal", "sessions", "count", "--store", "file:///x"])
            .expect("after");
        assert_eq!(a.global.store.as_deref(), Some("file:///x"));
        assert_eq!(b.global.store.as_deref(), Some("file:///x"));
        let c = Cli::try_parse_from(["shoal", "sessions", "list", "--json", "-vv"]).expect("json");
        assert!(c.global.json);
        assert_eq!(c.global.verbose, 2);
    }

    #[test]
    fn malformed_ids_and_values_are_usage_errors() {
        let e = Cli::try_parse_from(["shoal", "sessions", "show", "a:b"]).expect_err("id");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("reserved character"), "{e}");
        let e = Cli::try_parse_from(["shoal", "sessions", "list", "--status", "zombie"])
            .expect_err("status");
        assert!(e.to_string().contains("completed"), "{e}");
        let e =
            Cli::try_parse_from(["shoal", "sessions", "list", "--limit", "0"]).expect_err("limit");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn filters_map_to_the_store_filter() {
        let cli = Cli::try_parse_from([
            "shoal",
            "sessions",
            "count",
            "--status",
            "failed",
            "--transport",
            "streamable_http",
            "--principal",
            "alice",
        ])
        .expect("parse");
        let Command::Sessions(SessionsCommand::Count(f)) = cli.command else {
            panic!("wrong command");
        };
        let want = SessionFilter::default()
            .with_status(SessionStatus::Failed)
            .with_transport(Transport::StreamableHttp)
            .with_principal("alice");
        assert_eq!(f.to_filter(), want);
    }
}
