//! Resource use of a process, read from Linux's /proc.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most that was ever resident.
    pub peak_kib: u64,
}

/// A process's memory once it had stopped growing.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub memory: Memory,
    /// From the first reading to the one it settled at.
    pub after: Duration,
    /// False if it was still changing when the wait ended.
    pub settled: bool,
}

/// Reads the memory of `pid` every [`SETTLE_STEP`] until VmRSS has moved by
/// less than [`SETTLE_SLACK_KIB`] over [`SETTLE_READINGS`] readings, or
/// `within` has passed.
pub async fn settled_memory(pid: u32, within: Duration) -> anyhow::Result<Settled> {
    let start = tokio::time::Instant::now();
    let mut recent: Vec<u64> = Vec::new();
    loop {
        let now = memory(pid)?;
        recent.push(now.rss_kib);
        if recent.len() > SETTLE_READINGS {
            recent.remove(0);
        }
        let (low, high) = recent
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let settled = recent.len() == SETTLE_READINGS && high - low < SETTLE_SLACK_KIB;
        if settled || start.elapsed() >= within {
            return Ok(Settled {
                memory: now,
                after: start.elapsed(),
                settled,
            });
        }
        tokio::time::sleep(SETTLE_STEP).await;
    }
}

/// How often [`settled_memory`] reads, over how many readings, and how much
/// movement still counts as settled.
const SETTLE_STEP: Duration = Duration::from_millis(250);
const SETTLE_READINGS: usize = 5;
const SETTLE_SLACK_KIB: u64 = 256;

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_memory(&status).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

/// User plus system CPU time the process has used so far, all threads.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let (user, system) = cpu_times(pid)?;
    Ok(user + system)
}

/// User and system (kernel) CPU time the process has used so far, all threads.
pub fn cpu_times(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (user, system) =
        parse_user_system(&stat).with_context(|| format!("unexpected format of {path}"))?;
    let time = |ticks: u64| Duration::from_millis(ticks * 1000 / USER_HZ);
    Ok((time(user), time(system)))
}

/// CPU time used so far by the live threads of the process, summed by
/// thread name (`tokio-rt-worker`, `sqlx-sqlite-wor`, ...). Threads that have
/// already exited are missing.
pub fn cpu_by_thread(pid: u32) -> anyhow::Result<BTreeMap<String, Duration>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::new();
    for task in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let task = task.with_context(|| format!("listing {dir}"))?.path();
        // A thread may exit between listing and reading: skip it.
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        if let Some(ticks) = parse_cpu_ticks(&stat) {
            *by_name.entry(name.trim().to_owned()).or_default() +=
                Duration::from_millis(ticks * 1000 / USER_HZ);
        }
    }
    Ok(by_name)
}

/// The soft and hard "Max open files" limits of a process, as /proc shows
/// them (a number or `unlimited`); `None` if they cannot be read.
pub fn open_files_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<(String, String)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        peak_kib: field("VmHWM")?,
    })
}

/// utime + stime: fields 14 and 15 of /proc/<pid>/stat.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (utime, stime) = parse_user_system(stat)?;
    Some(utime + stime)
}

/// utime and stime, fields 14 and 15 of /proc/<pid>/stat. The command name
/// (field 2) may hold spaces, so fields are counted after its closing paren.
fn parse_user_system(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak() {
        let status = "Name:\tswitchyard\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t7\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 40960,
                peak_kib: 51234
            })
        );
        assert_eq!(parse_memory("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_after_a_name_with_spaces() {
        let stat = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 7 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_user_system(stat), Some((250, 75)));
    }

    #[test]
    fn reads_open_file_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63432                63432                processes \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(
            parse_open_files(limits),
            Some(("1024".to_owned(), "524288".to_owned()))
        );
        assert!(open_files_limit(std::process::id()).is_some());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(memory(me).unwrap().peak_kib > 0);
        cpu_time(me).unwrap();
        assert!(!cpu_by_thread(me).unwrap().is_empty());
    }
}
