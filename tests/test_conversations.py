"""Conversations: the store on both backends (SQLite and Postgres), and the HTTP API with the small real models
(all-MiniLM-L6-v2 + SmolLM2-135M-Instruct, `tests/test_ask_e2e.py`'s settings): create, ask turns as
JSON and as Server-Sent Events, read back, list, delete; a follow-up that points back is condensed by
one recorded `condense` call (ledger, trace, usage), one that names its subject costs none; a turn
replays with its history; another tenant's conversation is the same 404 as a missing one."""

from __future__ import annotations

import pytest

from tests.server import local_client
from tests.test_ask_e2e import DATA, SHIPPING_Q, en_settings, events, wait_job
from tests.test_questions_api import parse_sse

FILES = ["parking.txt", "shipping.html", "brewmaster.md"]
FOLLOW_UP = "And how much does it cost?"  # "it": the shipping of the turn before


@pytest.mark.parametrize("text,found", [
    ("In which year was it created?", ["it"]), ("And ldaps?", ["and"]),
    ("What about the second one?", ["what about", "the second one"]),
    ("What is the maximum file size on that filesystem?", ["that filesystem"]),
    ("How many does the non-free-firmware area hold?", ["how many does"]),
    ("它的参数量呢？", ["它", "呢?"]), ("ftps 呢？", ["呢?"]), ("那 ftps-data 用哪個埠？", ["那"]),
    ("這些數據是哪一天下載的？", ["这些"]),
    # standalone questions: nothing points back
    ("Which port does imaps use?", []), ("Which program lets a remote shell process survive?", []),
    ("In which month was the first Debian release with systemd released?", []),
    ("Which package schedules commands on a system that is not running continuously?", []),
    ("pop3s 使用哪个端口？", []), ("應該用哪個命令？", []),
])
def test_back_pointing_words(text, found):
    from rag.text.followup import markers

    assert markers(text) == found



@pytest.mark.parametrize("text,previous,lang", [
    ("sensible-editor 呢？", "比 grep 更快的 rg 命令在哪個軟體包中？", "zh-Hant"),  # a name and a particle
    ("ldaps 呢？", "imaps 用哪个端口？", "zh-Hans"),
    ("And ldaps?", "Which port does imaps use?", "en"),
    ("And ldaps?", "imaps 用哪个端口？", "en"),  # no Chinese character: the user switched language
    ("它的参数量呢？", "Which model is it?", "zh-Hans"),
])
def test_a_follow_up_that_mixes_scripts_keeps_the_conversations_language(text, previous, lang):
    from rag.text.followup import follow_up_language

    assert follow_up_language(text, previous) == lang


@pytest.mark.parametrize("text,previous,standalone", [
    ("ftps 呢？", "pop3s 使用哪个端口？", "ftps 使用哪个端口？"),
    ("CMake 呢？", "构建系统 Meson 是哪一年首次发布的？", "CMake 是哪一年首次发布的？"),
    ("sensible-editor 呢？", "比 grep 更快、善用多核 CPU 的 rg 命令在哪個軟體包中？", "sensible-editor 命令在哪個軟體包中？"),
    ("不加密的 ldap 服務呢？", "ftps-data 使用哪個埠？", "不加密的 ldap 服務 使用哪個埠？"),
    # not an ellipsis about a name: left to the model
    ("所有非特權使用者的使用者目錄呢？", "系統日誌文件放在哪個目錄？", None),  # X names no Latin name
    ("它呢？", "pop3s 使用哪个端口？", None),  # X points back itself
    ("ftps 呢？", "Which port does imaps use?", None),  # no Chinese predicate to keep
    ("ftps 的端口号呢？多少", "pop3s 使用哪个端口？", None),  # not that shape
])
def test_a_chinese_ellipsis_takes_the_previous_questions_name_without_a_model(text, previous, standalone):
    from rag.text.followup import substitute_ellipsis

    assert substitute_ellipsis(text, previous) == standalone


@pytest.mark.parametrize("follow_up,condensed,why", [
    # measured failures of the 1.5B (`rag bench conversations`)
    ("這些數據是哪一天下載的？", "popcon數據涵蓋了多少份提交？", "it repeats an earlier question"),
    ("它的日志记录在哪个文件里？", "文档中没有提到。", "it drops what the follow-up asks"),
    ("它的日志记录在哪个文件里？", "Where is its log?", "in another language"),
    # usable: a paraphrase keeps one of the follow-up's terms, an English stem matches its word
    ("它一共包含多少份提交？", "popcon數據涵蓋了多少份提交？", None),
    ("In which year was it created?", "In which year was the Debian Project created?", None),
    ("And ldaps?", "Which port does ldaps use?", None),
])
def test_a_condensed_question_that_copies_or_drops_the_follow_up_is_unusable(follow_up, condensed, why):
    from rag.ask.condense import History, Turn, _unusable
    from rag.ask.terms import extract_key_terms
    from rag.text.lang import detect_language

    class Q:  # the fields `_unusable` reads
        text, lang = follow_up, detect_language(follow_up)
        key_terms = extract_key_terms(follow_up, lang)

    turns = (Turn("popcon 數據涵蓋了多少個架構？", "21 個。"),
             Turn("它一共包含多少份提交？", "約 20 萬份。", standalone="popcon數據涵蓋了多少份提交？"))
    history = History(turns if follow_up.startswith("這些") else turns[:1], 384)
    got = _unusable(condensed, Q, history)
    assert (got is None) if why is None else (got or "").startswith(why)


def test_history_keeps_the_newest_turns_within_its_budget_and_chat_reads_turns_without_sources():
    from rag.ask.condense import History, Turn, recent
    from rag.service.chat import ChatMessage, turns
    from tests.fakes import FakeLLM

    llm = FakeLLM()
    old, new = Turn("first question " * 20, "a long answer " * 40), Turn("Which port?", "Port 993.", "Which port does imaps use?")
    kept = recent(History((old, new), max_tokens=40), llm)
    assert kept.turns == (new,) and kept.tokens == llm.count_tokens(new.resolved) + llm.count_tokens(new.answer)
    assert kept.messages() == ({"role": "user", "content": "Which port does imaps use?"},
                               {"role": "assistant", "content": "Port 993."})
    assert recent(History((old, new), max_tokens=0), llm).turns == ()
    said = [ChatMessage("user", "Which port does imaps use?"),
            ChatMessage("assistant", "imaps uses port 993. [1]\n\nSources:\n[1] services.txt"),
            ChatMessage("user", "来源呢？"), ChatMessage("assistant", "端口993。[1]\n\n来源：\n[1] a.txt，第2页"),
            ChatMessage("user", "And ldaps?")]
    assert turns(said) == (Turn("Which port does imaps use?", "imaps uses port 993. [1]"), Turn("来源呢？", "端口993。[1]"),
                           Turn("And ldaps?", ""))


@pytest.fixture(scope="module")
def client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("conv") / "state", models_dir, max_answer_tokens=24)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as c:
        for name in ("conv", "other"):
            assert c.post("/v1/collections", json={"name": name}).status_code == 201
        r = c.post("/v1/collections/conv/documents",
                   files=[("files", (f, (DATA / f).read_bytes(), "application/octet-stream")) for f in FILES])
        assert r.status_code == 202, r.text
        assert all(wait_job(c, j["id"])["status"] == "done" for j in r.json()["jobs"])
        yield c


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_store_numbers_turns_keeps_history_and_cascades_on_both_backends(backend, request, tmp_path):
    """The conversation tables and the ledger's turns, the same on both engines: turns numbered in
    order, a turn index taken twice refused (the unique index `start_question` turns into a 409), the
    history of finished turns, delete keeping the questions, a deleted collection taking its
    conversations with it."""
    import sqlite3
    from contextlib import closing

    from rag import store
    from rag.errors import NotFound
    from rag.settings import Settings
    from rag.store import conversations as table, ledger

    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    with closing(store.open_configured(Settings(data_dir=tmp_path / "state", database_url=url))) as conn:
        store.create_collection(conn, "c")
        table.create_conversation(conn, "conv1", "c", "t")
        turns = [ledger.start_question(conn, f"q{i}", "c", f"question {i}", budget={}, options={}, models={},
                                       conversation="conv1") for i in range(3)]
        assert turns == [0, 1, 2]
        assert ledger.start_question(conn, "lone", "c", "alone", budget={}, options={}, models={}) is None
        for i, status in enumerate(["answered", "failed", "abstained"]):
            result = {"id": f"q{i}", "answer": f"answer {i}", "standalone_question": "standalone 0" if i == 0 else None}
            ledger.finish_question(conn, f"q{i}", status=status, result=result if status != "failed" else None,
                                   trace=None, seconds=0.1)
        # two turns racing for one index: the unique index refuses the second (start_question: 409)
        with pytest.raises(sqlite3.IntegrityError):
            with store.transaction(conn):
                conn.execute("UPDATE questions SET conversation_id = 'conv1', turn = 2 WHERE id = 'lone'")

        assert [(r["question"], r["answer"]) for r in table.history(conn, "conv1")] == [
            ("question 0", "answer 0"), ("question 2", "answer 2")]  # the failed turn is no history
        got = table.turns(conn, "conv1")
        assert [(t["turn"], t["status"]) for t in got] == [(0, "answered"), (1, "failed"), (2, "abstained")]
        assert got[0]["standalone_question"] == "standalone 0"
        assert [(c["id"], c["turns"]) for c in table.list_conversations(conn, "c")] == [("conv1", 3)]
        table.delete_conversation(conn, "conv1")
        with pytest.raises(NotFound):
            table.get_conversation(conn, "conv1")
        assert ledger.get_question(conn, "q0")["answer"] == "answer 0"

        store.create_collection(conn, "d")
        table.create_conversation(conn, "conv2", "d")
        store.delete_collection(conn, "d")
        with pytest.raises(NotFound) as err:
            table.collection_of(conn, "conv2")
        assert err.value.code == "conversation_not_found"


def condense_steps(client, qid: str) -> list[dict]:
    trace = client.get(f"/v1/questions/{qid}/trace").json()
    return [e for e in events(trace, "decision") if e["step"] == "condense"]


def test_a_conversation_from_creation_to_deletion(client):
    r = client.post("/v1/collections/conv/conversations", json={"title": "shipping"})
    assert r.status_code == 201, r.text
    conv = r.json()
    assert conv["collection"] == "conv" and conv["title"] == "shipping" and conv["turns"] == 0
    cid = conv["id"]

    first = client.post(f"/v1/conversations/{cid}/questions", json={"question": SHIPPING_Q})
    assert first.status_code == 200, first.text
    first = first.json()
    assert first["conversation_id"] == cid and first["turn"] == 0 and first["standalone_question"] is None
    assert "condense" not in first["usage"]["by_purpose"] and condense_steps(client, first["id"]) == []

    # the follow-up, streamed: its condense decision is a step, its answer the same object as JSON
    with client.stream("POST", f"/v1/conversations/{cid}/questions",
                       json={"question": FOLLOW_UP, "stream": True}) as resp:
        assert resp.status_code == 200
        sse = parse_sse(resp.iter_lines())
    steps = [d for e, d in sse if e == "step"]
    (step,) = [s for s in steps if s.get("step") == "condense"]
    assert step["verdict"] in ("condense", "fallback") and "it" in step["markers"] and step["history_turns"] == 1
    final = sse[-1][1]
    assert sse[-1][0] == "final" and final["turn"] == 1 and final["standalone_question"] == step["standalone"]
    assert final["usage"]["by_purpose"]["condense"]["calls"] == 1  # one recorded call, on the ledger
    calls = client.get(f"/v1/questions/{final['id']}").json()["calls"]
    assert [c["purpose"] for c in calls].count("condense") == 1
    packing = next(s for s in steps if s["type"] == "packing")
    assert packing["history_turns"] == 1 and 0 < packing["history_tokens"] <= 384

    # a follow-up that names its subject: searched as asked, no call
    third = client.post(f"/v1/conversations/{cid}/questions", json={"question": "How many cars fit in the company garage?"}).json()
    assert third["turn"] == 2 and "condense" not in third["usage"]["by_purpose"]
    assert [s["verdict"] for s in condense_steps(client, third["id"])] == ["skip"]

    got = client.get(f"/v1/conversations/{cid}").json()
    assert [t["turn"] for t in got["turns"]] == [0, 1, 2] and got["turns"] and got["turns"][1]["id"] == final["id"]
    assert got["turns"][1]["answer"] == final["answer"] and got["turns"][1]["citations"] == final["citations"]
    assert got["turns"][1]["usage"] == final["usage"]
    listed = client.get("/v1/collections/conv/conversations").json()["conversations"]
    assert [(c["id"], c["turns"]) for c in listed] == [(cid, 3)]
    usage = client.get("/v1/usage", params={"group_by": "collection"}).json()["usage"]
    assert next(u for u in usage if u["collection"] == "conv")["model_calls"] >= sum(
        t["usage"]["model_calls"] for t in got["turns"])

    # a turn replays with its recorded history: condensed again
    replayed = client.post(f"/v1/questions/{final['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    assert [s["verdict"] for s in condense_steps(client, replayed.json()["id"])] == [step["verdict"]]

    assert client.delete(f"/v1/conversations/{cid}").status_code == 204
    gone = client.get(f"/v1/conversations/{cid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"
    assert client.get(f"/v1/questions/{final['id']}").status_code == 200  # the ledger keeps its questions
    assert client.get("/v1/collections/conv/conversations").json()["conversations"] == []


def test_keys_and_tenants_apply_as_for_questions(client):
    cid = client.post("/v1/collections/conv/conversations").json()["id"]
    other = client.post("/v1/keys", json={"role": "read", "collections": ["other"]}).json()["key"]
    reader = client.post("/v1/keys", json={"role": "read", "collections": ["conv"]}).json()["key"]
    as_other = {"Authorization": f"Bearer {other}"}
    missing = client.get("/v1/conversations/0123456789abcdef0123456789abcdef", headers=as_other)
    hidden = client.get(f"/v1/conversations/{cid}", headers=as_other)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "conversation_not_found"
    assert client.post(f"/v1/conversations/{cid}/questions", json={"question": SHIPPING_Q},
                       headers=as_other).status_code == 404
    assert client.delete(f"/v1/conversations/{cid}", headers=as_other).status_code == 404
    assert client.post("/v1/collections/conv/conversations", headers=as_other).status_code == 404
    assert client.get("/v1/collections/conv/conversations", headers=as_other).status_code == 404
    assert client.get(f"/v1/conversations/{cid}", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert client.get(f"/v1/conversations/{cid}", headers={"Authorization": "Bearer nope"}).status_code == 401
    blank = client.post(f"/v1/conversations/{cid}/questions", json={"question": "   "})
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "empty_question"
    assert client.post("/v1/collections/ghost/conversations").json()["error"]["code"] == "collection_not_found"
    # a collection deleted takes its conversations with it
    assert client.post("/v1/collections", json={"name": "brief"}).status_code == 201
    brief = client.post("/v1/collections/brief/conversations").json()["id"]
    assert client.delete("/v1/collections/brief").status_code in (200, 204)
    assert client.get(f"/v1/conversations/{brief}").status_code == 404
