//! Where socket rows come from: the seam another source (the kernel's
//! netlink dump) plugs into without touching [`crate::decide`] or any sink.

use std::path::PathBuf;

use anyhow::Result;

use crate::procread::{self, Socket, Table};

/// A source of socket rows, one table (address family) at a time.
pub trait Source {
    /// Hands every socket of `table` to `visit`, in the kernel's order
    /// (listeners first); gives up with [`procread::Stopped`] once `stop()`
    /// says so. A family the kernel does not have is an empty table.
    fn read(
        &mut self,
        table: Table,
        stop: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Socket),
    ) -> Result<()>;
}

/// `<proc>/net/tcp` and `<proc>/net/tcp6`, streamed through one reused buffer.
#[derive(Debug)]
pub struct ProcTables {
    proc_root: PathBuf,
    buf: Vec<u8>,
}

impl ProcTables {
    /// The tables under this procfs root.
    pub fn new(proc_root: PathBuf) -> Self {
        ProcTables {
            proc_root,
            buf: Vec::new(),
        }
    }
}

impl Source for ProcTables {
    fn read(
        &mut self,
        table: Table,
        stop: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Socket),
    ) -> Result<()> {
        procread::read_table_until(&self.proc_root, table, &mut self.buf, stop, visit)
    }
}
