//! [`DurableLog`]: the journal file's one writer — a thread that appends records in the
//! order they are sent, commits them in groups (one `fsync` for every record that arrived
//! meanwhile), and acknowledges each only once it is written (and synced, under
//! [`FsyncPolicy::Always`]).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use tokio::sync::oneshot;

use super::{
    Record,
    file::{MAGIC, ReadBack, frame, read_back, rewrite},
    record::live,
};
use crate::{Error, Result, resilient::FsyncPolicy};

/// Most records one group commit writes.
const MAX_GROUP: usize = 1024;

/// A submitted record not yet known to be written.
pub(crate) struct Pending(oneshot::Receiver<io::Result<()>>);

enum Command {
    Append(Vec<u8>, oneshot::Sender<io::Result<()>>),
    Reset(oneshot::Sender<io::Result<()>>),
}

/// The open journal file (locked against other processes) and its writer thread.
#[derive(Debug)]
pub(crate) struct DurableLog {
    tx: mpsc::Sender<Command>,
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    path: PathBuf,
    /// Holds the exclusive lock on `<path>.lock`.
    _lock: File,
}

impl DurableLog {
    /// Takes the exclusive lock (`<path>.lock`, held while this log lives), reads what the
    /// file holds, rewrites it with only the records still to replay, opens it for appending
    /// and starts the writer. Returns the log and the records to replay.
    pub(crate) fn open(
        path: &Path,
        fsync: FsyncPolicy,
        max_bytes: u64,
    ) -> io::Result<(Self, ReadBack)> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "it is in use by another process (each instance needs its own journal file)",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut found = read_back(path)?;
        found.records = live(std::mem::take(&mut found.records));
        let len = rewrite(path, &found.records)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let bytes = Arc::new(AtomicU64::new(len));
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&bytes);
        std::thread::Builder::new()
            .name("shoal-journal".into())
            .spawn(move || write_loop(file, rx, fsync, shared))?;
        Ok((
            DurableLog {
                tx,
                bytes,
                max_bytes,
                path: path.to_owned(),
                _lock: lock,
            },
            found,
        ))
    }

    /// The file's length now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Queues `record` for writing (the order of submission is the order in the file) and
    /// returns what to wait on. A full file is `Unavailable`: the caller must not apply the
    /// write.
    pub(crate) fn submit(&self, record: &Record) -> Result<Pending> {
        let framed = frame(record).map_err(|e| self.failed(&e))?;
        let now = self.bytes();
        if now.saturating_add(framed.len() as u64) > self.max_bytes {
            return Err(Error::unavailable(format!(
                "resilient: the journal file {} is full ({now} of {} bytes); the write was \
                 refused and nothing was written",
                self.path.display(),
                self.max_bytes
            )));
        }
        self.send(|ack| Command::Append(framed, ack))
    }

    /// Queues truncating the file to its header (every record before it is settled).
    pub(crate) fn submit_reset(&self) -> Result<Pending> {
        self.send(Command::Reset)
    }

    /// Waits until a submitted record is written (and synced, per the policy).
    pub(crate) async fn wait(&self, pending: Pending) -> Result<()> {
        match pending.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(_) => Err(Error::unavailable(
                "resilient: the journal writer stopped before writing",
            )),
        }
    }

    fn send(
        &self,
        command: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Command,
    ) -> Result<Pending> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(command(ack))
            .map_err(|_| Error::unavailable("resilient: the journal writer has stopped"))?;
        Ok(Pending(done))
    }

    fn failed(&self, e: &io::Error) -> Error {
        Error::unavailable(format!(
            "resilient: writing the journal {} failed ({e}); the write was refused",
            self.path.display()
        ))
    }
}

/// The writer thread: groups what arrived, writes it, syncs once, acknowledges.
fn write_loop(
    mut file: File,
    rx: mpsc::Receiver<Command>,
    fsync: FsyncPolicy,
    bytes: Arc<AtomicU64>,
) {
    let mut good = bytes.load(Ordering::Relaxed);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let mut failed: Option<io::ErrorKind> = None;
        for command in group {
            match command {
                Command::Append(data, ack) => {
                    if failed.is_none() {
                        match file.write_all(&data) {
                            Ok(()) => good += data.len() as u64,
                            Err(e) => failed = Some(e.kind()),
                        }
                    }
                    acks.push(ack);
                }
                Command::Reset(ack) => {
                    // What came before the reset is committed first.
                    let r = commit(&mut file, fsync, &mut failed, &mut good, &bytes);
                    finish(&mut acks, r);
                    let r = file
                        .set_len(MAGIC.len() as u64)
                        .and_then(|()| file.sync_all());
                    if r.is_ok() {
                        good = MAGIC.len() as u64;
                        bytes.store(good, Ordering::Relaxed);
                    }
                    let _ = ack.send(r);
                }
            }
        }
        let r = commit(&mut file, fsync, &mut failed, &mut good, &bytes);
        finish(&mut acks, r);
    }
}

/// Syncs what was written (per the policy); on a failed write cuts the file back to its
/// last whole record, so nothing after a torn record is ever acknowledged.
fn commit(
    file: &mut File,
    fsync: FsyncPolicy,
    failed: &mut Option<io::ErrorKind>,
    good: &mut u64,
    bytes: &AtomicU64,
) -> io::Result<()> {
    if let Some(kind) = failed.take() {
        let _ = file.set_len(*good);
        return Err(io::Error::new(kind, "journal write failed"));
    }
    if fsync == FsyncPolicy::Always {
        file.sync_data()?;
    }
    bytes.store(*good, Ordering::Relaxed);
    Ok(())
}

fn finish(acks: &mut Vec<oneshot::Sender<io::Result<()>>>, r: io::Result<()>) {
    for ack in acks.drain(..) {
        let _ = ack.send(match &r {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        });
    }
}
