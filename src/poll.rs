//! One look at the pod: read both tables, scan fds only if needed, decide.

use std::path::PathBuf;

use anyhow::Result;

use crate::decide::{self, PodFacts, Rules, Verdict};
use crate::procread::{self, Socket, Table};

/// Reads and decides, reusing its read buffer across polls.
#[derive(Debug)]
pub struct Poller {
    proc_root: PathBuf,
    rules: Rules,
    keep_ignored: bool,
    buf: Vec<u8>,
}

impl Poller {
    /// A poller over `proc_root`; `keep_ignored` keeps excused sockets for `--all`.
    pub fn new(proc_root: PathBuf, rules: Rules, keep_ignored: bool) -> Self {
        Poller {
            proc_root,
            rules,
            keep_ignored,
            buf: Vec::new(),
        }
    }

    /// One poll. Errors only when a table cannot be read or parsed, or the
    /// process list itself cannot be opened; vanished or foreign processes are not errors.
    pub fn poll(&mut self) -> Result<Verdict> {
        let mut rows: Vec<Socket> = Vec::new();
        let mut facts = PodFacts::default();
        let (rules, keep_ignored) = (&self.rules, self.keep_ignored);
        for table in [Table::Tcp, Table::Tcp6] {
            procread::read_table(&self.proc_root, table, &mut self.buf, |s| {
                facts.note(&s, rules);
                if decide::keep_row(&s, rules, keep_ignored) {
                    rows.push(s);
                }
            })?;
        }
        // The table's size is unknown until read; give back the doubling slack.
        rows.shrink_to_fit();
        let mut wanted: Vec<u64> = rows.iter().map(|s| s.inode).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // The proxy's own processes are not scanned while no socket left to
        // decide has their uid, which is the whole wait in an Istio pod
        // (`--all` keeps those sockets, and so scans them). Every socket such
        // a process makes is excused by its uid already; what the scan could
        // find there is only a socket made under another uid and handed over,
        // and that then blocks: a longer wait, never a shorter one. What it
        // saves is a readlink per fd of a busy Envoy on every poll, tens of
        // milliseconds at 20,000 connections.
        let skip_uids: Vec<u32> = rules
            .proxy_uids
            .iter()
            .copied()
            .filter(|&uid| !rows.iter().any(|s| s.uid == uid))
            .collect();
        // The fd scan walks every process: it returns at once when no socket needs it.
        let holders = procread::scan_holders(&self.proc_root, &wanted, &skip_uids)?;
        drop(wanted);
        Ok(decide::decide(
            rows,
            &holders,
            &self.rules,
            &facts,
            self.keep_ignored,
        ))
    }
}
