//! Where the CPU went during a timed run: this process (the store's client
//! side: batch building, protobuf encoding, SQL and its parameters), the
//! Postgres server (when it runs on this machine) and everything else on
//! the machine, so a run slowed by a neighbour shows it.

use std::time::Duration;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// Busy and total ticks of all CPUs since boot, from /proc/stat.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    busy: u64,
    total: u64,
}

fn machine_ticks() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_ticks(&stat)
}

/// The `cpu` line: user nice system idle iowait irq softirq steal ...;
/// idle and iowait are not busy.
fn parse_ticks(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some(Ticks {
        busy: total - idle,
        total,
    })
}

/// The fields of /proc/<pid>/stat after the command name: field 3 (state)
/// is index 0.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<Vec<u64>> {
    let (_, rest) = stat.rsplit_once(')')?;
    // The state is a letter; keep its place so indexes match the fields.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Fields 4 (ppid), 14 and 15 (utime, stime), 16 and 17 (cutime, cstime).
const PPID: usize = 1;
const UTIME: usize = 11;
const CUTIME: usize = 13;

/// The parent of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let fields = stat_fields(pid)?;
    u32::try_from(*fields.get(PPID)?).ok()
}

/// CPU of a server process and its children: its own time, the time of its
/// children it has reaped, and the time of its live children.
fn tree_ticks(pid: u32) -> Option<u64> {
    let own = stat_fields(pid)?;
    let mut ticks: u64 = own.get(UTIME..CUTIME + 2)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        if let Some(fields) = stat_fields(child)
            && fields.get(PPID).copied() == Some(u64::from(pid))
        {
            ticks += fields.get(UTIME..CUTIME).map_or(0, |t| t.iter().sum());
        }
    }
    Some(ticks)
}

fn own_ticks() -> Option<u64> {
    let fields = stat_fields(std::process::id())?;
    Some(fields.get(UTIME..CUTIME)?.iter().sum())
}

/// A reading taken when a run starts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    process: Option<u64>,
    /// The Postgres server's process and its ticks.
    postgres: Option<(u32, u64)>,
    machine: Option<Ticks>,
}

/// CPU used over a run, in cores (1.0 is one core busy the whole time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Used {
    pub process: Option<f64>,
    pub postgres: Option<f64>,
    pub machine: Option<f64>,
}

impl Used {
    /// The machine's busy cores not used by this process or Postgres.
    pub fn others(&self) -> Option<f64> {
        Some((self.machine? - self.process? - self.postgres?).max(0.0))
    }
}

/// `postmaster`: the Postgres server's main process, if it runs here.
pub fn start(postmaster: Option<u32>) -> Start {
    Start {
        process: own_ticks(),
        postgres: postmaster.and_then(|pid| Some((pid, tree_ticks(pid)?))),
        machine: machine_ticks(),
    }
}

impl Start {
    pub fn used(&self, elapsed: Duration) -> Used {
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return Used::default();
        }
        let cores_of = |ticks: u64| ticks as f64 / USER_HZ as f64 / seconds;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let process = self
            .process
            .zip(own_ticks())
            .map(|(before, after)| cores_of(after.saturating_sub(before)));
        let postgres = self.postgres.and_then(|(pid, before)| {
            tree_ticks(pid).map(|after| cores_of(after.saturating_sub(before)))
        });
        let machine = self
            .machine
            .zip(machine_ticks())
            .filter(|(before, after)| after.total > before.total)
            .map(|(before, after)| {
                (after.busy - before.busy) as f64 / (after.total - before.total) as f64 * cores
            });
        Used {
            process,
            postgres,
            machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        let ticks = parse_ticks(stat).unwrap();
        assert_eq!((ticks.busy, ticks.total), (160, 1000));
        assert!(parse_ticks("intr 1 2 3\n").is_none());
    }

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat = "42 (postgres: a (b)) S 7 42 42 0 -1 4194560 1 0 0 0 11 22 33 44 20 0 1";
        let fields = parse_stat(stat).unwrap();
        assert_eq!(fields[PPID], 7);
        assert_eq!(&fields[UTIME..CUTIME + 2], &[11, 22, 33, 44]);
    }

    #[test]
    fn this_process_is_a_tree_of_its_own() {
        let pid = std::process::id();
        assert!(parent_of(pid).is_some());
        assert!(tree_ticks(pid).is_some());
        assert!(own_ticks().is_some());
    }
}
