"""How the command-line tools (`cdp sql`, `cdp sources`, `cdp import`) find the stack running on this machine, and
how they fail when it is not there.

`cdp run` writes a small run file into its data folder (``run.json``: its pid, broker, HTTP address and topic
prefix) and removes it when it stops. A command started in the same folder (the repository, after `make run`)
reads it, so a broker on another port (``make run KAFKA_PORT=19092``) needs no exported variable. What the
environment sets wins; a run file whose process is gone is ignored.

Without a reachable broker, the Kafka clients retry for their whole timeout and then raise; the commands ask
first, for a few seconds, and stop with one line that says what to check.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.settings import Settings

RUN_FILE = "run.json"
# The settings a run file may supply, when the environment does not set them.
FOUND = ("kafka_bootstrap", "http_host", "http_port", "topic_prefix")
PROBE_S = 5.0


def run_file(settings: Settings) -> Path:
    return settings.data_dir / RUN_FILE


def write_run_file(settings: Settings) -> None:
    """Called by `cdp run` once it serves: where a command finds it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    found = {name: getattr(settings, name) for name in FOUND}
    run_file(settings).write_bytes(orjson.dumps({"pid": os.getpid(), **found}))


def remove_run_file(settings: Settings) -> None:
    """Called by `cdp run` when it stops; only its own file (another may have started since)."""
    path = run_file(settings)
    with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError):
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def local_settings() -> Settings:
    """The settings of a command: the environment's, completed from the run file of a running local stack."""
    settings = Settings()
    try:
        found = orjson.loads(run_file(settings).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return settings
    if not isinstance(found, dict) or not _alive(found.get("pid")):
        return settings
    updates = {name: found[name] for name in FOUND if name in found and name not in settings.model_fields_set}
    return settings.model_copy(update=updates) if updates else settings


def require_kafka(settings: Settings, command: str) -> None:
    """SystemExit with one line when no broker answers at ``settings.kafka_bootstrap`` within a few seconds."""
    # log_level 0: librdkafka's own connection-refused lines would bury the one line that says what to do.
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=PROBE_S)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise SystemExit(
            f"{command}: Kafka at {settings.kafka_bootstrap} is not reachable ({reason}); is `make run` running? "
            "Else set CDP_KAFKA_BOOTSTRAP"
        ) from None
