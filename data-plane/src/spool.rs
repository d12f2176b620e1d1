//! The trace spool: every batch stays until the control plane acks it as
//! stored. Batches are kept in memory up to a bound, then spill to one file
//! per batch under `<state-dir>/spool/`, named by sequence so the order holds
//! across restarts. Past the total bound the oldest batch is dropped, counted
//! and logged. Shutdown writes what is still in memory to disk, and the next
//! start sends it first. All file work runs off the async threads.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use switchyard_proto::v1 as pb;

use crate::metrics::Metrics;
use crate::state_dir::{blocking, write_atomic};

/// Health windows kept while unacked. Past it the oldest go first: the control
/// plane judges on minutes of windows, so old ones are worth little, and unlike
/// traces they are aggregates nobody asks for one by one.
pub const MAX_SPOOLED_WINDOWS: usize = 20_000;

const EXTENSION: &str = "pb";

/// What one batch carries: traces, and the health windows closed since the last one.
#[derive(Debug, Default)]
pub struct Batch {
    pub traces: Vec<pb::Trace>,
    pub health: Vec<pb::HealthWindow>,
}

enum Place {
    Memory(Batch),
    /// In the batch's file. Shed windows are left in the file and stripped
    /// when it is read back, so shedding costs no write.
    Disk {
        health_shed: bool,
    },
}

struct Entry {
    traces: usize,
    windows: usize,
    place: Place,
}

pub struct Spool {
    dir: PathBuf,
    memory_capacity: usize,
    capacity: usize,
    metrics: Arc<Metrics>,
    /// Sequence of the last batch added; also its file name.
    last_seq: u64,
    entries: BTreeMap<u64, Entry>,
    traces: usize,
    memory_traces: usize,
    windows: usize,
}

impl Spool {
    /// Opens the spool in `dir`, taking back the batches a previous run left
    /// there, in order. A file that cannot be read is moved aside and logged.
    pub async fn open(
        dir: PathBuf,
        memory_capacity: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut spool = Self {
            dir: dir.clone(),
            memory_capacity,
            capacity,
            metrics,
            last_seq: 0,
            entries: BTreeMap::new(),
            traces: 0,
            memory_traces: 0,
            windows: 0,
        };
        let recovered = match blocking(move || recover(&dir)).await {
            Ok(recovered) => recovered,
            Err(e) => {
                tracing::error!(dir = %spool.dir.display(), error = %e, "cannot read the trace spool; spooled batches stay there");
                Recovered::default()
            }
        };
        spool.last_seq = recovered.last_seq;
        for (seq, traces, windows) in recovered.batches {
            spool.traces += traces;
            spool.windows += windows;
            spool.entries.insert(
                seq,
                Entry {
                    traces,
                    windows,
                    place: Place::Disk { health_shed: false },
                },
            );
        }
        if !spool.entries.is_empty() {
            tracing::info!(
                traces = spool.traces,
                batches = spool.entries.len(),
                "recovered spooled traces; sending them first"
            );
        }
        let mut doomed = spool.drop_oldest_over(0);
        doomed.extend(spool.shed_windows());
        spool.delete(doomed).await;
        spool.publish_depth();
        spool
    }

    /// Unacked traces, in memory and on disk.
    pub fn traces(&self) -> usize {
        self.traces
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Spools a batch and returns its id. It stays in memory while there is
    /// room, else goes to its own file; the oldest batches make way past the
    /// total capacity.
    pub async fn add(&mut self, batch: Batch) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        let (traces, windows) = (batch.traces.len(), batch.health.len());
        let mut doomed = self.drop_oldest_over(traces);
        let place = if traces == 0 || self.memory_traces + traces <= self.memory_capacity {
            Place::Memory(batch)
        } else {
            self.spill(seq, batch).await
        };
        if let Place::Memory(_) = place {
            self.memory_traces += traces;
        }
        self.traces += traces;
        self.windows += windows;
        self.entries.insert(
            seq,
            Entry {
                traces,
                windows,
                place,
            },
        );
        doomed.extend(self.shed_windows());
        self.delete(doomed).await;
        self.publish_depth();
        seq
    }

    /// Forgets a batch the control plane stored.
    pub async fn ack(&mut self, seq: u64) {
        if let Some(path) = self.remove(seq) {
            self.delete(vec![path]).await;
        }
        self.publish_depth();
    }

    /// The first batch after `after` (0: the oldest), read back from its file
    /// if it spilled. A file that cannot be read is moved aside and its traces
    /// counted as dropped.
    pub async fn next_after(&mut self, mut after: u64) -> Option<pb::ReportRequest> {
        loop {
            let (&seq, entry) = self.entries.range(after.saturating_add(1)..).next()?;
            let lost = entry.traces;
            let health_shed = match &entry.place {
                Place::Memory(batch) => {
                    return Some(pb::ReportRequest {
                        batch_id: seq,
                        traces: batch.traces.clone(),
                        health: batch.health.clone(),
                    });
                }
                Place::Disk { health_shed } => *health_shed,
            };
            let path = self.file(seq);
            let read = path.clone();
            match blocking(move || read_batch(&read)).await {
                Ok(mut request) => {
                    request.batch_id = seq;
                    if health_shed {
                        request.health.clear();
                    }
                    return Some(request);
                }
                Err(e) => {
                    self.remove(seq);
                    self.metrics.traces_dropped.inc_by(lost as u64);
                    tracing::error!(file = %path.display(), error = %e, lost, "unreadable spooled batch; moved aside");
                    let _ = blocking(move || move_aside(&path)).await;
                    self.publish_depth();
                    after = seq;
                }
            }
        }
    }

    /// Writes every batch still in memory to its file, so a restart sends it.
    /// Returns the traces now on disk.
    pub async fn persist(&mut self) -> usize {
        let in_memory: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Memory(_)))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in in_memory {
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            let Place::Memory(batch) =
                std::mem::replace(&mut entry.place, Place::Disk { health_shed: false })
            else {
                continue;
            };
            match self.write(seq, &batch).await {
                Ok(()) => self.memory_traces -= batch.traces.len(),
                Err(e) => {
                    tracing::error!(batch = seq, traces = batch.traces.len(), error = %e, "cannot persist spooled traces; they are lost");
                    self.metrics
                        .traces_dropped
                        .inc_by(batch.traces.len() as u64);
                    self.memory_traces -= batch.traces.len();
                    self.remove(seq);
                }
            }
        }
        self.publish_depth();
        self.traces - self.memory_traces
    }

    /// Writes a batch that does not fit in memory to its file; keeps it in
    /// memory if the write fails (the total bound still holds).
    async fn spill(&self, seq: u64, batch: Batch) -> Place {
        match self.write(seq, &batch).await {
            Ok(()) => Place::Disk { health_shed: false },
            Err(e) => {
                tracing::warn!(batch = seq, error = %e, "cannot spill traces to disk; keeping them in memory");
                Place::Memory(batch)
            }
        }
    }

    async fn write(&self, seq: u64, batch: &Batch) -> io::Result<()> {
        let bytes = pb::ReportRequest {
            batch_id: seq,
            traces: batch.traces.clone(),
            health: batch.health.clone(),
        }
        .encode_to_vec();
        let dir = self.dir.clone();
        let path = self.file(seq);
        blocking(move || {
            std::fs::create_dir_all(&dir)?;
            write_atomic(&path, &bytes)
        })
        .await
    }

    /// Drops the oldest batches until `incoming` more traces fit; returns the
    /// files to delete.
    fn drop_oldest_over(&mut self, incoming: usize) -> Vec<PathBuf> {
        let mut doomed = Vec::new();
        while self.traces + incoming > self.capacity {
            let Some((&seq, _)) = self.entries.first_key_value() else {
                break;
            };
            let traces = self.entries.get(&seq).map_or(0, |e| e.traces);
            doomed.extend(self.remove(seq));
            self.metrics.traces_dropped.inc_by(traces as u64);
            tracing::error!(
                dropped = traces,
                "trace spool full: dropped the oldest unacked batch"
            );
        }
        doomed
    }

    /// Drops the oldest batches' health windows while there are too many;
    /// a batch left with nothing goes. Returns the files to delete.
    fn shed_windows(&mut self) -> Vec<PathBuf> {
        let mut shed = 0;
        let mut doomed = Vec::new();
        while self.windows > MAX_SPOOLED_WINDOWS {
            let Some((&seq, oldest)) = self.entries.iter_mut().find(|(_, e)| e.windows > 0) else {
                break;
            };
            shed += oldest.windows;
            self.windows -= oldest.windows;
            oldest.windows = 0;
            match &mut oldest.place {
                Place::Memory(batch) => batch.health.clear(),
                Place::Disk { health_shed } => *health_shed = true,
            }
            if oldest.traces == 0 {
                doomed.extend(self.remove(seq));
            }
        }
        if shed > 0 {
            tracing::warn!(
                shed,
                "health window spool full: dropped the oldest unacked windows"
            );
        }
        doomed
    }

    /// Takes a batch out of the counts; returns its file if it has one.
    fn remove(&mut self, seq: u64) -> Option<PathBuf> {
        let entry = self.entries.remove(&seq)?;
        self.traces -= entry.traces;
        self.windows -= entry.windows;
        match entry.place {
            Place::Memory(_) => {
                self.memory_traces -= entry.traces;
                None
            }
            Place::Disk { .. } => Some(self.file(seq)),
        }
    }

    async fn delete(&self, files: Vec<PathBuf>) {
        if files.is_empty() {
            return;
        }
        let result = blocking(move || {
            for file in &files {
                if let Err(e) = std::fs::remove_file(file)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    return Err(e);
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot delete a spooled batch; it may be sent again after a restart");
        }
    }

    fn file(&self, seq: u64) -> PathBuf {
        // Zero-padded so a directory listing sorts in sending order too.
        self.dir.join(format!("{seq:020}.{EXTENSION}"))
    }

    fn publish_depth(&self) {
        self.metrics
            .trace_spool_depth
            .set(i64::try_from(self.traces).unwrap_or(i64::MAX));
    }
}

#[derive(Default)]
struct Recovered {
    /// (sequence, traces, windows), oldest first.
    batches: Vec<(u64, usize, usize)>,
    last_seq: u64,
}

/// Reads the spool directory a previous run left: counts each batch's
/// traces one file at a time, moves unreadable files aside and removes
/// half-written ones. Blocking.
fn recover(dir: &Path) -> io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        match spool_seq(&path) {
            Some(seq) => {
                found.insert(seq, path);
            }
            // A write cut short by a crash; its batch was never spooled here.
            None if path.extension().is_some_and(|e| e == "tmp") => {
                let _ = std::fs::remove_file(&path);
            }
            None => {}
        }
    }
    let mut recovered = Recovered {
        last_seq: found.keys().next_back().copied().unwrap_or(0),
        ..Recovered::default()
    };
    for (seq, path) in found {
        match read_batch(&path) {
            Ok(batch) => recovered
                .batches
                .push((seq, batch.traces.len(), batch.health.len())),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable spooled batch; its traces are lost, file moved aside");
                if let Err(e) = move_aside(&path) {
                    tracing::error!(file = %path.display(), error = %e, "cannot move the unreadable batch aside");
                }
            }
        }
    }
    Ok(recovered)
}

/// The sequence of a spool file (`00000000000000000042.pb`), or None.
fn spool_seq(path: &Path) -> Option<u64> {
    if path.extension()? != EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn read_batch(path: &Path) -> io::Result<pb::ReportRequest> {
    let bytes = std::fs::read(path)?;
    pb::ReportRequest::decode(bytes.as_slice())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn move_aside(path: &Path) -> io::Result<()> {
    let mut aside = OsString::from(path.as_os_str());
    aside.push(".corrupt");
    std::fs::rename(path, aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(id: u64) -> pb::Trace {
        pb::Trace {
            trace_id: format!("t-{id:04}"),
            ..pb::Trace::default()
        }
    }

    /// A batch of `n` traces numbered from `first`, and `windows` health windows.
    fn batch(first: u64, n: u64, windows: usize) -> Batch {
        Batch {
            traces: (first..first + n).map(trace).collect(),
            health: vec![pb::HealthWindow::default(); windows],
        }
    }

    async fn spool(dir: &Path, memory: usize, capacity: usize) -> Spool {
        Spool::open(
            dir.join("spool"),
            memory,
            capacity,
            Arc::new(Metrics::new()),
        )
        .await
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("spool"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Every trace id the spool would send, oldest batch first.
    async fn drain_ids(spool: &mut Spool) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = 0;
        while let Some(request) = spool.next_after(after).await {
            after = request.batch_id;
            ids.extend(request.traces.into_iter().map(|t| t.trace_id));
        }
        ids
    }

    fn ids(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|i| trace(i).trace_id).collect()
    }

    #[tokio::test]
    async fn memory_fills_then_batches_spill_to_disk_and_depth_counts_both() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = spool(dir.path(), 20, 1000).await;
        let a = spool.add(batch(0, 10, 0)).await;
        let b = spool.add(batch(10, 10, 0)).await;
        assert!(files(dir.path()).is_empty());
        let c = spool.add(batch(20, 10, 0)).await;
        let d = spool.add(batch(30, 10, 0)).await;
        assert_eq!(
            files(dir.path()),
            [format!("{c:020}.pb"), format!("{d:020}.pb")]
        );
        assert_eq!((spool.traces(), spool.memory_traces), (40, 20));
        assert_eq!(spool.metrics.trace_spool_depth.get(), 40);

        // Acking a spilled batch deletes its file.
        spool.ack(c).await;
        assert_eq!(files(dir.path()), [format!("{d:020}.pb")]);
        assert_eq!(spool.metrics.trace_spool_depth.get(), 30);
        spool.ack(a).await;
        spool.ack(b).await;
        spool.ack(d).await;
        assert!(files(dir.path()).is_empty());
        assert!(spool.is_empty());
        assert_eq!(spool.metrics.trace_spool_depth.get(), 0);
        assert_eq!(spool.metrics.traces_dropped.get(), 0);
    }

    #[tokio::test]
    async fn batches_are_resent_oldest_first_across_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = spool(dir.path(), 20, 1000).await;
        for i in 0..4 {
            spool.add(batch(i * 10, 10, 0)).await;
        }
        // The two oldest are acked; memory has room again, so the next batch
        // stays in memory while older ones are on disk.
        spool.ack(1).await;
        spool.ack(2).await;
        spool.add(batch(40, 10, 0)).await;
        assert_eq!(files(dir.path()).len(), 2);
        assert_eq!(drain_ids(&mut spool).await, ids(20..50));
        // Reading back leaves the batch spooled until it is acked.
        assert_eq!(drain_ids(&mut spool).await, ids(20..50));
        assert_eq!(spool.traces(), 30);
    }

    #[tokio::test]
    async fn past_the_total_capacity_the_oldest_batch_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = spool(dir.path(), 10, 30).await;
        for i in 0..3 {
            spool.add(batch(i * 10, 10, 0)).await;
        }
        assert_eq!(files(dir.path()).len(), 2);
        spool.add(batch(30, 10, 0)).await;
        assert_eq!(spool.traces(), 30);
        assert_eq!(spool.metrics.traces_dropped.get(), 10);
        assert_eq!(drain_ids(&mut spool).await, ids(10..40));
        // The next drop takes the oldest spilled batch and its file.
        spool.add(batch(40, 10, 0)).await;
        assert_eq!(spool.metrics.traces_dropped.get(), 20);
        // The newest batch spilled: the one before it went to memory once the
        // oldest had made room there.
        assert_eq!(
            files(dir.path()),
            [format!("{:020}.pb", 3), format!("{:020}.pb", 5)]
        );
        assert_eq!(drain_ids(&mut spool).await, ids(20..50));
        assert_eq!(spool.metrics.trace_spool_depth.get(), 30);
    }

    #[tokio::test]
    async fn shutdown_persists_memory_and_a_restart_recovers_every_trace_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = spool(dir.path(), 20, 1000).await;
        for i in 0..5 {
            first.add(batch(i * 10, 10, 1)).await;
        }
        first.ack(1).await;
        assert_eq!(first.persist().await, 40);
        assert_eq!(first.memory_traces, 0);
        drop(first);
        assert_eq!(files(dir.path()).len(), 4);

        let mut second = spool(dir.path(), 20, 1000).await;
        assert_eq!(
            (
                second.traces(),
                second.windows,
                second.metrics.trace_spool_depth.get()
            ),
            (40, 4, 40)
        );
        assert_eq!(drain_ids(&mut second).await, ids(10..50));
        // New batches continue the sequence, after the recovered ones.
        let next = second.add(batch(50, 10, 0)).await;
        assert_eq!(next, 6);
        assert_eq!(drain_ids(&mut second).await, ids(10..60));
        let health = second.next_after(0).await.unwrap().health;
        assert_eq!(health.len(), 1);
    }

    #[tokio::test]
    async fn a_corrupt_spool_file_is_moved_aside_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = spool(dir.path(), 10, 1000).await;
        for i in 0..3 {
            first.add(batch(i * 10, 10, 0)).await;
        }
        first.persist().await;
        drop(first);
        let broken = dir.path().join(format!("spool/{:020}.pb", 2));
        std::fs::write(&broken, b"\xff\xff\xff not a batch").unwrap();
        std::fs::write(dir.path().join("spool/leftover.pb.tmp"), b"half").unwrap();

        let mut second = spool(dir.path(), 10, 1000).await;
        assert_eq!(second.traces(), 20);
        assert_eq!(
            drain_ids(&mut second).await,
            [ids(0..10), ids(20..30)].concat()
        );
        assert_eq!(
            files(dir.path()),
            [
                format!("{:020}.pb", 1),
                format!("{:020}.pb.corrupt", 2),
                format!("{:020}.pb", 3)
            ]
        );
    }

    #[tokio::test]
    async fn a_spilled_file_that_turns_unreadable_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = spool(dir.path(), 10, 1000).await;
        for i in 0..3 {
            spool.add(batch(i * 10, 10, 0)).await;
        }
        std::fs::write(dir.path().join(format!("spool/{:020}.pb", 2)), b"\xff").unwrap();
        assert_eq!(
            drain_ids(&mut spool).await,
            [ids(0..10), ids(20..30)].concat()
        );
        assert_eq!(spool.metrics.traces_dropped.get(), 10);
        assert_eq!(spool.traces(), 20);
        assert!(files(dir.path()).contains(&format!("{:020}.pb.corrupt", 2)));
    }

    #[tokio::test]
    async fn old_health_windows_are_shed_first_and_traces_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = spool(dir.path(), 5, 1000).await;
        let only_windows = spool.add(batch(0, 0, 10_000)).await;
        let in_memory = spool.add(batch(0, 5, 5_000)).await;
        let on_disk = spool.add(batch(5, 5, 5_000)).await;
        assert_eq!(files(dir.path()), [format!("{on_disk:020}.pb")]);
        assert_eq!(spool.windows, 20_000);
        spool.add(batch(0, 0, 1)).await;
        // The oldest windows went, and their batch with them; the traces stay.
        assert!(!spool.entries.contains_key(&only_windows));
        assert_eq!((spool.windows, spool.traces), (10_001, 10));
        spool.add(batch(0, 0, 10_000)).await;
        assert_eq!(spool.windows, 15_001);
        let kept = spool.next_after(0).await.unwrap();
        assert_eq!(
            (kept.batch_id, kept.traces.len(), kept.health.len()),
            (in_memory, 5, 0)
        );
        spool.add(batch(0, 0, 5_000)).await;
        // The spilled batch's windows are stripped when it is read back.
        let kept = spool.next_after(in_memory).await.unwrap();
        assert_eq!(
            (kept.batch_id, kept.traces.len(), kept.health.len()),
            (on_disk, 5, 0)
        );
        assert_eq!((spool.windows, spool.traces), (15_001, 10));
        spool.ack(in_memory).await;
        spool.ack(on_disk).await;
        assert_eq!(spool.traces(), 0);
    }
}
