//! Gathering: reads `/proc` into plain structs.
//!
//! [`net`] reads the socket tables, [`process`] finds which visible processes
//! hold which sockets. Nothing here decides what blocks; [`crate::decide`]
//! does. Every path is relative to a procfs root given by the caller, so tests
//! point it at a fixture tree.

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
