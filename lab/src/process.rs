//! What /proc says of a process (its CPU time, resident memory and allowed
//! CPUs), pinning processes to CPUs with `taskset`, and starting the servers
//! the lab runs beside dedupd (found on the PATH, in a directory of their
//! own): how the benchmark measures dedupd's own cost and keeps the
//! database off the cores it measures on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A process to read: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Own,
    Of(u32),
}

impl Pid {
    fn proc_file(self, file: &str) -> PathBuf {
        match self {
            Pid::Own => Path::new("/proc/self").join(file),
            Pid::Of(pid) => Path::new("/proc").join(pid.to_string()).join(file),
        }
    }
}

/// CPU time (user + system) the process has used so far, all its threads
/// (those that ended too); zero when it cannot be told (not Linux, or the
/// process is gone).
///
/// Read from the process's CPU-time clock, which counts nanoseconds: the
/// utime and stime of /proc/<pid>/stat count 10 ms ticks, and a scenario of
/// a few thousand requests costs only a few of them, so per-request figures
/// read from ticks were off by several microseconds either way. The ticks
/// remain the fallback.
pub fn cpu_time(pid: Pid) -> Duration {
    cpu_clock(pid).unwrap_or_else(|| {
        std::fs::read_to_string(pid.proc_file("stat"))
            .ok()
            .and_then(|stat| cpu_ticks(&stat))
            // Linux reports them in USER_HZ, which is 100 on every mainstream build.
            .map(|ticks| Duration::from_millis(ticks * 10))
            .unwrap_or(Duration::ZERO)
    })
}

/// The process's CPU-time clock (`clock_getcpuclockid`), which Linux lets
/// any process read for any other.
#[cfg(target_os = "linux")]
fn cpu_clock(pid: Pid) -> Option<Duration> {
    let pid = match pid {
        Pid::Own => 0,
        Pid::Of(pid) => libc::pid_t::try_from(pid).ok()?,
    };
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the id; a pid that does not exist
    // is an error return, not undefined behaviour.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; the clock id came from the
    // call above (a process that ended since is an error return).
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

#[cfg(not(target_os = "linux"))]
fn cpu_clock(_pid: Pid) -> Option<Duration> {
    None
}

/// utime + stime from a /proc/<pid>/stat line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The fields after the command name, which is in parentheses and may
    // hold spaces; utime and stime are fields 14 and 15 of stat, so 12 and
    // 13 after the name.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in KiB, 0 when /proc cannot tell.
pub fn rss_kib(pid: Pid) -> u64 {
    std::fs::read_to_string(pid.proc_file("status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kib = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kib.trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Resident memory in MiB (one decimal), 0 when /proc cannot tell.
pub fn rss_mib(pid: Pid) -> f64 {
    (rss_kib(pid) as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The CPUs this machine has online, as taskset lists them (`0-3`). Not
/// `available_parallelism`: that is this process's own mask, which pinning
/// narrows.
pub fn online_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|list| list.trim().to_owned())
        .ok()
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpu_range(0, cpus - 1)
        })
}

/// How many CPUs a taskset list names (`0-3,6` → 5).
pub fn cpu_count(list: &str) -> usize {
    list.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (
                    first.trim().parse::<usize>().ok()?,
                    last.trim().parse::<usize>().ok()?,
                );
                Some(last.saturating_sub(first) + 1)
            }
            None => part.trim().parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// `first-last`, or one number when they are the same.
pub fn cpu_range(first: usize, last: usize) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// Pins every thread of `pid` to `cpus`. Threads started later inherit
/// the mask of the thread that starts them, so a JVM or a tokio runtime
/// stays where it was put.
pub async fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", cpus, &pid.to_string()])
        .output()
        .await
        .context("cannot run taskset (util-linux)")?;
    anyhow::ensure!(
        output.status.success(),
        "taskset could not pin pid {pid} to CPUs {cpus}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Asks `ready` every 100 ms until it says yes, up to `attempts` times;
/// fails at once if `child` exits first. How the lab waits for a server
/// it started to answer.
pub async fn wait_ready<F>(
    child: &mut tokio::process::Child,
    attempts: u32,
    mut ready: impl FnMut() -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = bool>,
{
    for _ in 0..attempts {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("it exited with {status}");
        }
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("not ready within {} s", attempts / 10)
}

/// `name` on the PATH, if there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A new, empty directory of this process's own under the temp dir.
pub fn private_dir(kind: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "dedupd-lab-{kind}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// `program`, under `taskset --cpu-list cpus` when given: the process and
/// everything it starts stay on those CPUs.
pub fn on_cpus(cpus: Option<&str>, program: &Path) -> std::process::Command {
    match cpus {
        Some(cpus) => {
            let mut command = std::process::Command::new("taskset");
            command.args(["--cpu-list", cpus]).arg(program);
            command
        }
        None => std::process::Command::new(program),
    }
}

/// The CPUs a process may run on, as /proc says (`Cpus_allowed_list`).
pub fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("Cpus_allowed_list:")
                    .map(|cpus| cpus.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_put_on_cpus_with_taskset() {
        let pinned = on_cpus(Some("0"), Path::new("redis-server"));
        assert_eq!(pinned.get_program(), "taskset");
        let args: Vec<_> = pinned.get_args().collect();
        assert_eq!(args, ["--cpu-list", "0", "redis-server"]);
        assert_eq!(on_cpus(None, Path::new("x")).get_program(), "x");
    }

    #[test]
    fn cpu_ticks_are_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (dedupd (a b)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("4242 (truncated) S 1"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_time(Pid::Own) >= Duration::from_millis(20));
        assert!(rss_mib(Pid::Own) > 0.0);
        assert_eq!(cpu_time(Pid::Of(u32::MAX)), Duration::ZERO);
    }

    #[test]
    fn another_process_cpu_is_read_to_the_microsecond() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = Pid::Of(child.id());
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen.push(cpu_time(pid));
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen.iter().any(|cpu| *cpu > Duration::ZERO));
        // A clock of 10 ms ticks would only ever show whole ticks.
        assert!(
            seen.iter().any(|cpu| cpu.as_nanos() % 10_000_000 != 0),
            "only whole ticks seen: {seen:?}"
        );
    }

    #[test]
    fn cpu_lists_read_as_taskset_writes_them() {
        assert_eq!(cpu_range(0, 0), "0");
        assert_eq!(cpu_range(1, 3), "1-3");
        assert_eq!(cpu_count("0-3,6"), 5);
        assert_eq!(cpu_count("0"), 1);
        assert!(cpu_count(&online_cpus()) >= 1);
    }
}
