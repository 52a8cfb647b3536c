//! The `file://` store's export file: loaded into a memory store when the command starts,
//! written back atomically ([`AtomicFile`]) after a command that changed data.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use shoal_core::{MemoryStore, transfer};
use tokio::io::{AsyncWriteExt as _, BufReader, BufWriter};

/// Fails unless the directory that will hold `path` exists.
pub(super) fn check_parent(path: &Path) -> anyhow::Result<()> {
    let parent = parent_dir(path);
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!(
            "store file {}: {} is not a directory",
            path.display(),
            parent.display()
        ),
        Err(e) => anyhow::bail!(
            "store file {}: directory {} is not usable: {e}",
            path.display(),
            parent.display()
        ),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Loads a Shoal export into `store`. A missing or empty file is an empty store.
pub(super) async fn load_file(store: &MemoryStore, path: &Path) -> anyhow::Result<u64> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(e).with_context(|| format!("opening store file {}", path.display()));
        }
    };
    if file.metadata().await?.len() == 0 {
        return Ok(0);
    }
    let mut reader = BufReader::new(file);
    let report = transfer::import(
        store,
        &mut reader,
        &transfer::ImportOptions::default(),
        |_| {},
    )
    .await
    .with_context(|| format!("loading store file {}", path.display()))?;
    if let Some(bad) = report.failed.first() {
        anyhow::bail!(
            "loading store file {}: {bad} (the file is not a valid Shoal export)",
            path.display()
        );
    }
    Ok(report.imported)
}

/// Exports `store` to a temporary file beside `path` and renames it over `path`.
pub(super) async fn save_file(store: &MemoryStore, path: &Path) -> anyhow::Result<()> {
    let out = AtomicFile::create(path)?;
    let mut w = BufWriter::new(out.tokio_file()?);
    let report = transfer::export(store, &mut w, |_| {})
        .await
        .with_context(|| format!("writing store file {}", path.display()))?;
    w.flush().await?;
    if let Some((id, e)) = report.skipped.iter().find(|(_, e)| !e.is_not_found()) {
        anyhow::bail!(
            "store file {} not written: session {id} could not be saved: {e}",
            path.display()
        );
    }
    out.commit()
        .with_context(|| format!("saving store file {}", path.display()))?;
    tracing::debug!(path = %path.display(), sessions = report.sessions, "saved file store");
    Ok(())
}

/// A file written under a temporary name in the target's directory and renamed over the target
/// only on [`AtomicFile::commit`]; dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub(crate) struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target`. An existing target keeps its permissions.
    pub(crate) fn create(target: &Path) -> anyhow::Result<AtomicFile> {
        let dir = parent_dir(target);
        let tmp = tempfile::Builder::new()
            .prefix(".shoal-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        if let Ok(meta) = std::fs::metadata(target) {
            std::fs::set_permissions(tmp.path(), meta.permissions())
                .with_context(|| format!("copying permissions of {}", target.display()))?;
        }
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
        })
    }

    /// A Tokio handle on the temporary file.
    pub(crate) fn tokio_file(&self) -> anyhow::Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(self.tmp.as_file().try_clone()?))
    }

    /// Syncs the data and renames the file over the target.
    pub(crate) fn commit(self) -> anyhow::Result<()> {
        self.tmp.as_file().sync_all()?;
        let target = self.target;
        self.tmp
            .persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", target.display()))?;
        Ok(())
    }
}
