"""A PostgreSQL server of a test's own (initdb + pg_ctl in a temp directory, on a free port).

The tests that stop the database use it, so stopping it disturbs no one else. Tests run as root
here and in CI; initdb refuses root, so the server runs as the ``postgres`` OS user when we are
root. ``available()`` says why it cannot run (the binaries are absent), for a clear skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port

BIN_DIRS = [Path(p) for p in os.environ.get("GATEWAY_PG_BIN", "").split(":") if p] + \
    sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _bin() -> Path | None:
    for d in BIN_DIRS:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


def available() -> str | None:
    """None when a server can be started, else the reason it cannot."""
    if _bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    return None


class PgServer:
    def __init__(self) -> None:
        b = _bin()
        assert b is not None, available()
        self.bin = b
        # Not under pytest's tmp_path: its parents are mode 0700 (root), where postgres cannot go.
        directory = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        directory.chmod(0o755)
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        directory.mkdir(parents=True, exist_ok=True)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")

    def _run(self, *cmd: str) -> None:
        argv = (["runuser", "-u", "postgres", "--"] if self._as_postgres else []) + list(cmd)
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.decode(errors='replace')[-500:]}")

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
