//! Gathering: reads the kernel into plain structs.
//!
//! [`net`] reads the socket tables (`<proc>/net/tcp{,6}`), [`netlink`] asks
//! the kernel's `NETLINK_SOCK_DIAG` for the same rows (and `tcp_info`),
//! [`destroys`] takes its word on each TCP socket destroyed,
//! [`process`] finds which visible processes hold which sockets,
//! [`counters`] what the namespace counted before (and the pod's age). Nothing
//! here decides what blocks; [`crate::decide`] does. Every path is relative
//! to a procfs root given by the caller, so tests point it at a fixture
//! tree; netlink reads the caller's own network namespace.

pub mod counters;
pub mod destroys;
pub mod net;
pub mod netlink;
pub mod process;

pub use net::{
    LINE_MAX, Socket, Stopped, Table, TcpInfo, TcpState, parse_line, read_table, read_table_until,
    seq_file_ended,
};
pub use process::{
    Holder, HolderList, Holders, ProcessInfo, ProcessNames, process_uid, processes_of_uid,
    proxy_log, scan_holders, socket_inode,
};
