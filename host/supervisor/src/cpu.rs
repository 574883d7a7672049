//! `--max-cpu`: a worker that used more than the allowed share of a CPU over the
//! window is recycled through the upgrade path, as one over `--max-rss` is. The
//! reading is the child process's own user + system time (`/proc/<pid>/stat`), like
//! the resident-set reading: what a wrapper script runs is not counted.

use crate::state::{Role, Supervisor, Trigger, RSS_INTERVAL};
use std::time::Instant;

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(100)
}

/// The CPU time `pid` used so far (user + system), in clock ticks; `None` if gone.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

impl Supervisor<'_> {
    /// Samples every serving child's CPU time and recycles the first one over the limit
    /// across a whole window (not while an upgrade runs: it would be recycled by it).
    pub(crate) fn check_cpu(&mut self, now: Instant) {
        let Some(max) = self.cfg.max_cpu_percent else {
            return;
        };
        if now < self.next_cpu_check {
            return;
        }
        self.next_cpu_check = now + RSS_INTERVAL;
        let window = self.cfg.cpu_window;
        let tps = ticks_per_second();
        let mut over = None;
        for p in &mut self.procs {
            if !matches!(p.role, Role::Serving { .. }) {
                p.cpu.clear();
                continue;
            }
            let Some(ticks) = cpu_ticks(p.pid) else {
                continue;
            };
            p.cpu.push_back((now, ticks));
            // Keep one sample at least a window old, none older than needed.
            while p.cpu.len() > 2 && p.cpu[1].0 + window <= now {
                p.cpu.pop_front();
            }
            let (since, start) = p.cpu[0];
            let wall = now.duration_since(since);
            if wall < window || wall.is_zero() {
                continue;
            }
            let used = ticks.saturating_sub(start) as f64 / tps as f64;
            let percent = (used / wall.as_secs_f64() * 100.0) as u64;
            if percent > max && over.is_none() {
                over = Some((p.slot, p.pid, percent));
            }
        }
        if self.upgrade.is_some() {
            return;
        }
        if let Some((slot, pid, percent)) = over {
            self.request_upgrade(Trigger::MaxCpu { slot, pid, percent }, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = cpu_ticks(std::process::id()).expect("own stat");
        let start = Instant::now();
        let mut x = 0u64;
        // Burn a little CPU: the count must not go backwards.
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        assert!(cpu_ticks(std::process::id()).unwrap() >= before);
        assert!(ticks_per_second() > 0);
    }
}
