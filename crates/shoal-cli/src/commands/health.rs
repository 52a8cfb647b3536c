//! `shoal health`: backend, status, latency, details; exit 1 when unhealthy.

use std::{collections::BTreeMap, time::Instant};

use serde::Serialize;
use shoal_core::HealthStatus;

use super::Ctx;
use crate::{
    error::{Outcome, UsageError, error_text},
    output::{fmt_latency, key_values, print_json, print_text},
    store::redact,
};

/// The health report as printed.
#[derive(Serialize)]
struct Report {
    store: String,
    backend: Option<String>,
    status: HealthStatus,
    latency_us: u64,
    details: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `health`. Healthy and degraded exit 0, unhealthy (or a store that cannot be opened or
/// answer) exits 1; with `--json` a report is printed in every case.
pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let report = match check(ctx).await {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => return Err(e),
        Err(e) => Report {
            store: redact(&ctx.config.store),
            backend: None,
            status: HealthStatus::Unhealthy,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            details: BTreeMap::new(),
            error: Some(error_text(&e)),
        },
    };
    let healthy = report.status != HealthStatus::Unhealthy;
    if ctx.json {
        print_json(&report)?;
    } else {
        let status = match report.status {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            _ => "unhealthy",
        };
        let mut pairs = vec![
            ("store", report.store.clone()),
            (
                "backend",
                report.backend.clone().unwrap_or_else(|| "-".into()),
            ),
            ("status", status.to_owned()),
            (
                "latency",
                fmt_latency(std::time::Duration::from_micros(report.latency_us)),
            ),
        ];
        for (k, v) in &report.details {
            pairs.push((k.as_str(), v.clone()));
        }
        if let Some(e) = &report.error {
            pairs.push(("error", e.clone()));
        }
        print_text(&key_values(&pairs))?;
    }
    Ok(Outcome::from_ok(healthy))
}

async fn check(ctx: &Ctx) -> anyhow::Result<Report> {
    let opened = ctx.open().await?;
    if let Some(r) = opened.resilient() {
        // This process's breaker is new: probe once so the report shows a real probe.
        r.probe().await;
    }
    let health = opened.store().health().await?;
    let mut details = health.details.clone();
    if let Some(b) = opened.bus_stats().await {
        details.insert(
            "cache_bus".into(),
            if b.up { "up" } else { "down" }.to_owned(),
        );
    }
    if let Some(p) = opened.file_path() {
        details.insert("file".into(), p.display().to_string());
    }
    Ok(Report {
        store: opened.url().to_owned(),
        backend: Some(health.backend.clone()),
        status: health.status,
        latency_us: u64::try_from(health.latency.as_micros()).unwrap_or(u64::MAX),
        details,
        error: None,
    })
}
