//! `install DIR`: the init-container step. Copies the running binary to
//! `DIR/prestop-wait` so a proxy container that mounts DIR can run it as its
//! preStop hook, with no custom proxy image. It must work from the `scratch`
//! image, which has no shell and no `cp`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::exit_codes::ExitCode;

/// The installed file's name in DIR.
pub const NAME: &str = "prestop-wait";

/// The running binary. Through /proc rather than argv[0]: it is there in
/// every container, whatever the path the binary was started by.
const SELF_EXE: &str = "/proc/self/exe";

/// Runs `install DIR`, printing the installed path to `out`: escaped where
/// it holds control characters, so that it stays one line.
pub fn run(dir: &Path, out: &mut impl Write) -> Result<ExitCode> {
    let installed = install(Path::new(SELF_EXE), dir)?;
    writeln!(out, "{}", shown(&installed))?;
    Ok(ExitCode::Success)
}

/// A path for one line of output or an error: control characters escaped
/// (`\n`), as process names are, invalid UTF-8 as U+FFFD.
pub fn shown(path: &Path) -> String {
    crate::render::printable(&path.to_string_lossy()).into_owned()
}

/// How many temporary names a run tries before it gives up.
const TMP_TRIES: u32 = 16;

/// A temporary name no other run uses: the pid alone is not (two init
/// containers of pods sharing a volume are each PID 1 of their own PID
/// namespace), so a random part from std's per-process seeded hasher
/// (getrandom underneath) and the clock go with it.
fn tmp_name(try_no: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(try_no);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!(".{NAME}.{}.{:016x}.tmp", std::process::id(), h.finish())
}

/// Creates a temporary file in `dir` that this run alone owns (`O_EXCL`):
/// a name taken by another run, or left by a killed one, is passed over,
/// never opened, truncated or removed.
fn create_tmp(dir: &Path) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for try_no in 0..TMP_TRIES {
        let tmp = dir.join(tmp_name(try_no));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Copies all of `from` into `to`, mode 0755, synced, and closes `to`.
///
/// Taking `to` by value is the point: it is dropped (closed) here, before
/// the caller renames it into place. The kernel refuses to exec a file that
/// any process holds open for writing (`ETXTBSY`, "Text file busy"), so a
/// copy renamed while still open fails every container that starts it in
/// that moment. No other writable descriptor of it exists: std opens files
/// `O_CLOEXEC` (no child of ours inherits one), this run starts no child,
/// and nothing here clones the descriptor.
fn write_whole(from: &mut File, mut to: File) -> io::Result<()> {
    let len = io::copy(from, &mut to)?;
    let want = from.metadata()?.len();
    if len != want {
        return Err(io::Error::other(format!("copied {len} of {want} bytes")));
    }
    // The mode given at create is cut by the umask; this one is not.
    to.set_permissions(fs::Permissions::from_mode(0o755))?;
    // Errors of delayed writes come out here, before the close, which
    // cannot report them.
    to.sync_all()?;
    drop(to);
    Ok(())
}

/// Copies `source` to `dir/prestop-wait`, mode 0755.
///
/// The copy goes to a temporary file in `dir` first, a name of this run's
/// own, and is renamed into place, so a container that starts while this
/// runs (or a restarted init container running it again, or another pod's
/// init container on a shared volume at the same moment) never sees half a
/// file; a failure removes only that temporary file.
pub fn install(source: &Path, dir: &Path) -> Result<PathBuf> {
    let shown = shown(dir);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("install: {shown} is not a directory"),
        Err(e) => bail!("install: cannot use {shown}: {e}"),
    }
    let mut from = File::open(source)
        .with_context(|| format!("install: cannot read this binary ({})", self::shown(source)))?;
    let target = dir.join(NAME);
    let (to, tmp) = create_tmp(dir)
        .map_err(|e| anyhow::anyhow!("install: cannot write {NAME} into {shown}: {e}"))?;
    // `write_whole` takes the temporary file and closes it before it
    // returns: the rename comes after the last writable descriptor is gone.
    let copied = write_whole(&mut from, to).and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        bail!("install: cannot write {NAME} into {shown}: {e}");
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join("src-binary");
        fs::write(&p, bytes).unwrap();
        p
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn copies_with_mode_0755_and_again_over_itself() {
        let work = tempfile::tempdir().unwrap();
        let src = source(work.path(), b"\x7fELF binary bytes");
        let dest = tempfile::tempdir().unwrap();
        for content in [&b"\x7fELF binary bytes"[..], b"\x7fELF newer binary"] {
            fs::write(&src, content).unwrap();
            let got = install(&src, dest.path()).unwrap();
            assert_eq!(got, dest.path().join("prestop-wait"));
            assert_eq!(fs::read(&got).unwrap(), content);
            let mode = fs::metadata(&got).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o755);
            assert_eq!(names(dest.path()), ["prestop-wait"], "nothing else left");
        }
    }

    #[test]
    fn a_missing_or_wrong_dir_is_one_line_naming_it_and_leaves_nothing() {
        let work = tempfile::tempdir().unwrap();
        let src = source(work.path(), b"x");
        let missing = work.path().join("nope");
        let err = format!("{:#}", install(&src, &missing).unwrap_err());
        assert!(
            err.starts_with(&format!("install: cannot use {}: ", missing.display())),
            "{err}"
        );
        let err = format!("{:#}", install(&src, &src).unwrap_err());
        assert_eq!(
            err,
            format!("install: {} is not a directory", src.display())
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn an_unwritable_dir_fails_and_leaves_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let work = tempfile::tempdir().unwrap();
        let src = source(work.path(), b"x");
        let dest = tempfile::tempdir().unwrap();
        fs::set_permissions(dest.path(), fs::Permissions::from_mode(0o555)).unwrap();
        // Root writes anyway; the binary test checks this as another uid.
        if File::create(dest.path().join("probe")).is_ok() {
            // Not a missing prerequisite: tests/install.rs checks this as
            // another uid.
            eprintln!("not checked as root, which writes into a 0555 directory anyway");
            return;
        }
        let err = format!("{:#}", install(&src, dest.path()).unwrap_err());
        assert!(
            err.starts_with(&format!(
                "install: cannot write prestop-wait into {}: ",
                dest.path().display()
            )),
            "{err}"
        );
        assert!(names(dest.path()).is_empty());
    }

    /// No child started while the copy is open inherits a writable
    /// descriptor of it (which would keep the installed file busy for exec):
    /// the temporary file is opened close-on-exec.
    #[test]
    fn the_temporary_file_is_close_on_exec() {
        use rustix::io::{FdFlags, fcntl_getfd};
        let dest = tempfile::tempdir().unwrap();
        let (f, tmp) = create_tmp(dest.path()).unwrap();
        assert!(fcntl_getfd(&f).unwrap().contains(FdFlags::CLOEXEC));
        drop(f);
        fs::remove_file(tmp).unwrap();
    }

    #[test]
    fn a_short_copy_is_an_error_and_removes_the_temporary_file() {
        // /proc files report size 0 but read as more: a length check that
        // trusted the read would pass, ours compares with the metadata.
        let dest = tempfile::tempdir().unwrap();
        let Ok(_) = File::open("/proc/self/stat") else {
            return;
        };
        let err = format!(
            "{:#}",
            install(Path::new("/proc/self/stat"), dest.path()).unwrap_err()
        );
        assert!(
            err.contains("copied") && err.contains("of 0 bytes"),
            "{err}"
        );
        assert!(names(dest.path()).is_empty());
    }
}
