"""The real stack for `make bench`: a Kafka broker on free loopback ports, `cdp` processes, Kafka helpers and
peak-memory readings. Same ideas as tests/support (broker.sh on free ports, `cdp run` as a subprocess), kept
here so the bench never imports the test suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BROKER_SCRIPT = ROOT / "deploy" / "kafka" / "broker.sh"
CLUSTER_SCRIPT = ROOT / "deploy" / "kafka" / "cluster.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -------------------------------------------------------------------------------------------- memory


def _status_kib(pid: int, field_name: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process in MiB, None when it is gone or unreadable."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def rss_mb(pid: int | None) -> float | None:
    """Current resident set size (VmRSS) of a live process in MiB, None when it is gone or unreadable."""
    kib = None if pid is None else _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def rss_split_mb(pid: int | None) -> tuple[float, float] | None:
    """(anonymous, file-backed) resident memory of a live process in MiB: private heap and stacks apart from the
    pages of mapped files (shared libraries paged in as their code is first run), None when it is gone."""
    anon = None if pid is None else _status_kib(pid, "RssAnon")
    file = None if pid is None else _status_kib(pid, "RssFile")
    return None if anon is None or file is None else (anon / 1024, file / 1024)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a live process has used so far, in seconds (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0, `echo 5 > /proc/PID/clear_refs`), so a peak
    read later belongs to the stage being measured. False when not permitted (then the peak is lifelong)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakWatch:
    """Peak RSS of labelled processes during one stage: reset at :meth:`add`, read with :meth:`read`.

    A process that exits keeps the last value read, so call :meth:`sample` (or :meth:`read`) before stopping it.
    """

    def __init__(self, pids: Mapping[str, int | None] | None = None) -> None:
        self._pids: dict[str, int] = {}
        self._last: dict[str, float] = {}
        for label, pid in (pids or {}).items():
            if pid:
                self.add(label, pid)

    def add(self, label: str, pid: int | None) -> None:
        if not pid:
            return
        reset_peak_rss(pid)
        self._pids[label] = pid
        self.sample()

    def record(self, label: str, mb: float | None) -> None:
        """A peak reported by the process itself (load processes send their `self_peak_rss_mb()`)."""
        if mb is not None:
            self._last[label] = max(mb, self._last.get(label, 0.0))

    def sample(self) -> None:
        for label, pid in self._pids.items():
            value = peak_rss_mb(pid)
            if value is not None:
                self._last[label] = max(value, self._last.get(label, 0.0))

    def read(self) -> dict[str, float]:
        self.sample()
        return {label: round(v, 1) for label, v in self._last.items()}


def self_peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM, which belongs to this program alone. (ru_maxrss would not do:
    Linux carries it across fork+exec, so a spawned child would report its parent's size at fork time.)"""
    value = peak_rss_mb(os.getpid())
    if value is not None:
        return value
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------------------------------------- broker


class Broker:
    """A single-node KRaft broker started by deploy/kafka/broker.sh on free ports, in its own data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.controller_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> Broker:
        subprocess.run(
            [str(BROKER_SCRIPT), "start", str(self.data_dir), str(self.port), str(self.controller_port)],
            check=True,
            timeout=180,
            stdout=subprocess.DEVNULL,
        )
        return self

    def stop(self) -> None:
        subprocess.run([str(BROKER_SCRIPT), "stop", str(self.data_dir)], check=False, timeout=60)

    def kill(self) -> None:
        """SIGKILL: a crash (nothing flushed, no controlled shutdown)."""
        subprocess.run([str(BROKER_SCRIPT), "kill", str(self.data_dir)], check=True, timeout=30)


class Cluster:
    """The 3-node KRaft cluster of deploy/kafka/cluster.sh on free ports, in its own data folder (node N in
    ``data_dir/nodeN``): replication 3, min.insync.replicas 2."""

    NODES = (1, 2, 3)

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = [free_port() for _ in self.NODES]
        self.controller_ports = [free_port() for _ in self.NODES]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def pid(self, node: int) -> int | None:
        try:
            return int((self.data_dir / f"node{node}" / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, *args: str, timeout: float = 240) -> None:
        subprocess.run(
            [str(CLUSTER_SCRIPT), args[0], str(self.data_dir), *args[1:]],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> Cluster:
        ports = ",".join(map(str, self.ports))
        controllers = ",".join(map(str, self.controller_ports))
        try:
            self._script("start", ports, controllers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        subprocess.run([str(CLUSTER_SCRIPT), "stop", str(self.data_dir)], check=False, timeout=120)

    def kill(self, node: int) -> None:
        """SIGKILL node ``node`` (1-3): a crash."""
        self._script("kill", str(node), timeout=30)

    def restart(self, node: int) -> None:
        """Start node ``node`` again on its data and ports; returns once it has started."""
        self._script("restart", str(node))

    def under_replicated(self, topic_prefix: str = "", timeout: float = 10.0) -> list[str]:
        """Partitions (``topic[p]``) whose in-sync replicas are fewer than their replicas, among the topics
        starting with ``topic_prefix``: empty once a restarted node has caught up."""
        from confluent_kafka.admin import AdminClient

        metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=timeout)
        return [
            f"{name}[{p}]"
            for name, meta in metadata.topics.items()
            if name.startswith(topic_prefix)
            for p, part in meta.partitions.items()
            if len(part.isrs) < len(part.replicas) or part.leader < 0
        ]

    def wait_in_sync(self, topic_prefix: str = "", timeout: float = 120.0) -> float:
        """Seconds until every replica of the matching topics is in sync again."""
        started = time.monotonic()
        lagging: list[str] = []
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):
                lagging = self.under_replicated(topic_prefix)
                if not lagging:
                    return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError(f"replicas still out of sync after {timeout:.0f} s: {lagging[:8]}")


# ------------------------------------------------------------------------------- postgres and connect

CONNECT_SCRIPT = ROOT / "deploy" / "connect" / "connect.sh"


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed: run make postgres")
    return found[-1].parent


class Postgres:
    """A PostgreSQL server of its own (Debian's binaries; initdb and pg_ctl in a folder of its own) on a free
    loopback port, with ``wal_level=logical`` for change data capture. The server refuses to run as root, so
    as root it runs as the ``postgres`` user, in a folder that user owns."""

    def __init__(self, parent: Path | None = None) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cdp-pg-", dir=parent))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self._as, *args], check=True, timeout=timeout, capture_output=True)

    def start(self) -> Postgres:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c wal_level=logical "
            "-c max_replication_slots=20 -c max_wal_senders=20 -c fsync=off -c synchronous_commit=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        subprocess.run(
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            check=False,
            timeout=60,
            capture_output=True,
        )

    def sql(self, statements: str, timeout: float = 600) -> str:
        """Run SQL with psql (stops at the first error); returns what it printed (unaligned, tuples only)."""
        proc = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ],
            input=statements,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()


class Connect:
    """Kafka Connect (deploy/connect/connect.sh) on a free loopback port, against a broker."""

    def __init__(self, data_dir: Path, bootstrap: str, topic_prefix: str = "cdp") -> None:
        self.data_dir = data_dir
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "connect.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> Connect:
        subprocess.run(
            [str(CONNECT_SCRIPT), "start", str(self.data_dir), str(self.port), self.bootstrap, self.topic_prefix],
            check=True,
            timeout=180,
            stdout=subprocess.DEVNULL,
        )
        return self

    def stop(self) -> None:
        subprocess.run([str(CONNECT_SCRIPT), "stop", str(self.data_dir)], check=False, timeout=60)

    def kill(self) -> None:
        """SIGKILL, as a crash: what the worker had not committed is read again after the next start."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        (self.data_dir / "connect.pid").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- cdp


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a cdp child: the caller's, minus every CDP_* variable (so a developer's own settings
    never leak into the bench), plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(overrides)
    return env


class CdpProcess:
    """`cdp run|collector|worker` as a subprocess with its own data folder, topic prefix and HTTP port."""

    def __init__(self, bootstrap: str, data_dir: Path, topic_prefix: str, parts: str = "run", **env: str) -> None:
        self.port = int(env["CDP_HTTP_PORT"]) if "CDP_HTTP_PORT" in env else free_port()
        self.data_dir = data_dir
        self.parts = parts
        self.topic_prefix = topic_prefix
        self.bootstrap = bootstrap
        defaults = {
            "CDP_KAFKA_BOOTSTRAP": bootstrap,
            "CDP_DATA_DIR": str(data_dir),
            "CDP_TOPIC_PREFIX": topic_prefix,
            "CDP_HTTP_PORT": str(self.port),
            "CDP_LOG_LEVEL": "WARNING",
        }
        self.env = child_env(**{**defaults, **env})
        self.proc: subprocess.Popen[bytes] | None = None
        # One log per process: several processes may share a data folder (a stitch-only worker beside `cdp run`).
        self.log_path = data_dir.parent / f"{data_dir.name}-{parts}-{self.port}.log"
        self.write_keys: dict[str, str] = {}
        self.admin_token = ""
        self.read_token = ""
        self.analyst_token = ""
        self._log: Any = None
        self._log_from = 0  # where this launch's output starts in the log (a relaunch appends to it)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 120.0) -> CdpProcess:
        return self.launch().wait_started(timeout)

    def launch(self) -> CdpProcess:
        """Start the process without waiting for it (several processes then start side by side)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_from = self._log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdp.cli", self.parts],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_started(self, timeout: float = 120.0) -> CdpProcess:
        """Wait for the banner (`cdp is running ...`) and read write keys and tokens from it."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cdp {self.parts} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if "cdp is running" in (out := self.launch_output()) and "admin token" in out.split("cdp is running")[-1]:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"cdp {self.parts} did not start in {timeout:.0f} s:\n{self.output()[-3000:]}")
        banner = self.launch_output().split("cdp is running")[-1]
        self.write_keys = dict(re.findall(r"write key (\w+)\s*: (\S+)", banner))
        if m := re.search(r"admin token\s*: (\S+)", banner):
            self.admin_token = m.group(1)
        if m := re.search(r"read token\s*: (\S+)", banner):
            self.read_token = m.group(1)
        if m := re.search(r"analyst token\s*: (\S+)", banner):
            self.analyst_token = m.group(1)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /readyz answered 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"cdp {self.parts} not ready in {timeout:.0f} s")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def privacy_key(self) -> str:
        """The key the process generated into its data folder (empty before it first started)."""
        path = self.data_dir / "privacy_key"
        return path.read_text().strip() if path.exists() else ""

    def launch_output(self) -> str:
        """What the latest launch has written."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as fh:
            fh.seek(self._log_from)
            return fh.read().decode(errors="replace")

    def relaunch(self, timeout: float = 120.0) -> CdpProcess:
        """Start the process again after it stopped (or was killed), on the same port, data folder and settings,
        and wait for its banner."""
        assert self.proc is not None and self.proc.poll() is not None, "stop (or kill) it first"
        self.stop()
        return self.launch().wait_started(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int | None:
        """Signal the process (SIGTERM: clean shutdown; SIGKILL: a crash) and return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode


class CdpClient:
    """What the stages need from a running `cdp run` (started here, or given by --url): URL, admin SQL,
    write keys per channel, the broker and topic prefix behind it, and its pid for memory readings."""

    def __init__(
        self,
        url: str,
        admin_token: str,
        write_keys: Mapping[str, str],
        bootstrap: str,
        topic_prefix: str,
        pid: int | None = None,
        privacy_key: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self.write_keys = dict(write_keys)
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.pid = pid
        self.privacy_key = privacy_key  # for commands run beside it (`cdp import`): they must hash as it does
        self._http = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {admin_token}"})

    def sql(self, query: str) -> list[list[Any]]:
        r = self._http.post(f"{self.url}/v1/sql", json={"query": query})
        if r.status_code != 200:
            raise RuntimeError(f"/v1/sql {r.status_code}: {r.text[:500]}")
        rows: list[list[Any]] = r.json()["rows"]
        return rows

    def scalar(self, query: str) -> Any:
        rows = self.sql(query)
        return rows[0][0] if rows else None

    def close(self) -> None:
        self._http.close()


def source_write_keys(bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """First write key per channel from the sources topic of a running deployment (for --url)."""
    from streams.sources import SourceRegistry

    registry = SourceRegistry(bootstrap, f"{topic_prefix}.sources").start()
    try:
        keys: dict[str, str] = {}
        for source in registry.all():
            if source.kind == "sdk":
                keys.setdefault(source.channel, source.write_key)
        return keys
    finally:
        registry.stop()


# --------------------------------------------------------------------------------------------- kafka


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 4, timeout: float = 30.0) -> None:
    """Create topics that do not exist yet (replication 1: the bench broker is single-node)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [NewTopic(n, partitions, 1) for n in names if n not in existing]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc


class OffsetCounter:
    """The sum of some topics' partitions' end offsets (high watermarks): grows whenever anything is written.

    Counts records exactly only for non-transactional producers (the collector's); on topics written in
    transactions (the stitcher's outputs) it also counts the transaction markers, so use it there only to see
    whether anything is still being written, and count records with :class:`RecordCounter`.
    """

    def __init__(self, bootstrap: str, topics: Iterable[str], timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-offsets-{os.getpid()}", "enable.auto.commit": False}
        )
        self._tps = []
        metadata = self._consumer.list_topics(timeout=timeout)
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                raise RuntimeError(f"topic {topic} does not exist")
            self._tps += [TopicPartition(topic, p) for p in sorted(meta.partitions)]

    def count(self, timeout: float = 5.0) -> int:
        total = 0
        for tp in self._tps:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            total += max(high, 0)
        return total

    def close(self) -> None:
        self._consumer.close()


class RecordCounter:
    """Committed records written to some topics since the counter was created, counted by reading them, as a
    downstream reader sees them (read_committed)."""

    def __init__(self, bootstrap: str, topics: Iterable[str], timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-records-{os.getpid()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        metadata = self._consumer.list_topics(timeout=timeout)
        start = []
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                raise RuntimeError(f"topic {topic} does not exist")
            for p in sorted(meta.partitions):
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                start.append(TopicPartition(topic, p, max(high, 0)))
        self._consumer.assign(start)
        self._count = 0

    def count(self) -> int:
        """Read what has arrived (without waiting for more) and return the total so far."""
        while True:
            batch = self._consumer.consume(num_messages=10_000, timeout=0)
            self._count += sum(1 for m in batch if m.error() is None)
            if not batch:
                return self._count

    def close(self) -> None:
        self._consumer.close()


class GroupLag:
    """How far a consumer group is behind on some topics: per partition the end offset minus the group's committed
    offset (the whole partition where it has committed nothing), summed. On topics written in transactions the
    end offset counts the commit markers too, so a group that is caught up shows a few records."""

    def __init__(self, bootstrap: str, group: str, topics: Iterable[str], timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        self.group = group
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-lag-{os.getpid()}"})
        metadata = self._consumer.list_topics(timeout=timeout)
        self._tps = [TopicPartition(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]

    def lag(self, timeout: float = 10.0) -> int:
        from confluent_kafka import ConsumerGroupTopicPartitions

        request = ConsumerGroupTopicPartitions(self.group, self._tps)
        committed = self._admin.list_consumer_group_offsets([request])[self.group].result(timeout)
        total = 0
        for tp in committed.topic_partitions:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            total += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return total

    def close(self) -> None:
        self._consumer.close()


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by those, recursively (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children.get(child, [])
    return out


def produce_all(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes] | tuple[str, bytes | None, bytes, list[Any]]],
    headers: list[tuple[str, str | bytes | None]] | None = None,
    **config: Any,
) -> int:
    """Produce (topic, key, value) records (each with ``headers``) or (topic, key, value, headers) records as fast
    as the client allows, wait for every acknowledgement, raise if any failed. Returns the count. acks=all, like the
    collector."""
    from confluent_kafka import Producer

    from streams.producer import producer_config

    producer = Producer(producer_config(bootstrap, **config))
    failed: list[Any] = []

    def cb(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    n = 0
    for record in records:
        topic, key, value = record[0], record[1], record[2]
        own = record[3] if len(record) == 4 else headers
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=own, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"pre-producing failed: {remaining} undelivered, {len(failed)} errors {failed[:3]}")
    return n


def consume_sample(bootstrap: str, topic: str, limit: int, timeout: float = 20.0) -> list[tuple[bytes | None, bytes]]:
    """Up to ``limit`` (key, value) records from the start of a topic."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-sample-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < limit and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=min(1000, limit - len(out)), timeout=0.5):
                value = m.value()
                if m.error() is None and value is not None:
                    out.append((m.key(), value))
    finally:
        consumer.close()
    return out


def consume_rate(
    bootstrap: str, topics: Iterable[str], count: int, timeout: float = 120.0, min_seconds: float = 2.0
) -> tuple[float, int]:
    """The raw consume baseline: one confluent-kafka consumer (partitions assigned, no group join) reads the
    ``count`` records of ``topics`` from the start, again and again until ``min_seconds`` have passed, so a
    small topic still gives a steady rate; each pass is timed from its first returned batch (the first fetch's
    round trip is latency, not throughput). Returns (records/s, records read in the first pass)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-consume-{time.time_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "fetch.wait.max.ms": 5,  # an emptied partition must not hold each pass for the default 500 ms
        }
    )
    metadata = consumer.list_topics(timeout=10)
    tps = [(t, p) for t in topics for p in metadata.topics[t].partitions]
    # Absolute start offsets: assigning OFFSET_BEGINNING would cost an offset lookup per partition and pass.
    lows = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[0] for tp in tps}
    counted = 0
    busy = 0.0
    first_pass = 0
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            consumer.assign([TopicPartition(t, p, max(lows[(t, p)], 0)) for t, p in tps])
            got = 0
            first_at: float | None = None
            while got < count and time.monotonic() < deadline:
                batch = consumer.consume(num_messages=500, timeout=0.2)
                n = sum(1 for m in batch if m.error() is None)
                if n and first_at is None:
                    first_at = time.perf_counter()  # the first fetch's round trip is latency, not throughput
                elif n:
                    counted += n
                got += n
            if first_at is not None:
                busy += time.perf_counter() - first_at
            first_pass = first_pass or got
            if got < count or time.perf_counter() - started >= min_seconds:
                break
    finally:
        consumer.close()
    return (counted / busy if busy > 0 else 0.0), first_pass


def warm_up_broker(bootstrap: str, timeout: float = 90.0) -> float:
    """Wait until a fresh broker serves what every stage needs: a topic with a leader, an idempotent producer
    (transaction coordinator) and a consumer group commit (group coordinator, `__consumer_offsets`). Without
    this the first stage would measure the broker's own start-up. Returns the seconds it took."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    started = time.monotonic()
    topic = "bench-warm-up"
    create_topics(bootstrap, [topic], partitions=1)
    produce_all(bootstrap, [(topic, b"k", b"warm-up")])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-warm-up", "enable.auto.commit": False})
    try:
        deadline = started + timeout
        while True:
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    return time.monotonic() - started


def prepare_cdp_topics(bootstrap: str, topic_prefix: str, timeout: float = 60.0, **durability: int) -> None:
    """Create a cdp deployment's topics (as `cdp` would, with its default partitions and durability, or the
    ``topic_replication`` / ``topic_min_insync`` given) and wait until every partition has a leader and answers
    offset requests, before any cdp process starts: a process that creates its topics and reads them at once can
    race the broker's leader election on a fresh topic."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from schemas.settings import Settings
    from streams.topics import ensure_topics

    defaults = {
        name: Settings.model_fields[name].default
        for name in ("topic_partitions", "topic_replication", "topic_min_insync")
    }
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, **{**defaults, **durability})
    ensure_topics(settings)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-leaders-{time.time_ns()}"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            metadata = consumer.list_topics(timeout=10)
            pending = [
                TopicPartition(name, p)
                for name, meta in metadata.topics.items()
                if name.startswith(f"{topic_prefix}.")
                for p, part in meta.partitions.items()
                if part.leader < 0 or part.error is not None
            ]
            if not pending:
                try:
                    for name, meta in metadata.topics.items():
                        if name.startswith(f"{topic_prefix}."):
                            for p in meta.partitions:
                                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)
                    return
                except KafkaException:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics of {topic_prefix} have no leader after {timeout:.0f} s: {pending[:5]}")
            time.sleep(0.2)
    finally:
        consumer.close()
