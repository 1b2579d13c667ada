"""The regulation request and the stages each type runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.errors import from_validation_error
from schemas.regulation import MAX_SUBJECTS, RegulationRequest, RegulationType, Stage, new_state, stages_of


def locs(payload: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        RegulationRequest.model_validate(payload)
    return [e.loc for e in from_validation_error(caught.value)]


def test_errors_name_the_field() -> None:
    assert locs({"type": "erase", "subjects": [{"id_type": "email", "value": "a@b.c"}]}) == ["type"]
    assert locs({"type": "delete", "subjects": []}) == ["subjects"]
    assert locs({"type": "delete", "subjects": [{"id_type": "email"}]}) == ["subjects[0].value"]
    assert locs({"type": "delete", "subjects": [{"id_type": "email", "value": ""}]}) == ["subjects[0].value"]
    too_many = [{"id_type": "email", "value": f"{i}@b.c"} for i in range(MAX_SUBJECTS + 1)]
    assert locs({"type": "delete", "subjects": too_many}) == ["subjects"]
    assert locs({"type": "delete", "subjects": [{"id_type": "email", "value": "a"}], "dry": True}) == ["dry"]


def test_the_largest_request_is_accepted() -> None:
    subjects = [{"id_type": "email", "value": f"{i}@b.c"} for i in range(MAX_SUBJECTS)]
    assert len(RegulationRequest.model_validate({"type": "suppress", "subjects": subjects}).subjects) == MAX_SUBJECTS


def test_only_erasures_run_the_topics_clickhouse_identity_and_residual_stages() -> None:
    assert stages_of(RegulationType.SUPPRESS) == [Stage.CLUSTER, Stage.LEDGER]
    assert stages_of(RegulationType.UNSUPPRESS) == [Stage.CLUSTER, Stage.LEDGER]
    erasing = [Stage.TOPICS, Stage.CLICKHOUSE, Stage.IDENTITY, Stage.RESIDUAL]
    assert stages_of(RegulationType.SUPPRESS_WITH_DELETE)[-4:] == erasing
    state = new_state("reg_1", RegulationType.DELETE, ["h1"], "admin", 5)
    assert set(state["stages"]) == {"cluster", "ledger", "topics", "clickhouse", "identity", "residual"}
    assert {s["status"] for s in state["stages"].values()} == {"pending"}
