"""The OpenAPI tells the truth: Schemathesis generates requests from the live app's `/openapi.json`
(valid and invalid ones for every operation, boundary values, undeclared methods, requests without or
with a wrong key, and stateful sequences that follow what one answer returns into the next request)
and runs all its checks on every answer: no 5xx, documented status codes, content types and
headers, response bodies that match their schema (errors included), valid data accepted, invalid
data refused, auth enforced.

The app runs in-process (Schemathesis's ASGI transport, Host 127.0.0.1 for the Host allow-list)
with the admin key and the small models, the generator loaded so questions answer 200 as they would
in production. Deterministic (`generation.deterministic`: a fixed seed per operation) and bounded
(`MAX_EXAMPLES` per operation in the fuzzing phase; the other phases are finite), so the file runs
in CI in about two minutes on two cores.
"""

from __future__ import annotations

import collections
import time

import pytest
import schemathesis

from tests.test_ask_e2e import DATA, en_settings

ADMIN_KEY = "rag_openapi_test_admin_key_0123456789"
MAX_EXAMPLES = 100
UPLOAD = "POST /v1/collections/{name}/documents"
CHAT = "POST /v1/chat/completions"
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # Schemathesis's own for valid data


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, models_dir, small_generator_dir):
    from api.app import create_app
    from schemathesis.python import asgi

    # Small budgets keep each generated question to a model call or two; rates high enough that the
    # generated traffic itself is not limited (429 is documented, but would hide everything else).
    settings = en_settings(tmp_path_factory.mktemp("openapi") / "state", models_dir, admin_key=ADMIN_KEY,
                           requests_per_minute=1_000_000, model_calls_per_minute=1_000_000, questions_in_flight=8,
                           max_model_calls=2, max_rounds=1, max_answer_tokens=8, timeout_s=20.0)
    app = create_app(settings)
    yield app
    asgi.shutdown_lifespans()  # the lifespan Schemathesis started: the runtime closes


def _config():

    return schemathesis.Config.from_dict({
        "base-url": "http://127.0.0.1",  # api.security.Guards answers only allowed hosts
        "headers": {"Authorization": f"Bearer {ADMIN_KEY}"},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
        "continue-on-failure": True,
        "checks": {"enabled": True},
        "operations": [{
            # A file's type and content (a PDF header, text that decodes, a name with a supported
            # extension) cannot be written in JSON Schema: a schema-valid upload of random bytes is
            # refused with its documented 415/422/400. Every other check runs on uploads as on the rest.
            "include-name": UPLOAD,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "415", "422"]}},
        }, {
            # Nor can "the last user/assistant message is the user's, with text" (OpenAI's schema, which
            # this body follows, does not say it either): such a body is refused with its documented
            # 400 `invalid_messages` or 422 `empty_question`.
            "include-name": CHAT,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "422"]}},
        }],
    })


def _run(schema) -> tuple[int, collections.Counter, dict, set[str]]:
    """Runs every phase; returns the cases sent, failures by (operation, check, title), one example of
    each, and the operations tested."""
    from schemathesis.engine import events, from_schema

    cases, failures, examples, operations = 0, collections.Counter(), {}, set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            cases += len(recorder.cases)
            if recorder.label.split(" ", 1)[0] in {"GET", "POST", "DELETE"}:
                operations.add(recorder.label)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    key = (recorder.label, check.name, check.failure_info.failure.title)
                    failures[key] += 1
                    if key not in examples:
                        interaction = recorder.interactions.get(case_id)
                        response = interaction.response if interaction else None
                        examples[key] = (f"{check.failure_info.failure.message}\n"
                                         f"{check.failure_info.code_sample}\n"
                                         f"-> {response.status_code if response else None} "
                                         f"{(response.content[:300] if response else b'')!r}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            value = getattr(event, "value", None) or getattr(event, "exception", None)
            failures[(getattr(event, "label", "run"), "error", type(value).__name__)] += 1
            examples.setdefault((getattr(event, "label", "run"), "error", type(value).__name__), repr(value)[:2000])
    return cases, failures, examples, operations


def _seed(app) -> None:
    """Two documents in `default` (ids 1 and 2, chunks from 1), so generated ids find real documents,
    chunks, search hits and answers with citations, and their 200 bodies are checked too."""
    from schemathesis.python import asgi

    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with asgi.get_client(app) as client:  # the lifespan Schemathesis started (one runtime per app)
        files = [("files", (name, (DATA / name).read_bytes())) for name in ("parking.txt", "warranty.txt")]
        r = client.post("http://127.0.0.1/v1/collections/default/documents", files=files, headers=auth)
        assert r.status_code == 202, r.text
        for job in r.json()["jobs"]:
            deadline = time.monotonic() + 120
            while (status := client.get(f"http://127.0.0.1/v1/jobs/{job['id']}", headers=auth).json()["status"]) \
                    in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            assert status == "done", status


def test_every_operation_conforms_to_the_openapi(live_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", live_app, config=_config(), headers={"Host": "127.0.0.1"})
    _seed(live_app)
    declared = {f"{m.upper()} {p}" for p, item in schema.raw_schema["paths"].items() for m in item}
    t0 = time.monotonic()
    cases, failures, examples, operations = _run(schema)
    took = time.monotonic() - t0
    report = "\n\n".join(f"{n} x {k}:\n{examples[k]}" for k, n in sorted(failures.items()))
    assert not failures, f"{sum(failures.values())} failures in {cases} cases ({took:.0f} s):\n\n{report}"
    assert operations == declared, f"operations not tested: {sorted(declared - operations)}"
    assert cases > 20 * len(declared), cases  # it did generate (and the coverage phase ran)
    print(f"schemathesis: {cases} cases over {len(operations)} operations in {took:.0f} s, no failure")
