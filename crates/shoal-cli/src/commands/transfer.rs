//! `shoal export` and `shoal import`: whole stores as Shoal JSON Lines.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    task::{Context, Poll},
};

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use shoal_core::{
    SessionFilter, SessionStore,
    transfer::{self, ExportReport, ImportOptions, ImportReport, OnExisting},
};
use tokio::io::{AsyncRead, AsyncWriteExt as _, BufReader, BufWriter, ReadBuf};

use super::{Ctx, note_ephemeral};
use crate::{
    cli::{ExportArgs, ImportArgs, OnExistingArg},
    error::Outcome,
    output::{bytes_bar, count_of, print_json, print_text, progress_bar, progress_enabled},
    store::AtomicFile,
};

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A session left out of an export.
#[derive(Serialize)]
struct Skipped {
    id: String,
    error: String,
}

/// The export summary.
#[derive(Serialize)]
struct ExportSummary {
    out: String,
    sessions: u64,
    frames: u64,
    skipped: Vec<Skipped>,
}

/// `export`.
pub(crate) async fn export(ctx: &Ctx, args: &ExportArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let show = progress_enabled(ctx.json);
    let total = if show {
        Some(store.count(&SessionFilter::default()).await?)
    } else {
        None
    };
    let bar = progress_bar(show, total, "exporting");
    bar.set_message("sessions");
    let on_progress = |r: &ExportReport| {
        bar.set_position(r.sessions);
        bar.set_message("sessions");
    };

    let to_stdout = is_stdio(&args.out);
    let report = if to_stdout {
        let mut w = BufWriter::new(tokio::io::stdout());
        let report = transfer::export(&*store, &mut w, on_progress)
            .await
            .context("exporting to stdout")?;
        w.flush().await.context("writing to stdout")?;
        report
    } else {
        let file = AtomicFile::create(&args.out)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        let mut w = BufWriter::new(file.tokio_file()?);
        let report = transfer::export(&*store, &mut w, on_progress)
            .await
            .with_context(|| format!("exporting to {}", args.out.display()))?;
        w.flush().await?;
        drop(w);
        file.commit()
            .with_context(|| format!("writing {}", args.out.display()))?;
        report
    };
    bar.finish_and_clear();

    // A session deleted (or expired) during the export is simply not there; anything else
    // left out makes the export incomplete.
    let incomplete = report.skipped.iter().any(|(_, e)| !e.is_not_found());
    let summary = ExportSummary {
        out: if to_stdout {
            "-".into()
        } else {
            args.out.display().to_string()
        },
        sessions: report.sessions,
        frames: report.frames,
        skipped: report
            .skipped
            .iter()
            .map(|(id, e)| Skipped {
                id: id.clone(),
                error: e.to_string(),
            })
            .collect(),
    };
    if ctx.json {
        if to_stdout {
            // stdout carries the export itself; the summary goes to stderr.
            eprintln!("{}", serde_json::to_string(&summary)?);
        } else {
            print_json(&summary)?;
        }
    } else {
        for s in &summary.skipped {
            eprintln!("skipped session {}: {}", s.id, s.error);
        }
        let line = format!(
            "exported {} ({}) to {}",
            count_of(summary.sessions, "session", "sessions"),
            count_of(summary.frames, "frame", "frames"),
            if to_stdout { "stdout" } else { &summary.out }
        );
        if to_stdout {
            eprintln!("{line}");
        } else {
            print_text(&format!("{line}\n"))?;
        }
        if incomplete {
            eprintln!("error: the export is incomplete: some sessions could not be read");
        }
    }
    Ok(Outcome::from_ok(!incomplete))
}

/// A refused line, for output.
#[derive(Serialize)]
struct FailedLine {
    line: u64,
    error: String,
}

/// The import summary.
#[derive(Serialize)]
struct ImportSummary {
    input: String,
    dry_run: bool,
    /// Whether the store was changed (false for a dry run, or when a bad line stopped the
    /// import before anything was written).
    written: bool,
    imported: u64,
    frames: u64,
    skipped: u64,
    failed: Vec<FailedLine>,
}

/// `import`.
///
/// Two passes over the input: first every line is checked (parsed and validated against the
/// store's limits) without writing; if any line is bad and `--keep-going` is not given,
/// nothing is written at all. Then the lines are written. A session id that already exists is
/// only found in the second pass: with `--on-existing fail` that line is refused and, for a
/// `file://` store, nothing is saved.
pub(crate) async fn import(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();

    // Two passes need a seekable input: spool stdin to a temporary file first.
    let mut _spool = None;
    let path: PathBuf = if is_stdio(&args.input) {
        let spool = spool_stdin().await?;
        let p = spool.path().to_owned();
        _spool = Some(spool);
        p
    } else {
        args.input.clone()
    };
    let input_name = if is_stdio(&args.input) {
        "stdin".to_owned()
    } else {
        args.input.display().to_string()
    };
    let len = tokio::fs::metadata(&path)
        .await
        .with_context(|| format!("cannot read {input_name}"))?
        .len();
    let show = progress_enabled(ctx.json);

    let on_existing = match args.on_existing {
        OnExistingArg::Fail => OnExisting::Fail,
        OnExistingArg::Skip => OnExisting::Skip,
        OnExistingArg::Replace => OnExisting::Replace,
    };
    let mut check = ImportOptions::default();
    check.on_existing = on_existing;
    check.dry_run = true;
    check.keep_going = true;
    let checked = read_into(&*store, &path, &check, bytes_bar(show, len, "checking"))
        .await
        .with_context(|| format!("importing {input_name}"))?;

    // `written`: sessions the store now holds from this import.
    let (report, written) = if args.dry_run || (!checked.failed.is_empty() && !args.keep_going) {
        (checked, 0)
    } else {
        let mut opts = ImportOptions::default();
        opts.on_existing = on_existing;
        opts.keep_going = args.keep_going;
        let report = read_into(&*store, &path, &opts, bytes_bar(show, len, "importing"))
            .await
            .with_context(|| format!("importing {input_name}"))?;
        // Without --keep-going a refused line means: keep nothing (file stores are saved only
        // here, so they stay as they were).
        let keep = report.failed.is_empty() || args.keep_going;
        let changed = keep && report.imported > 0;
        if report.imported > 0 {
            // Other instances' caches may hold a replaced session.
            opened.announce_all().await;
        }
        if changed {
            opened.save().await?;
        }
        note_ephemeral(&opened, changed);
        // A file store is saved only when the import is kept; any other store holds what the
        // write pass wrote before a refused line.
        let unsaved = opened.file_path().is_some() || opened.is_ephemeral();
        let written = if keep || !unsaved { report.imported } else { 0 };
        (report, written)
    };

    let summary = ImportSummary {
        input: input_name,
        dry_run: args.dry_run,
        written: written > 0,
        imported: if args.dry_run {
            report.imported
        } else {
            written
        },
        frames: if args.dry_run || written == report.imported {
            report.frames
        } else {
            0
        },
        skipped: report.skipped,
        failed: report
            .failed
            .iter()
            .map(|f| FailedLine {
                line: f.line,
                error: f.error.to_string(),
            })
            .collect(),
    };
    if ctx.json {
        print_json(&summary)?;
    } else {
        let verb = if args.dry_run {
            "would import"
        } else {
            "imported"
        };
        let mut text = format!(
            "{verb} {} ({}), skipped {} existing, refused {}\n",
            count_of(summary.imported, "session", "sessions"),
            count_of(summary.frames, "frame", "frames"),
            summary.skipped,
            count_of(summary.failed.len() as u64, "line", "lines"),
        );
        for f in &summary.failed {
            text.push_str(&format!("  line {}: {}\n", f.line, f.error));
        }
        print_text(&text)?;
        if !summary.failed.is_empty() && !args.dry_run {
            let first = summary.failed.first().map_or(0, |f| f.line);
            if written == 0 {
                eprintln!(
                    "error: some lines were refused; nothing was imported (the store is \
                     unchanged; --keep-going imports the good lines)"
                );
            } else if args.keep_going {
                eprintln!("error: some lines were refused; the other sessions were imported");
            } else {
                eprintln!(
                    "error: line {first} was refused; the {} before it {} imported, the \
                     lines after it were not (--keep-going imports every good line)",
                    count_of(written, "session", "sessions"),
                    if written == 1 { "was" } else { "were" }
                );
            }
        }
    }
    opened.close().await?;
    Ok(Outcome::from_ok(summary.failed.is_empty()))
}

/// One pass of `transfer::import` over the file at `path`.
async fn read_into(
    store: &dyn SessionStore,
    path: &Path,
    options: &ImportOptions,
    bar: ProgressBar,
) -> anyhow::Result<ImportReport> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = BufReader::new(Counting {
        inner: file,
        bar: bar.clone(),
    });
    let report = transfer::import(store, &mut reader, options, |_| {}).await?;
    bar.finish_and_clear();
    Ok(report)
}

/// Copies stdin into a temporary file.
async fn spool_stdin() -> anyhow::Result<tempfile::NamedTempFile> {
    let spool = tempfile::Builder::new()
        .prefix("shoal-import-")
        .tempfile()
        .context("creating a temporary file for stdin")?;
    let mut file = tokio::fs::File::from_std(spool.reopen()?);
    tokio::io::copy(&mut tokio::io::stdin(), &mut file)
        .await
        .context("reading stdin")?;
    file.flush().await?;
    Ok(spool)
}

/// Counts bytes read into a progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.bar.inc((buf.filled().len() - before) as u64);
        }
        polled
    }
}
