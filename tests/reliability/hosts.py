"""Several hosts on one machine: network namespaces, veth pairs and two bridges (iproute2, root only).

    root namespace ── the test, the Telegram simulator (10.N.2.1) and the test's own SQL (10.N.1.1)
    bridge "db"   10.N.1.0/24: pg (.2)   webhook (.3)   worker hosts w1 (.11), w2 (.12)
    bridge "net"  10.N.2.0/24:           webhook (.3)   worker hosts w1 (.11), w2 (.12)

PostgreSQL is reachable only over the db network, Telegram only over the other one, so a partition can
cut a worker host off the database alone (`cut(host, "db")`: its Telegram traffic still flows, the
realistic failure of a split between a database subnet and the rest) or entirely (`cut(host)`). A cut
sets the bridge side of the host's veth down: the host's packets vanish without an error (neighbour
entries are pinned, so not even address resolution fails), as behind a failed link between routers:
only TCP timeouts (TGMS_DB_TCP_TIMEOUT_SECONDS) tell the worker. `heal` undoes it.

PostgreSQL runs in its own namespace from the pgserver package's binaries, as the unprivileged
`pgserver` user; `stop()` and `start()` restart it on the same address.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from tests.support import http_ok, poll_until
from tests.workers.harness import ALLOWED_UPDATES, REPO, WEBHOOK_SECRET, Stack
from tgms_tui.backend.db import migrate

NETWORKS = ("db", "net")


def unavailable() -> str | None:
    """Why this machine cannot build the namespaces (None when it can): the skip reason."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2 (the `ip` command) is not installed"
    probe = f"tgms-probe-{secrets.token_hex(3)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"`ip netns add` failed: {done.stderr.strip()[:200]}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    try:
        import pgserver  # noqa: F401  (its PostgreSQL binaries run the database host)
    except ImportError:
        return "the pgserver package (PostgreSQL binaries) is not installed"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    """The namespaces of one scenario: `Hosts(["pg", "web", "w1", "w2"])`; removed on exit."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = secrets.token_hex(2)
        octet = 100 + secrets.randbelow(150)
        self.subnet = {"db": f"10.{octet}.1", "net": f"10.{octet}.2"}
        self.names = list(names)
        workers = [name for name in names if name not in ("pg", "web")]
        self.suffix = {"pg": 2, "web": 3, **{name: 11 + k for k, name in enumerate(workers)}}
        self._bridges = {net: f"tg{net}{self.tag}" for net in NETWORKS}
        self._links: dict[tuple[str, str], str] = {}

    def ns(self, host: str) -> str:
        return f"tgms-{self.tag}-{host}"

    def address(self, host: str, net: str = "db") -> str:
        """`host`'s address on `net`; "root" is the test's own namespace."""
        return f"{self.subnet[net]}.{1 if host == 'root' else self.suffix[host]}"

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def __enter__(self) -> Hosts:
        try:
            for net, bridge in self._bridges.items():
                _ip("link", "add", bridge, "type", "bridge")
                _ip("addr", "add", f"{self.address('root', net)}/24", "dev", bridge)
                _ip("link", "set", bridge, "up")
            for i, host in enumerate(self.names):
                ns = self.ns(host)
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                for net in NETWORKS if host != "pg" else ("db",):
                    outer, inner = f"v{self.tag}{i}{net[0]}", f"v{self.tag}{i}{net[0]}i"
                    _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                    _ip("link", "set", inner, "netns", ns)
                    _ip("-n", ns, "link", "set", inner, "name", f"eth-{net}")
                    _ip("-n", ns, "addr", "add", f"{self.address(host, net)}/24", "dev", f"eth-{net}")
                    _ip("-n", ns, "link", "set", f"eth-{net}", "up")
                    _ip("link", "set", outer, "master", self._bridges[net])
                    _ip("link", "set", outer, "up")
                    self._links[(host, net)] = outer
            self._pin_neighbours()
        except BaseException:
            self.close()
            raise
        return self

    def _mac(self, host: str, net: str) -> str:
        cmd = ["ip", "-j", "link", "show", "dev", self._bridges[net]] if host == "root" else [
            "ip", "-n", self.ns(host), "-j", "link", "show", "dev", f"eth-{net}"]  # fmt: skip
        return str(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[0]["address"])

    def _pin_neighbours(self) -> None:
        """Permanent ARP entries everywhere: across a cut, address resolution cannot fail either, so
        packets vanish and nothing answers "no route to host" (as behind a router, where the failure is
        further away). Only TCP's own timeouts can notice."""
        for net in NETWORKS:
            members = ["root", *(h for h in self.names if (h, net) in self._links)]
            macs = {m: self._mac(m, net) for m in members}
            for host in members:
                for peer in members:
                    if peer == host:
                        continue
                    where = ["-n", self.ns(host)] if host != "root" else []
                    dev = self._bridges[net] if host == "root" else f"eth-{net}"
                    _ip(*where, "neigh", "replace", self.address(peer, net), "lladdr", macs[peer], "dev", dev,
                        "nud", "permanent")  # fmt: skip

    def cut(self, host: str, net: str | None = None) -> None:
        """Drop every packet between `host` and the `net` network (both networks when None)."""
        for n in NETWORKS if net is None else (net,):
            if (host, n) in self._links:
                _ip("link", "set", self._links[(host, n)], "down")

    def heal(self, host: str) -> None:
        for n in NETWORKS:
            if (host, n) in self._links:
                _ip("link", "set", self._links[(host, n)], "up")

    def close(self) -> None:
        for host in self.names:
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True)
        for outer in self._links.values():  # gone with their namespace's peer; this is a net
            subprocess.run(["ip", "link", "del", outer], capture_output=True)
        for bridge in self._bridges.values():
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NamespacedPostgres:
    """A PostgreSQL cluster listening on `hosts.address("pg")`:5432 inside the "pg" namespace.

    Server-side TCP keepalives are on (10 s idle, 3 probes 3 s apart, tcp_user_timeout 20 s): a client
    host that vanishes mid-transaction has its session ended and its locks released in ~20 s instead
    of the kernel's two hours. The README (Running on several hosts) asks the same of a production server.
    """

    SERVER_SETTINGS = (
        "tcp_keepalives_idle = 10",
        "tcp_keepalives_interval = 3",
        "tcp_keepalives_count = 3",
        "tcp_user_timeout = 20000",
        "max_connections = 200",
        "fsync = off",
    )

    def __init__(self, hosts: Hosts) -> None:
        import pgserver

        self.hosts = hosts
        self.bin = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
        self.dir = Path(tempfile.mkdtemp(prefix="tgms-nspg-", dir="/tmp"))
        self.pgdata = self.dir / "pgdata"
        self.url = f"postgresql://postgres@{hosts.address('pg')}:5432/postgres"

    def _as_pg(self, *args: str, netns: bool = False) -> None:
        prefix = self.hosts.exec_prefix("pg") if netns else []
        cmd = [*prefix, "runuser", "-u", "pgserver", "--", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-800:]}")

    def __enter__(self) -> NamespacedPostgres:
        shutil.chown(self.dir, "pgserver", "pgserver")
        self._as_pg(str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(self.SERVER_SETTINGS) + "\n")
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.hosts.subnet['db']}.0/24 trust\n")
        self.start()
        migrate(self.url)
        return self

    def start(self) -> None:
        options = f"-c listen_addresses={self.hosts.address('pg')} -p 5432 -k {self.dir}"
        self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60", "-l",
                    str(self.dir / "server.log"), "-o", options, "start", netns=True)  # fmt: skip
        poll_until(self._accepts, timeout=30, what="PostgreSQL in its namespace accepting connections")

    def stop(self, mode: str = "fast") -> None:
        self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", netns=True)

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


class HostedStack(Stack):
    """tests/workers/harness.Stack with each process on a host of `hosts`: the simulator listens on the
    root namespace's "net" address, the webhook on the "web" host, workers where the test says."""

    def __init__(self, db_url: str, workdir: Path, hosts: Hosts, **kw: Any) -> None:
        super().__init__(db_url, workdir, webhook=False, **kw)
        self.hosts = hosts
        self.sim.host = hosts.address("root", "net")
        self.host_of: dict[int, str] = {}  # pid -> host
        self._next_host = "root"

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self._counter += 1
        host = self._next_host
        log_path = self.workdir / f"{self._counter:02d}-{name}-{host}.log"
        handle = log_path.open("wb")
        cmd = [*self.hosts.exec_prefix(host), sys.executable, *args]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.procs.append((f"{name}@{host}", proc, log_path))
        self.host_of[proc.pid] = host
        return proc

    def start_webhook_on(self, host: str = "web", port: int = 8080) -> str:
        self._next_host = host
        address = self.hosts.address(host, "net")
        self._spawn("webhook", ["-m", "webhook_server", "--host", address, "--port", str(port)], self.env())
        url = f"http://{address}:{port}"
        self.wait_for(lambda: http_ok(f"{url}/healthz"), timeout=30, what="webhook server up")
        self.webhook_url = url
        for bot, path in ((self.main_bot_id, "/api/webhook"), (self.tgms_bot_id, "/api/webhook/tgms")):
            self.sim.state.set_webhook(bot, url + path, secret_token=WEBHOOK_SECRET, allowed_updates=ALLOWED_UPDATES)
        return url

    def start_worker_on(self, host: str, pool: str, **env: str) -> subprocess.Popen[bytes]:
        self._next_host = host
        return self.start_worker(pool, **env)

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        for _name, p, path in self.procs:
            if p is proc:
                return path.read_text(errors="replace")
        return ""
