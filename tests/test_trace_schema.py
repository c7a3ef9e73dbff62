"""The trace's documented schema is the trace: every recorded event of the golden scenarios
(`tests/data/trace/golden.json`) validates against the OpenAPI's `TraceOut`, and what the types
forbid is refused. Validated with the validator Schemathesis checks responses with."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema_rs
import pytest

GOLDEN = Path(__file__).parent / "data" / "trace" / "golden.json"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    from api.app import create_app
    from rag.settings import Settings

    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


@pytest.fixture(scope="module")
def validator(openapi):
    root = {"$ref": "#/components/schemas/TraceOut", "components": openapi["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def _body(events: list[dict]) -> dict:
    """A trace as `GET /v1/questions/{id}/trace` answers it (`rag.store.ledger.get_trace`)."""
    return {"id": "q1", "question": "?", "collection": "c", "status": "answered", "budget": {}, "options": {},
            "models": {}, "calls": [], "events": events, "context": [], "settings": {}}


def test_the_trace_route_documents_its_body(openapi):
    op = openapi["paths"]["/v1/questions/{qid}/trace"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TraceOut"}


@pytest.mark.parametrize("name", sorted(json.loads(GOLDEN.read_text(encoding="utf-8"))))
def test_every_recorded_event_validates(name, validator):
    events = json.loads(GOLDEN.read_text(encoding="utf-8"))[name]["events"]
    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator.iter_errors(_body(events))]
    assert not errors, errors


@pytest.mark.parametrize("change", [
    {"type": "decision", "step": "rewrite", "verdict": "rewrote"},  # a verdict the step does not have
    {"type": "decision", "step": "guess"},  # a step that does not exist
    {"type": "retrieved"},  # a kind that does not exist
    {"type": "budget", "budget": "max_tokens"},  # not a budget
])
def test_what_the_types_forbid_is_refused(change, validator):
    events = json.loads(GOLDEN.read_text(encoding="utf-8"))["one_call"]["events"]
    kind = change["type"]
    bad = copy.deepcopy(next((e for e in events if e["type"] == kind), events[4]))
    bad.update(change)
    assert not validator.is_valid(_body([bad]))


def test_an_omitted_optional_key_is_valid_and_a_missing_required_one_is_not(validator):
    events = json.loads(GOLDEN.read_text(encoding="utf-8"))["one_call"]["events"]
    cands = next(e for e in events if e["type"] == "candidates")
    assert "lexical_skipped" not in cands and validator.is_valid(_body([cands]))
    assert not validator.is_valid(_body([{k: v for k, v in cands.items() if k != "fused"}]))


def test_every_discriminator_maps_to_a_named_schema(openapi):
    """OpenAPI's `discriminator.mapping` names schemas; ReDoc fails on an inline one (the decisions'
    union nested in the events' is given its own component)."""
    def mappings(node):
        if isinstance(node, dict):
            yield from node.get("discriminator", {}).get("mapping", {}).values()
            for value in node.values():
                yield from mappings(value)
        elif isinstance(node, list):
            for value in node:
                yield from mappings(value)

    targets = list(mappings(openapi))
    assert "#/components/schemas/DecisionEvent" in targets
    assert all(isinstance(t, str) and t.removeprefix("#/components/schemas/") in openapi["components"]["schemas"]
               for t in targets), targets
