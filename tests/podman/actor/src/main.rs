//! The processes of a pod for tests/podman.rs, as one static binary that
//! goes into container images: its role is the name it is run by
//! (`/usr/local/bin/pilot-agent`, `envoy`, `app`), which is also what the
//! kernel gives as its `comm`, or the first argument (`idle PORT...`).
//!
//! - `pilot-agent`: PID 1 of the proxy container, as in istio-proxy: listens
//!   on 15020 and 127.0.0.1:15004, starts `envoy` beside it, and on SIGTERM
//!   stops it and exits.
//! - `envoy`: listens where Envoy does (admin 127.0.0.1:15000 answers any
//!   request 200, as the drain call expects) and holds an inbound connection
//!   from 127.0.0.6, Istio's passthrough source, to the app's 8080.
//! - `app`: listens on 0.0.0.0:8080 and [::]:9090, holds a call to
//!   127.0.0.1:15001 and what it accepts. On SIGTERM it goes on for
//!   `APP_CLOSE_AFTER` seconds (`never`: for ever), then closes everything
//!   and exits.
//!   On 8080 it answers each request line with `OK`, on a kept-alive
//!   connection.
//! - `idle PORT...`: another container (a log shipper): listens, never exits.
//! - `client ADDR EVERY_MS FOR_S`: traffic from outside the app, as a load
//!   balancer's pool sends it: a request every EVERY_MS on one kept-alive
//!   connection (a new one after a failure) for FOR_S seconds from its
//!   first answer (it prints `client: first` then, so that a test starts a
//!   hold only once traffic flows; none in 10 s: it gives up), then prints
//!   `client: ok N failed M`.
//!
//! Each says what it does on stderr, which `podman logs` shows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let role = argv0.rsplit('/').next().unwrap_or_default().to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term))
        .expect("SIGTERM handler");
    match (role.as_str(), args.first().map(String::as_str)) {
        ("pilot-agent", _) => pilot_agent(&term),
        ("envoy", _) => envoy(&term),
        ("app", _) => app(&term),
        (_, Some("idle")) => idle(&args[1..], &term),
        (_, Some("client")) => client(&args[1..]),
        _ => {
            eprintln!("pod-actor: unknown role {role:?} {args:?}");
            std::process::exit(2);
        }
    }
}

fn listen(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen {addr}: {e}"))
}

/// What a listener does with what it accepts.
#[derive(Clone, Copy, PartialEq)]
enum Accept {
    /// Keep it open, read nothing.
    Hold,
    /// Answer the first request once (Envoy's admin port).
    Admin,
    /// Answer every request line with `OK` (the app's port).
    Serve,
}

/// Accepts on `l` in the background, each connection as `how` says.
fn hold(l: TcpListener, how: Accept) {
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten() {
            if how == Accept::Serve {
                // The thread owns it: closed when the peer closes.
                thread::spawn(move || {
                    let mut r = BufReader::new(conn);
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if r.get_mut().write_all(b"OK\n").is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            } else if how == Accept::Admin {
                let mut c = conn;
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    let n = c.read(&mut buf).unwrap_or(0);
                    let line = String::from_utf8_lossy(&buf[..n]);
                    eprintln!("envoy: admin {}", line.lines().next().unwrap_or(""));
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nOK\n");
                });
            } else {
                held.push(conn);
            }
        }
    });
}

fn wait_for(term: &AtomicBool) {
    while !term.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}

fn pilot_agent(term: &AtomicBool) {
    hold(listen("0.0.0.0:15020"), Accept::Hold);
    hold(listen("127.0.0.1:15004"), Accept::Hold);
    let mut envoy = std::process::Command::new("/usr/local/bin/envoy")
        .spawn()
        .expect("start envoy");
    eprintln!("pilot-agent: started envoy, pid {}", envoy.id());
    wait_for(term);
    eprintln!("pilot-agent: SIGTERM, stopping envoy");
    let _ = envoy.kill();
    let _ = envoy.wait();
}

fn envoy(term: &AtomicBool) {
    hold(listen("127.0.0.1:15000"), Accept::Admin);
    for port in [15001, 15006, 15021, 15090] {
        hold(listen(&format!("0.0.0.0:{port}")), Accept::Hold);
    }
    // Inbound traffic as Istio delivers it: from 127.0.0.6 to the app.
    let inbound = loop {
        match connect_from("127.0.0.6:0", "127.0.0.1:8080") {
            Ok(c) => break c,
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    eprintln!("envoy: ready, inbound {:?}", inbound.local_addr());
    wait_for(term);
}

fn connect_from(src: &str, dst: &str) -> std::io::Result<TcpStream> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&src.into())?;
    s.connect(&dst.into())?;
    Ok(s.into())
}

fn app(term: &AtomicBool) {
    hold(listen("0.0.0.0:8080"), Accept::Serve);
    hold(listen("[::]:9090"), Accept::Hold);
    let out = loop {
        match TcpStream::connect("127.0.0.1:15001") {
            Ok(c) => break c,
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    eprintln!("app: ready, outbound from {:?}", out.local_addr());
    wait_for(term);
    let after = std::env::var("APP_CLOSE_AFTER").unwrap_or_else(|_| "0".into());
    if after == "never" {
        eprintln!("app: SIGTERM, never closing");
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    let secs: f64 = after.parse().expect("APP_CLOSE_AFTER: seconds or never");
    eprintln!("app: SIGTERM, closing in {secs}s");
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!("app: closing");
    // Exiting closes every socket at once.
    std::process::exit(0);
}

fn idle(ports: &[String], term: &AtomicBool) {
    for p in ports {
        hold(listen(&format!("0.0.0.0:{p}")), Accept::Hold);
    }
    eprintln!("idle: listening on {ports:?}");
    // Another container's process: it outlives the app's shutdown.
    let _ = term;
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

fn client(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let addr: SocketAddr = arg(0).parse().expect("client ADDR EVERY_MS FOR_S");
    let every = Duration::from_millis(arg(1).parse().expect("EVERY_MS"));
    let length = Duration::from_secs_f64(arg(2).parse().expect("FOR_S"));
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut end: Option<Instant> = None;
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut conn: Option<BufReader<TcpStream>> = None;
    while Instant::now() < end.unwrap_or(give_up) {
        let sent = (|| -> std::io::Result<()> {
            if conn.is_none() {
                let c = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                c.set_read_timeout(Some(Duration::from_secs(1)))?;
                conn = Some(BufReader::new(c));
            }
            let c = conn.as_mut().expect("connected");
            c.get_mut().write_all(b"GET /\n")?;
            let mut line = String::new();
            match c.read_line(&mut line)? {
                0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
                _ => Ok(()),
            }
        })();
        match sent {
            Ok(()) => {
                ok += 1;
                if end.is_none() {
                    end = Some(Instant::now() + length);
                    println!("client: first");
                    let _ = std::io::stdout().flush();
                }
            }
            Err(_) => {
                failed += 1;
                conn = None;
            }
        }
        thread::sleep(every);
    }
    println!("client: ok {ok} failed {failed}");
}
