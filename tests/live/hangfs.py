"""A FUSE filesystem that hangs, as a hung NFS or FUSE mount does: every
`open` (HANG=open) or every `write` (HANG=write) of a file in it blocks
until the filesystem is unmounted. For tests/promises.rs: a log file there
must never hold a hook past its deadline.

Usage: python3 hangfs.py MOUNTPOINT open|write   (runs in the foreground)
"""
import errno
import stat
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations  # python3-fusepy

FOREVER = threading.Event()


class Hang(Operations):
    def __init__(self, what):
        self.what = what

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o777, "st_nlink": 2}
        return {"st_mode": stat.S_IFREG | 0o666, "st_nlink": 1, "st_size": 0}

    def readdir(self, path, fh):
        return [".", ".."]

    def _open(self):
        if self.what == "open":
            FOREVER.wait()
            raise FuseOSError(errno.EIO)
        return 0

    def open(self, path, flags):
        return self._open()

    def create(self, path, mode, fi=None):
        return self._open()

    def truncate(self, path, length, fh=None):
        return 0

    def write(self, path, data, offset, fh):
        FOREVER.wait()
        raise FuseOSError(errno.EIO)


if __name__ == "__main__":
    FUSE(Hang(sys.argv[2]), sys.argv[1], foreground=True, nothreads=False)
