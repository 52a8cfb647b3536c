//! An rmcp Streamable HTTP server whose sessions and streams live in Shoal: run two or more
//! on one Redis and send each request to any of them.
//!
//! ```sh
//! cargo run -p shoal-rmcp --example server -- --listen 127.0.0.1:8001 --store redis://127.0.0.1:6379
//! cargo run -p shoal-rmcp --example server -- --listen 127.0.0.1:8002 --store redis://127.0.0.1:6379
//! ```
//!
//! Tools: `echo`, `add`, `count` (streams a progress notification per step for a few
//! seconds), `ask_name` (asks the client for its user's name by elicitation).

use std::time::Duration;

use axum::serve::ListenerExt as _;
use clap::Parser;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::wrapper::Parameters,
    model::{
        CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig,
    },
    schemars::{self, JsonSchema},
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::StreamableHttpService,
};
use serde::Deserialize;
use shoal_redis::stack::StackConfig;
use shoal_rmcp::ShoalRmcp;

#[derive(Parser, Debug)]
#[command(about = "An rmcp server with its sessions in Shoal")]
struct Args {
    /// Where to listen (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: std::net::SocketAddr,
    /// The store: memory:// (one replica), or redis:// … shared by every replica.
    #[arg(long, default_value = "memory://")]
    store: String,
    /// Put Shoal's hot-session cache in front of the store (invalidated over Redis pub/sub).
    #[arg(long)]
    cache: bool,
    /// A name for this replica, shown by the `echo` tool and in logs.
    #[arg(long, default_value = "replica")]
    name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct EchoArgs {
    /// What to send back.
    message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct AddArgs {
    /// The first addend.
    a: i64,
    /// The second addend.
    b: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CountArgs {
    /// How many steps (1–100).
    steps: u32,
    /// Milliseconds between steps (at most 2000).
    interval_ms: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Name {
    /// The user's name.
    name: String,
}
rmcp::elicit_safe!(Name);

#[derive(Clone)]
struct Demo {
    replica: String,
}

#[tool_router]
impl Demo {
    fn new(replica: String) -> Self {
        Demo { replica }
    }

    #[tool(description = "Echo a message back")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.message
    }

    #[tool(description = "Add two integers")]
    async fn add(
        &self,
        Parameters(args): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let sum = args
            .a
            .checked_add(args.b)
            .ok_or_else(|| ErrorData::invalid_params("the sum overflows", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            sum.to_string(),
        )]))
    }

    #[tool(
        description = "Count to `steps`, one progress notification per step, `interval_ms` apart"
    )]
    async fn count(
        &self,
        Parameters(args): Parameters<CountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.steps == 0 || args.steps > 100 || args.interval_ms > 2000 {
            return Err(ErrorData::invalid_params(
                "steps must be 1–100 and interval_ms at most 2000",
                None,
            ));
        }
        let token = ctx.meta.get_progress_token();
        for step in 1..=args.steps {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
            if let Some(token) = &token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {} on {}", args.steps, self.replica));
                ctx.peer
                    .notify_progress(progress)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "counted to {} (completed)",
            args.steps
        ))]))
    }

    #[tool(description = "Ask the client for its user's name (elicitation) and greet them")]
    async fn ask_name(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let answer = ctx
            .peer
            .elicit::<Name>("What is your name?")
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let text = match answer {
            Some(Name { name }) => format!("Hello, {name}!"),
            None => "No name given.".to_owned(),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }
}

#[tool_handler]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info.instructions = Some("A demo of rmcp sessions shared through Shoal.".into());
        info
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = StackConfig::default();
    config.cache.enabled = args.cache;
    let shoal = ShoalRmcp::open_with(&args.store, &config, ShoalRmcp::builder()).await?;
    let replica = args.name.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Demo::new(replica.clone())),
        shoal.session_manager(),
        shoal.server_config(),
    );
    let app = axum::Router::new().nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "{} listening on http://{}/mcp",
        args.name,
        listener.local_addr()?
    );
    // SSE answers are several small writes: without TCP_NODELAY each waits for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    shoal.close().await?;
    Ok(())
}
