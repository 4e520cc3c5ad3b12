//! Where socket rows come from: the seam a source plugs into without
//! touching [`crate::decide`] or any sink. Two sources: the kernel's netlink
//! dump ([`procread::netlink`]), and `<proc>/net/tcp{,6}` ([`ProcTables`]),
//! which every fixture test uses and which is the fallback where netlink is
//! denied.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::decide::Containers;
use crate::procread::{self, Socket, Table, netlink::Diag};

/// The cgroup v2 root's id (its kernfs inode), where every socket of a
/// cgroup v1 node is.
const ROOT_CGROUP: u64 = 1;

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

    /// Its name in output: `netlink` or `proc`.
    fn name(&self) -> &'static str;
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

    fn name(&self) -> &'static str {
        "proc"
    }
}

/// Which source `--source` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// Netlink when the procfs root is a live procfs (the hook's own network
    /// namespace: `net/` there is the reader's), the tables otherwise or
    /// where netlink is denied.
    #[default]
    Auto,
    /// The kernel's netlink dump; an error where it is denied.
    Netlink,
    /// `<proc>/net/tcp{,6}`.
    Proc,
}

/// The source a command reads, chosen once at its start.
#[derive(Debug)]
pub enum Chosen {
    /// The netlink dump; the tables stay ready in case it fails before its
    /// first row (`auto` only).
    Netlink(Diag, Option<ProcTables>),
    /// The tables; with why not netlink when `auto` fell back.
    Proc(ProcTables, Option<String>),
}

impl Chosen {
    /// Chooses as `kind` says for the procfs root `proc_root`, with the
    /// netlink socket set up by `setup` (to ask for `tcp_info`, or for
    /// other states).
    pub fn open_with(
        kind: Kind,
        proc_root: &Path,
        setup: impl FnOnce(Diag) -> Diag,
    ) -> Result<Chosen> {
        let tables = ProcTables::new(proc_root.to_path_buf());
        match kind {
            Kind::Proc => Ok(Chosen::Proc(tables, None)),
            Kind::Netlink => match Diag::open().map(setup) {
                Ok(d) => Ok(Chosen::Netlink(d, None)),
                Err(e) => bail!("--source netlink: cannot open a NETLINK_SOCK_DIAG socket: {e}"),
            },
            Kind::Auto if !is_procfs(proc_root) => Ok(Chosen::Proc(tables, None)),
            Kind::Auto => match Diag::open().map(setup) {
                Ok(d) => Ok(Chosen::Netlink(d, Some(tables))),
                Err(e) => Ok(Chosen::Proc(
                    tables,
                    Some(format!("netlink is not available ({e})")),
                )),
            },
        }
    }

    /// Makes sure what `auto` opened also answers: one dump of `tcp`, read
    /// and dropped. A sandbox that lets the netlink socket open but refuses
    /// the dump (seccomp on `sendto`) is found here, not at the first look,
    /// so that what a hook says it reads at its start is what it reads.
    /// Costs one dump of listeners only, once (see [`Diag::probe`]). An
    /// explicit `--source netlink` is not probed: it has no tables to fall
    /// back to, and its first look says what fails.
    pub fn probe(&mut self) -> Result<()> {
        let Chosen::Netlink(diag, tables @ Some(_)) = self else {
            return Ok(());
        };
        if let Err(e) = diag.probe() {
            let tables = tables.take().expect("matched Some");
            *self = Chosen::Proc(tables, Some(format!("netlink is not available ({e:#})")));
        }
        Ok(())
    }

    /// How this command can tell containers apart, asked once: by the
    /// kernel's cgroup id of each socket where it gives one and the command
    /// runs in a cgroup v2 group of its own (each container does on a
    /// cgroup v2 node), by uid and process name otherwise, with why. Costs
    /// one dump of UDP sockets (see [`Diag::own_cgroup`]).
    pub fn containers(&mut self) -> Containers {
        let diag = match self {
            Chosen::Proc(..) => return Containers::Flags("the tables carry no cgroup ids".into()),
            Chosen::Netlink(diag, _) => diag,
        };
        match diag.own_cgroup() {
            // No cgroup is numbered 0: the attribute is missing.
            Ok(0) => Containers::Flags(
                "the kernel gives sockets no cgroup id (it needs Linux 5.8)".into(),
            ),
            // The root of the cgroup v2 hierarchy: on a cgroup v1 node every
            // socket is there, whatever its container.
            Ok(ROOT_CGROUP) => Containers::Flags(
                "this process has no cgroup v2 group of its own (a cgroup v1 node?)".into(),
            ),
            Ok(id) => Containers::Cgroup(id),
            Err(e) => Containers::Flags(format!("cannot learn this container's cgroup: {e:#}")),
        }
    }

    /// What the hooks' first line says it reads: `netlink`, `proc`, or
    /// `the tables (WHY)` where `auto` fell back.
    pub fn origin(&self) -> String {
        match self.fallback() {
            Some(why) => format!("the tables ({why})"),
            None => self.name().to_owned(),
        }
    }

    /// Whether rows come from the tables, which carry no `tcp_info`.
    pub fn is_tables(&self) -> bool {
        matches!(self, Chosen::Proc(..))
    }

    /// Why `auto` reads the tables though the root is a live procfs.
    pub fn fallback(&self) -> Option<&str> {
        match self {
            Chosen::Proc(_, why) => why.as_deref(),
            Chosen::Netlink(..) => None,
        }
    }
}

impl Source for Chosen {
    fn read(
        &mut self,
        table: Table,
        stop: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Socket),
    ) -> Result<()> {
        let (diag, tables) = match self {
            Chosen::Proc(t, _) => return t.read(table, stop, visit),
            Chosen::Netlink(d, t) => (d, t),
        };
        let mut rows = 0usize;
        let dumped = diag.dump(table, stop, &mut |s| {
            rows += 1;
            visit(s);
        });
        match dumped {
            // A sandbox that lets the socket open but refuses the dump
            // (seccomp on sendto, a gVisor without sock_diag): the tables
            // from now on, said as a fallback (`auto` only: it kept them).
            Err(e) if rows == 0 && !e.is::<procread::Stopped>() => match tables.take() {
                Some(t) => {
                    *self = Chosen::Proc(t, Some(format!("netlink is not available ({e:#})")));
                    self.read(table, stop, visit)
                }
                None => Err(e),
            },
            other => other,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Chosen::Netlink(..) => "netlink",
            Chosen::Proc(..) => "proc",
        }
    }
}

/// Whether `root` is a procfs mount (not a fixture tree).
fn is_procfs(root: &Path) -> bool {
    rustix::fs::statfs(root).is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC)
}
