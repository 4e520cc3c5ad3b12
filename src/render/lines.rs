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

/// `uid 1000: 2 sockets (local ports 8080, 9090); uid 65532: 1 socket (local port 5432)`.
pub fn owner_summary(groups: &[OwnerGroup]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(
            out,
            "uid {}: {}",
            g.uid,
            count(g.sockets, "socket", "sockets")
        );
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

/// How to excuse another container than the app: nothing in the tables tells
/// containers apart (they share the network namespace, and the hook cannot
/// see the others' processes), but each usually runs as its own uid.
pub fn ignore_uid_hint(groups: &[OwnerGroup]) -> String {
    let uids: Vec<String> = groups.iter().map(|g| g.uid.to_string()).collect();
    format!(
        "if a uid here belongs to another container than the app (a log shipper, vault-agent, a native sidecar), excuse it with --ignore-uid UID (uids here: {})",
        uids.join(", ")
    )
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
