//! What `quiesce` would start from here and now, for `check`: the app's
//! ports, and the window the pod's history gives before a hold has timed
//! any silence of its own. The same reads as `quiesce`'s start and first
//! look, once; the window then only grows with the hold's own chances
//! (see [`crate::rhythm`]), so this is the shortest it would be.

use std::time::Instant;

use anyhow::Result;

use super::{UNKNOWN, before, floor, history, ports_list, rows, said_window};
use crate::cli::{Pod, QUIESCE_DEFAULT_INTERVAL};
use crate::decide::Containers;
use crate::decimal;
use crate::procread::netlink::ALL_STATES;
use crate::render::{json_string, push_u64};
use crate::rhythm::{Basis, Miss, Rhythm, Window};
use crate::source::Chosen;
use crate::traffic::Watch;

/// What `quiesce` would see at its first look.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The ports it would hold for (every app listener's).
    pub ports: Vec<u16>,
    /// The window it would start from.
    pub window: Window,
    /// The `--miss` it was judged by.
    pub miss: f64,
    /// Why the pod's history is unknown, where it is.
    pub no_history: Option<String>,
}

/// One look as `quiesce` (with its default interval and no `--port`)
/// would take it at `at`, from its own source: `check`'s reads no
/// `tcp_info` for the table and no TIME_WAIT rows.
pub fn preview(pod: &Pod, containers: &Containers, miss: Miss, at: Instant) -> Result<Preview> {
    let mut source = Chosen::open_with(pod.source, &pod.proc_root, |d| {
        d.with_info().with_states(ALL_STATES)
    })?;
    source.probe()?;
    let mut watch = Watch::new(pod.rules.clone(), Vec::new());
    watch.attribute(containers);
    let l = rows(&mut watch, &mut source, at, &|| false)?;
    let first = watch.finish(l, at);
    Ok(judge(
        watch.listening().to_vec(),
        before(&pod.proc_root).map_err(|e| format!("{e:#}")),
        &first,
        miss,
        at,
    ))
}

/// The pure half of [`preview`]: what the judge makes of one first look
/// and the counters' history (or why there is none).
fn judge(
    ports: Vec<u16>,
    counted: Result<(u64, std::time::Duration), String>,
    first: &crate::traffic::Look,
    miss: Miss,
    at: Instant,
) -> Preview {
    let mut rhythm = Rhythm::new(at, miss.0, floor(QUIESCE_DEFAULT_INTERVAL), UNKNOWN);
    let no_history = match counted {
        Ok(c) => {
            rhythm.history(history(c, first));
            None
        }
        Err(e) => Some(e),
    };
    Preview {
        ports,
        window: rhythm.window(),
        miss: miss.0,
        no_history,
    }
}

impl Preview {
    /// `check`'s note, after "note: ".
    pub fn said(&self) -> String {
        let ports = if self.ports.is_empty() {
            "the app listens on no port (no LISTEN socket outside the proxy's and ignored uids)"
                .to_owned()
        } else {
            format!("the app listens on {}", ports_list(&self.ports))
        };
        let history = match &self.no_history {
            Some(e) => format!("; no history of the pod's traffic ({e})"),
            None => String::new(),
        };
        format!(
            "quiesce would start from: {ports}; {}{history}",
            said_window(&self.window, self.miss)
        )
    }

    /// `check --json`'s `"quiesce"` field, with its leading comma.
    pub fn json(&self) -> Vec<u8> {
        let w = &self.window;
        let mut out = b",\"quiesce\":{\"ports\":[".to_vec();
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_u64(&mut out, u64::from(*p));
        }
        out.extend_from_slice(b"],\"window_ms\":");
        push_u64(&mut out, millis(w.length));
        out.extend_from_slice(b",\"basis\":\"");
        out.extend_from_slice(basis(w.basis).as_bytes());
        out.extend_from_slice(b"\",\"rate\":");
        out.extend_from_slice(decimal::rate(w.rate).as_bytes());
        out.extend_from_slice(b",\"arrivals\":");
        push_u64(&mut out, w.arrivals);
        out.extend_from_slice(b",\"over_ms\":");
        push_u64(&mut out, millis(w.over));
        out.extend_from_slice(if w.history {
            b",\"history\":true"
        } else {
            b",\"history\":false"
        });
        out.extend_from_slice(b",\"history_error\":");
        match &self.no_history {
            Some(e) => json_string(&mut out, e),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"miss\":");
        out.extend_from_slice(decimal::chance(self.miss).as_bytes());
        out.push(b'}');
        out
    }
}

/// The field when no preview could be taken.
pub fn json_error(e: &anyhow::Error) -> Vec<u8> {
    let mut out = b",\"quiesce\":{\"error\":".to_vec();
    json_string(&mut out, &format!("{e:#}"));
    out.push(b'}');
    out
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn basis(b: Basis) -> &'static str {
    match b {
        Basis::Nothing => "nothing",
        Basis::Unknown => "unknown",
        Basis::Floor => "floor",
        Basis::Rate => "rate",
        Basis::Gaps => "gaps",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Look;
    use std::time::Duration;

    fn first(segs: u64) -> Look {
        Look {
            lifetime_segs: segs,
            ..Look::default()
        }
    }

    fn parse(p: &Preview) -> serde_json::Value {
        let mut doc = b"{\"x\":0".to_vec();
        doc.extend_from_slice(&p.json());
        doc.push(b'}');
        serde_json::from_slice::<serde_json::Value>(&doc).unwrap()["quiesce"].clone()
    }

    #[test]
    fn a_busy_history_starts_from_a_short_window_and_says_so() {
        let at = Instant::now();
        // 60,000 accepted connections over an hour: 16.7 a second.
        let p = judge(
            vec![8080],
            Ok((60_000, Duration::from_secs(3600))),
            &first(0),
            Miss(1e-3),
            at,
        );
        assert!(p.window.history);
        assert_eq!(p.window.basis, Basis::Rate);
        // About ln(1000)/16.7 s, a little more for the rate's uncertainty.
        let len = p.window.length.as_secs_f64();
        assert!((0.4..0.6).contains(&len), "{len}");
        let j = parse(&p);
        assert_eq!(j["ports"], serde_json::json!([8080]));
        assert_eq!(j["basis"], "rate");
        assert_eq!(j["history"], true);
        assert_eq!(j["history_error"], serde_json::Value::Null);
        assert_eq!(
            j["window_ms"].as_u64(),
            Some(p.window.length.as_millis() as u64)
        );
        assert!((j["rate"].as_f64().unwrap() - 16.7).abs() < 0.1, "{j}");
        assert_eq!(j["miss"].as_f64(), Some(1e-3));
        assert!(
            p.said().starts_with(
                "quiesce would start from: the app listens on port 8080; 16.7 arrivals/s over 1m"
            ),
            "{}",
            p.said()
        );
    }

    #[test]
    fn kept_alive_segments_count_as_history() {
        let at = Instant::now();
        let none = judge(
            vec![8080],
            Ok((0, Duration::from_secs(600))),
            &first(0),
            Miss(1e-3),
            at,
        );
        assert_eq!(none.window.basis, Basis::Nothing);
        let kept = judge(
            vec![8080],
            Ok((0, Duration::from_secs(600))),
            &first(6000),
            Miss(1e-3),
            at,
        );
        assert_eq!(kept.window.basis, Basis::Rate);
        assert!(kept.window.length > none.window.length);
    }

    #[test]
    fn unreadable_counters_fall_back_to_the_unknown_window_and_say_why() {
        let p = judge(
            vec![],
            Err("/proc/net/snmp: denied".into()),
            &first(0),
            Miss(1e-3),
            Instant::now(),
        );
        assert_eq!(p.window.basis, Basis::Unknown);
        assert_eq!(p.window.length, UNKNOWN);
        let j = parse(&p);
        assert_eq!(j["history_error"], "/proc/net/snmp: denied");
        assert_eq!(j["ports"], serde_json::json!([]));
        assert!(
            p.said().contains("the app listens on no port"),
            "{}",
            p.said()
        );
        assert!(
            p.said()
                .ends_with("; no history of the pod's traffic (/proc/net/snmp: denied)")
        );
    }

    #[test]
    fn an_error_is_a_field_of_its_own() {
        let mut doc = b"{\"x\":0".to_vec();
        doc.extend_from_slice(&json_error(&anyhow::anyhow!("no \"netlink\"")));
        doc.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["quiesce"]["error"], "no \"netlink\"");
    }
}
