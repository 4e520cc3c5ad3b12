//! The fragments the hooks' log lines are made of: what blocks, by owner,
//! and the notes a person reading the log needs.

use std::fmt::Write as _;

use super::{count, describe};
use crate::decide::{Entry, Rules};
use crate::sink::OwnerGroup;

/// What the user excused in `rules`, for a hook's start line:
/// `, ignoring uids [..]`, `, ignoring ports [..]`, or nothing.
pub fn ignoring(rules: &Rules) -> String {
    let mut s = String::new();
    if !rules.ignore_uids.is_empty() {
        let _ = write!(s, ", ignoring uids {:?}", rules.ignore_uids);
    }
    if !rules.ignore_ports.is_empty() {
        let _ = write!(s, ", ignoring ports {:?}", rules.ignore_ports);
    }
    s
}

/// What `wait` waits for: `sockets not owned by proxy uids [1337] or
/// processes ["envoy"]`, or where the cgroup tells containers apart,
/// `other containers' sockets`, with what given flags add.
pub fn whose_sockets(rules: &Rules) -> String {
    if rules.own_cgroup.is_none() {
        return format!(
            "sockets not owned by proxy uids {:?} or processes {:?}",
            rules.proxy_uids, rules.proxy_names
        );
    }
    let mut s = "other containers' sockets".to_owned();
    let uids = rules.proxy_uids_given.then_some(&rules.proxy_uids);
    let names = rules.proxy_names_given.then_some(&rules.proxy_names);
    match (uids, names) {
        (Some(u), Some(n)) => {
            let _ = write!(s, " not owned by proxy uids {u:?} or processes {n:?}");
        }
        (Some(u), None) => {
            let _ = write!(s, " not owned by proxy uids {u:?}");
        }
        (None, Some(n)) => {
            let _ = write!(s, " not held by processes {n:?}");
        }
        (None, None) => {}
    }
    s
}

/// The first `max` of `count` entries joined for a log line, with `and N more`.
pub fn summary<'a>(entries: impl Iterator<Item = Entry<'a>>, count: usize, max: usize) -> String {
    let mut out = entries
        .take(max)
        .map(|e| describe(&e))
        .collect::<Vec<_>>()
        .join(", ");
    if count > max {
        let _ = write!(out, ", and {} more", count - max);
    }
    out
}

/// Said once by `wait` and by `check` when the tables are the node's.
pub const HOST_NETWORK_NOTE: &str = "these are the node's sockets, not a pod's (the kubelet's port 10250 is listening: hostNetwork: true); every socket on the node counts, so the wait lasts until --timeout (see README, hostNetwork pods)";

/// How many local ports a group names before `+N more`.
const GROUP_PORTS: usize = 8;

/// What the owner groups are: `container` where the cgroup tells
/// containers apart, `owner` (a uid) otherwise.
pub fn owners_by(groups: &[OwnerGroup]) -> &'static str {
    if groups.iter().any(|g| g.cgroup != 0) {
        "container"
    } else {
        "owner"
    }
}

/// `uid 1000: 2 sockets (local ports 8080, 9090); uid 65532: 1 socket (local
/// port 5432)`; by container, `cgroup 4242 (uid 1000): 2 sockets (...)`.
pub fn owner_summary(groups: &[OwnerGroup]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let sockets = count(g.sockets, "socket", "sockets");
        let _ = match g.cgroup {
            0 => write!(out, "uid {}: {sockets}", g.uid),
            id => write!(out, "cgroup {id} (uid {}): {sockets}", g.uid),
        };
        let ports: Vec<String> = g
            .ports
            .iter()
            .take(GROUP_PORTS)
            .map(u16::to_string)
            .collect();
        let _ = write!(
            out,
            " ({} {}",
            if g.ports.len() == 1 {
                "local port"
            } else {
                "local ports"
            },
            ports.join(", ")
        );
        if g.ports.len() > GROUP_PORTS {
            let _ = write!(out, ", +{} more", g.ports.len() - GROUP_PORTS);
        }
        out.push(')');
    }
    out
}

/// How to excuse another container than the app. Each usually runs as its
/// own uid; where one shares the app's (cgroups tell them apart: two
/// groups, one uid), only its ports can excuse it.
pub fn ignore_uid_hint(groups: &[OwnerGroup]) -> String {
    let mut uids: Vec<u32> = groups.iter().map(|g| g.uid).collect();
    uids.sort_unstable();
    let n = uids.len();
    uids.dedup();
    let shared = uids.len() < n;
    let uids: Vec<String> = uids.iter().map(u32::to_string).collect();
    let mut hint = format!(
        "if a uid here belongs to another container than the app (a log shipper, vault-agent, a native sidecar), excuse it with --ignore-uid UID (uids here: {})",
        uids.join(", ")
    );
    if shared {
        hint.push_str("; containers that share a uid, by their ports: --ignore-port PORT");
    }
    hint
}

/// Says what the fd scan could not look at, or `None` when it saw everything.
///
/// Without `CAP_SYS_PTRACE` (the hook's normal case: uid 1337, capabilities
/// dropped) the fds of other uids' processes cannot be read, and then their
/// sockets show no process and block, which is the safe side.
pub fn uninspected_note(processes: usize, fds: usize) -> Option<String> {
    let mut parts = Vec::new();
    match processes {
        0 => {}
        1 => parts.push("1 process".to_owned()),
        n => parts.push(format!("{n} processes")),
    }
    match fds {
        0 => {}
        1 => parts.push("1 fd".to_owned()),
        n => parts.push(format!("{n} fds")),
    }
    (!parts.is_empty()).then(|| {
        format!(
            "could not inspect {} (no permission); sockets held only there show no process and block",
            parts.join(" and ")
        )
    })
}
