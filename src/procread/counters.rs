//! What the kernel counts of a pod's past: the network namespace's TCP
//! counters (`<proc>/net/snmp`) and the pod's age (its PID 1's start), so
//! that a hook knows at its first look whether the traffic it is about to
//! watch is busy or sparse.
//!
//! `PassiveOpens` counts every connection accepted in the namespace since
//! it was made, the proxy's included; `/proc/1` is the container's first
//! process (the pause process where the pod shares one PID namespace):
//! both about the pod's life, readable unprivileged.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// The namespace's `Tcp: PassiveOpens`: connections accepted since it was
/// made.
pub fn passive_opens(proc_root: &Path) -> Result<u64> {
    let path = proc_root.join("net/snmp");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    parse_passive_opens(&text).with_context(|| path.display().to_string())
}

/// How long ago `<proc>/1` started, by `<proc>/uptime`.
pub fn age_of_pid1(proc_root: &Path) -> Result<Duration> {
    let stat = proc_root.join("1/stat");
    let stat = std::fs::read_to_string(&stat).with_context(|| stat.display().to_string())?;
    let uptime = proc_root.join("uptime");
    let uptime = std::fs::read_to_string(&uptime).with_context(|| uptime.display().to_string())?;
    age(&stat, &uptime, procfs::ticks_per_second())
}

fn parse_passive_opens(text: &str) -> Result<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("no Tcp: lines");
    };
    let at = names
        .split_whitespace()
        .position(|n| n == "PassiveOpens")
        .ok_or_else(|| anyhow!("no PassiveOpens in the Tcp: line"))?;
    let v = values
        .split_whitespace()
        .nth(at)
        .ok_or_else(|| anyhow!("the Tcp: values end before PassiveOpens"))?;
    v.parse()
        .map_err(|_| anyhow!("PassiveOpens is not a count: {v:?}"))
}

/// Field 22 of `stat` is the start in clock ticks since boot; the comm
/// before it is in parentheses and may hold spaces and parentheses.
fn age(stat: &str, uptime: &str, ticks: u64) -> Result<Duration> {
    let after = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("1/stat: no ')' after the comm"))?
        .1;
    let start: u64 = after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("1/stat: no start time"))?;
    let up: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(crate::decimal::parse)
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| anyhow!("uptime: not a number of seconds"))?;
    let started = start as f64 / ticks.max(1) as f64;
    Ok(Duration::from_secs_f64((up - started).clamp(0.0, 1e12)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_opens_is_read_by_its_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\nTcp: 1 200 120000 -1 75 30 5\nUdp: InDatagrams\nUdp: 3\n";
        assert_eq!(parse_passive_opens(snmp).unwrap(), 30);
        assert!(parse_passive_opens("Ip: a\nIp: 1\n").is_err());
        let e = parse_passive_opens("Tcp: PassiveOpens\nTcp: x\n").unwrap_err();
        assert_eq!(e.to_string(), "PassiveOpens is not a count: \"x\"");
    }

    #[test]
    fn the_age_is_uptime_less_the_start() {
        // A comm with a space and a parenthesis; start at 2,000 ticks (20s).
        let stat = "1 (my (app) x) S 0 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 2000 1000 10";
        let age = age(stat, "120.50 200.00\n", 100).unwrap();
        assert_eq!(age, Duration::from_millis(100_500));
        assert!(super::age("1 (x S", "1\n", 100).is_err());
        assert!(super::age(stat, "nan\n", 100).is_err());
    }

    #[test]
    fn live_counters_read() {
        let root = Path::new("/proc");
        assert!(age_of_pid1(root).unwrap() > Duration::ZERO);
        passive_opens(root).unwrap();
    }
}
