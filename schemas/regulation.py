"""Privacy regulations (`POST /v1/regulations`): the request, and the state a regulation goes through.

A regulation names people by identifiers; what it does to them is its type: ``delete`` erases what the stores
hold, ``suppress`` drops their future events at the collector, ``suppress_with_delete`` does both and
``unsuppress`` lets events in again. Its state (the audit trail) names the people only by keyed hashes
(identity/subject_hash.py), never by a value, so the trail itself holds no personal data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_SUBJECTS",
    "RegulationRequest",
    "RegulationType",
    "Stage",
    "StageStatus",
    "Subject",
    "new_state",
    "stages_of",
]

MAX_SUBJECTS = 5000  # as Segment's regulations API: a larger erasure is several requests


class RegulationType(StrEnum):
    DELETE = "delete"
    SUPPRESS = "suppress"
    SUPPRESS_WITH_DELETE = "suppress_with_delete"
    UNSUPPRESS = "unsuppress"

    @property
    def erases(self) -> bool:
        return self in (RegulationType.DELETE, RegulationType.SUPPRESS_WITH_DELETE)

    @property
    def suppresses(self) -> bool:
        return self in (RegulationType.SUPPRESS, RegulationType.SUPPRESS_WITH_DELETE)


class Subject(BaseModel):
    """One identifier of the person; the regulation reaches the whole identity cluster it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_type: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=1024)


class RegulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: RegulationType
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)
    dry_run: bool = False


class Stage(StrEnum):
    """The stages of a regulation, in the order they run."""

    CLUSTER = "cluster"  # the subjects' identity clusters, read from ClickHouse (identities, merges)
    LEDGER = "ledger"  # the cluster's identifiers written to the privacy ledger (suppression, erasure mark)
    TOPICS = "topics"  # tombstones in the compacted topics that name the person (identities, audience changes)
    CLICKHOUSE = "clickhouse"  # the rows erased from every table of the database
    IDENTITY = "identity"  # the stitch workers' node states deleted, each a tombstone in the changelog
    RESIDUAL = "residual"  # the same predicates counted again: 0 everywhere, or the regulation failed


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process stopped before the stage ended: submit the regulation again


def stages_of(kind: RegulationType) -> list[Stage]:
    if kind.erases:
        return [Stage.CLUSTER, Stage.LEDGER, Stage.TOPICS, Stage.CLICKHOUSE, Stage.IDENTITY, Stage.RESIDUAL]
    return [Stage.CLUSTER, Stage.LEDGER]


def new_state(
    regulation_id: str,
    kind: RegulationType,
    subject_hashes: list[str],
    requested_by: str,
    now_ms: int,
    token_id: str = "",
    owner: str = "",
) -> dict[str, Any]:
    """The state of a regulation just accepted: what the regulations topic keeps and GET answers. Who asked is the
    role of the token (``requested_by``) and ``token_id``, a keyed hash of the token itself: it tells tokens apart
    (one rotated since) without being one. ``owner`` names the process that runs it (sinks/regulations.py), so a
    process restarted after a crash can tell the regulations it left unfinished."""
    return {
        "id": regulation_id,
        "type": kind.value,
        "status": StageStatus.PENDING.value,
        "subjects": subject_hashes,
        "requested_by": requested_by,
        "token_id": token_id,
        "owner": owner,
        "requested_at_ms": now_ms,
        "finished_at_ms": None,
        "stages": {s.value: {"status": StageStatus.PENDING.value} for s in stages_of(kind)},
        "counts": {},
        "residual": {},
        "error": None,
    }
