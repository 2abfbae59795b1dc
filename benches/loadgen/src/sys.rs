//! OS bits: file-descriptor limit, own CPU usage, and /proc sampling of the
//! server under test.

use std::os::fd::AsRawFd;

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        rl.rlim_cur as u64
    }
}

/// CPU time of this process (all threads).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_kb: u64,
}

impl Usage {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

pub fn usage() -> Usage {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return Usage::default();
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            user_s: tv(ru.ru_utime),
            sys_s: tv(ru.ru_stime),
            max_rss_kb: ru.ru_maxrss as u64,
        }
    }
}

/// Let `connect` pick the source port (Linux IP_BIND_ADDRESS_NO_PORT), so a
/// bound source address is not limited to one ephemeral range overall.
pub fn set_bind_address_no_port(sock: &tokio::net::TcpSocket) {
    const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a valid fd with a c_int option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// RSS and CPU time of another process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub rss_bytes: u64,
    pub cpu_s: f64,
    pub at: std::time::Instant,
}

/// `VmRSS:` of /proc/PID/status, in kB.
pub fn parse_status_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `(utime, stime)` clock ticks of /proc/PID/stat (fields 14 and 15; the
/// command name in parentheses may contain spaces).
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // after ')' come field 3 (state) .. ; utime is field 14 => index 11 here
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

pub fn sample_proc(pid: u32) -> Result<ProcSample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rss_kb = parse_status_rss_kb(&status).ok_or("no VmRSS in /proc/PID/status")?;
    let (u, s) = parse_stat_ticks(&stat).ok_or("cannot parse /proc/PID/stat")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcSample {
        rss_bytes: rss_kb * 1024,
        cpu_s: (u + s) as f64 / hz,
        at: std::time::Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tpython3\nVmPeak:\t  1000 kB\nVmRSS:\t   51234 kB\nThreads: 3\n";
        assert_eq!(parse_status_rss_kb(status), Some(51234));
        let stat =
            "1234 (py thon) S 1 1234 1234 0 -1 4194304 500 0 0 0 777 333 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some((777, 333)));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn samples_self() {
        let s = sample_proc(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        let u = usage();
        assert!(u.cpu_s() >= 0.0);
        assert!(raise_nofile() > 0);
    }
}
