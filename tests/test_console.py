"""The audit console in a real browser (Debian's Chromium through chromedriver) against a real
`rag serve` process with real models: the default embedder (multilingual-e5-small) and the small
default-family generator (Qwen2.5-Coder-0.5B), so English and Chinese questions get real cited answers.

Each test drives the page as a person would (key prompt, drag-and-drop's file input, the ask box,
links) and checks what the page shows against what the API recorded. Screenshots of every screen
are saved under the test's temporary folder (`screens/`), for people to look at.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests import browser
from tests.server import Server
from tests.test_ask_e2e import DATA, SHIPPING_Q, cli_env

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WAIT = 120  # seconds: a question with the small model on a loaded 2-core machine


ZH_Q = "明长城全长多少公里？"
FILES = ("shipping.html", "parking.txt", "warranty.txt", "zh_great_wall.txt", "zh_palace.txt")


def console_env(data_dir: Path, models_dir: Path) -> dict[str, str]:
    env = cli_env(data_dir, models_dir)
    for name in ("RAG_CHUNK_TOKENS", "RAG_CONTEXT_WINDOW"):  # the defaults, as users run them
        env.pop(name)
    env.update(RAG_EMBEDDER="multilingual-e5-small", RAG_GENERATOR="qwen2.5-coder-0.5b-instruct",
               RAG_MAX_ANSWER_TOKENS="48")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("console")
    srv = Server(root / "state", env=console_env(root / "state", models_dir)).start(timeout=600)
    with srv.client(timeout=WAIT) as c:
        assert c.post("/v1/collections", json={"name": "shop"}).status_code == 201
        r = c.post("/v1/collections/shop/documents", files=[("files", (f, (DATA / f).read_bytes())) for f in FILES])
        for job in r.json()["jobs"]:
            _wait_job(c, job["id"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screens")


@pytest.fixture()
def page(server, screens, tmp_path):
    """A fresh browser with the admin key entered once through the page's own prompt."""
    driver = browser.start(tmp_path / "profile")
    try:
        driver.get(server.url + "/")
        _type_key(driver, server.admin_key)
        _wait(driver, lambda d: d.find_elements("css selector", "#collections tbody tr[data-collection]"))
        browser.console_errors(driver)  # drains the log: the 401 before the key was entered is expected
        yield Page(driver, server, screens)
    finally:
        driver.quit()


class Page:
    def __init__(self, driver, server: Server, screens: Path):
        self.d, self.server, self.screens = driver, server, screens

    def go(self, path: str) -> None:
        self.d.get(self.server.url + path)

    def css(self, selector: str):
        return self.d.find_element("css selector", selector)

    def all(self, selector: str):
        return self.d.find_elements("css selector", selector)

    def wait_for(self, selector: str, timeout: float = WAIT):
        return _wait(self.d, lambda d: d.find_elements("css selector", selector), timeout)[0]

    def shot(self, name: str, full: bool = True) -> Path:
        """A screenshot of the whole page (the window grows to the page's height first)."""
        path = self.screens / f"{name}.png"
        width = self.d.execute_script("return window.innerWidth")
        if full:
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(max(width, 320), min(max(height + 120, 600), 6000))
        self.d.save_screenshot(str(path))
        assert path.stat().st_size > 5000
        return path


def _wait(driver, predicate, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate(driver)
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out on {driver.current_url}: {browser.console_errors(driver)}"
        time.sleep(0.2)


def _wait_job(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + WAIT
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "done", job
    return job


def _type_key(driver, key: str) -> None:
    _wait(driver, lambda d: d.find_element("id", "key-dialog").get_attribute("open") is not None, 30)
    field = driver.find_element("id", "key-input")
    field.clear()
    field.send_keys(key)
    driver.find_element("css selector", "#key-form button").click()


def _ask(p: Page, question: str) -> str:
    """Asks on the Ask page while recording every change of the answer and the steps; returns the question id."""
    p.go("/ask?collection=shop")
    p.wait_for("#question").send_keys(question)
    p.d.execute_script("""
        window.__seen = [];
        new MutationObserver(() => {
          const a = document.getElementById('answer'), s = document.getElementById('steps');
          if (a) window.__seen.push({t: performance.now(), text: a.textContent.length, steps: s ? s.children.length : 0,
                                     streaming: a.classList.contains('streaming')});
        }).observe(document.getElementById('view'), {subtree: true, childList: true, characterData: true});""")
    p.css("#ask").click()
    link = p.wait_for("a[href^='/questions/']")
    return link.get_attribute("href").rsplit("/", 1)[1]


# --------------------------------------------------------------------------- the key


def test_the_page_asks_for_a_key_and_keeps_it_for_the_session_only(server, tmp_path, screens):
    driver = browser.start(tmp_path / "profile")
    try:
        driver.get(server.url + "/")
        _type_key(driver, "rag_wrong_key")
        error = _wait(driver, lambda d: d.find_element("id", "key-error").text, 30)
        assert "not accepted" in error
        Page(driver, server, screens).shot("key-prompt", full=False)
        _type_key(driver, server.admin_key)
        _wait(driver, lambda d: d.find_elements("css selector", "#collections tr[data-collection=shop]"))
        assert driver.execute_script("return sessionStorage.getItem('rag.apiKey')") == server.admin_key
        assert driver.execute_script("return localStorage.length") == 0
        assert not driver.get_cookies()
    finally:
        driver.quit()


def test_escape_on_the_key_dialog_leaves_a_way_on_and_the_dialog_says_where_keys_are(server, tmp_path):
    driver = browser.start(tmp_path / "profile")
    try:
        driver.get(server.url + "/")
        _wait(driver, lambda d: d.find_element("id", "key-dialog").get_attribute("open") is not None, 30)
        help_text = driver.find_element("id", "key-help").text
        assert "data/state/admin.key" in help_text and "rag keys create" in help_text
        driver.find_element("id", "key-input").send_keys(Keys.ESCAPE)
        button = _wait(driver, lambda d: d.find_elements("id", "enter-key"), 10)[0]
        assert "Loading" not in driver.find_element("id", "view").text
        button.click()
        _type_key(driver, server.admin_key)
        _wait(driver, lambda d: d.find_elements("css selector", "#collections tr[data-collection=shop]"))
    finally:
        driver.quit()


# --------------------------------------------------------------------------- collections and uploads


def test_upload_two_documents_by_the_drop_zone_and_see_them_done(page, tmp_path):
    p = page
    p.css("#create-collection input[name=name]").send_keys("upl")
    p.css("#create-collection button").click()
    p.wait_for("#collections tr[data-collection=upl] a").click()
    p.wait_for("#drop")
    zh = tmp_path / "长城简介.txt"  # a Chinese file name must come back as it was sent
    shutil.copy(DATA / "zh_great_wall.txt", zh)
    p.css("#file-input").send_keys(f"{zh}\n{DATA / 'brewmaster.md'}")
    _wait(p.d, lambda d: [li.get_attribute("data-status") for li in d.find_elements("css selector", "li.upload")] == ["done", "done"])
    rows = _wait(p.d, lambda d: d.find_elements("css selector", "#documents tr[data-document]"))
    names = {r.find_element("css selector", "td").text: r for r in rows}
    assert set(names) == {"长城简介.txt", "brewmaster.md"}
    assert "ready" in names["长城简介.txt"].text
    # the table shows what the API holds for each document
    with p.server.client() as c:
        docs = {d["filename"]: d for d in c.get("/v1/collections/upl/documents").json()["documents"]}
    for name, row in names.items():
        cells = [td.text for td in row.find_elements("css selector", "td")]
        assert cells[4] == f"{docs[name]['chunk_count']:,}"
    p.shot("collection-documents")


def test_a_failed_upload_shows_its_error_code(page, tmp_path):
    p = page
    p.go("/collections/shop")
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated here")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    p.wait_for("#file-input").send_keys(f"{bad}\n{empty}")
    _wait(p.d, lambda d: all(li.get_attribute("data-status") in ("failed", "refused")
                             for li in d.find_elements("css selector", "li.upload")) and len(d.find_elements("css selector", "li.upload")) == 2)
    shown = {li.get_attribute("data-filename"): li.find_element("css selector", ".error code").text
             for li in p.all("li.upload")}
    job_id = p.css("li.upload[data-filename='broken.pdf']").get_attribute("data-job")
    with p.server.client() as c:
        job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and shown["broken.pdf"] == job["error"]["code"]
    assert shown["empty.txt"] == "empty_file"  # refused before a job exists
    p.shot("upload-failed", full=False)

    # after a reload the failed job is still there (GET /v1/collections/{name}/jobs), its bar full and red
    p.go("/collections/shop")
    again = p.wait_for(f"li.upload[data-job='{job_id}'][data-status=failed]")
    assert again.find_element("css selector", ".error code").text == job["error"]["code"]
    bar = again.find_element("css selector", "progress")
    value, color = p.d.execute_script("return [arguments[0].value, getComputedStyle(arguments[0]).accentColor]", bar)
    assert value == 1 and color == "rgb(180, 35, 24)", (value, color)  # --bad, not the blue of a bar at 20%
    with p.server.client() as c:
        listed = c.get("/v1/collections/shop/jobs", params={"status": "failed"}).json()["jobs"]
    assert job_id in [j["id"] for j in listed]


# --------------------------------------------------------------------------- asking, citations, trace, replay


def test_ask_streams_tokens_and_steps_then_a_citation_opens_its_passage(page):
    p = page
    qid = _ask(p, SHIPPING_Q)
    seen = p.d.execute_script("return window.__seen")
    streaming = [s for s in seen if s["streaming"]]
    # tokens arrived one after another while the answer was still streaming, after the loop's first steps
    assert len({s["text"] for s in streaming if s["text"]}) >= 3, streaming[-5:]
    first_text = next(s for s in streaming if s["text"])
    assert first_text["steps"] >= 3
    with p.server.client() as c:
        result = c.get(f"/v1/questions/{qid}").json()
        trace = c.get(f"/v1/questions/{qid}/trace").json()
    assert p.css("#answer").text.replace("\n", "") == result["answer"].replace("\n", "")
    assert len(p.all("#steps li")) == len(trace["events"])
    assert p.css("#cost").text.startswith(f"{result['usage']['model_calls']} model call")
    assert result["citations"], result
    cite = result["citations"][0]
    p.css(f"button.citation[data-n='{cite['n']}']").click()
    panel = p.wait_for("#passage .chunk.cited")
    assert cite["filename"] in p.css("#passage .panel-head").text
    marked = p.css("#passage .chunk.cited mark").text
    assert len(marked) >= 12 and marked in cite["quote"]
    assert int(panel.get_attribute("data-chunk")) in cite["chunk_ids"]
    p.shot("ask-answer")


def test_a_chinese_question_gets_a_chinese_answer_cited_from_the_chinese_document(page):
    p = page
    qid = _ask(p, ZH_Q)
    with p.server.client() as c:
        result = c.get(f"/v1/questions/{qid}").json()
    assert "8851.8" in p.css("#answer").text
    (cite,) = [c for c in result["citations"] if "8851.8" in c["quote"]]
    p.css(f"button.citation[data-n='{cite['n']}']").click()
    p.wait_for("#passage .chunk.cited mark")
    assert "zh_great_wall.txt" in p.css("#passage .panel-head").text
    assert "8851.8" in p.css("#passage .chunk.cited mark").text
    p.shot("ask-answer-zh")
    p.go(f"/questions/{qid}")
    p.wait_for("#timeline")
    assert p.css("#question-text").text == ZH_Q
    p.shot("trace-zh")


def test_trace_page_shows_candidates_decisions_prompt_and_cost(page):
    p = page
    qid = _ask(p, SHIPPING_Q)
    p.css(f"a[href='/questions/{qid}']").click()
    p.wait_for("#timeline")
    assert p.d.current_url.endswith(f"/questions/{qid}")
    p.d.refresh()  # the trace's address is stable
    p.wait_for("#timeline")
    with p.server.client() as c:
        trace = c.get(f"/v1/questions/{qid}/trace").json()
        result = c.get(f"/v1/questions/{qid}").json()
    assert p.css("#question-text").text == SHIPPING_Q
    assert [li.get_attribute("data-type") for li in p.all("#timeline > li")] == [e["type"] for e in trace["events"]]
    fused = [e for e in trace["events"] if e["type"] == "fused"][-1]
    rows = p.all("#timeline li[data-type=fused]:last-of-type table.candidates tbody tr")
    rows = p.all("#timeline li[data-type=fused]")[-1].find_elements("css selector", "table.candidates tbody tr")
    assert [int(r.get_attribute("data-chunk")) for r in rows] == [c["chunk_id"] for c in fused["candidates"]]
    selection = [e for e in trace["events"] if e["type"] == "selection"][-1]
    for r in rows:
        verdict = r.find_elements("css selector", "td")[-1].text
        assert ("selected" in verdict) == (int(r.get_attribute("data-chunk")) in selection["selected"] or "packing" in verdict)
    dense_cells = [r.find_elements("css selector", "td")[3].text for r in rows]
    assert any(cell != "—" for cell in dense_cells)
    # the fused score is on the Search page's scale (dense + BM25 by RRF; 2/61 for rank 1 in both), the
    # pool's RRF over queries has a column of its own
    per_query = {}
    for e in trace["events"]:
        for f in e.get("fused", []) if e["type"] == "candidates" else []:
            per_query[f["chunk_id"]] = max(per_query.get(f["chunk_id"], 0), f["score"])
    with p.server.client() as c:
        searched = {h["chunk_id"]: h["scores"]["fused"] for h in c.post(
            "/v1/collections/shop/search", json={"query": SHIPPING_Q, "k": 10}).json()["results"]}
    for r in rows:
        assert r.find_element("css selector", "td.fused").text == f"{per_query[int(r.get_attribute('data-chunk'))]:.4f}"
    first = next(e for e in trace["events"] if e["type"] == "candidates")  # the question itself, as Search ran it
    assert first["query"] == SHIPPING_Q
    top = first["fused"][0]
    assert f"{top['score']:.4f}" == f"{searched[top['chunk_id']]:.4f}"  # the same chunk, the same score as in Search
    call = [e for e in trace["events"] if e["type"] == "model_call"][-1]
    details = p.all("#timeline details.call")[-1]
    details.find_element("css selector", "summary").click()
    prompt = details.find_element("css selector", "pre.prompt").text
    assert SHIPPING_Q in prompt and prompt.strip() == call["prompt"].strip()
    assert details.find_element("css selector", "pre.output").text.strip() == call["output"].strip()
    card = p.css("#cost-card").text
    assert f"{result['usage']['model_calls']} of {trace['budget']['max_model_calls']}" in card
    assert f"{result['usage']['prompt_tokens']:,} of" in card
    assert len(p.all("#calls tbody tr")) == len(trace["calls"])
    p.shot("trace")


def test_replay_of_a_deterministic_question_shows_no_difference(page):
    p = page
    qid = _ask(p, SHIPPING_Q)
    p.go(f"/questions/{qid}")
    p.wait_for("#replay-button").click()
    verdict = p.wait_for("#replay-verdict")
    assert verdict.text.startswith("No difference"), verdict.text
    assert not p.all("#replay tr.changed") and len(p.all("#replay tr.same")) == 10
    p.shot("replay")


# --------------------------------------------------------------------------- usage and search


def test_usage_charts_and_the_most_expensive_questions_link_to_their_traces(page):
    p = page
    _ask(p, SHIPPING_Q)
    p.go("/usage")
    p.wait_for("#questions-costly")
    _wait(p.d, lambda d: d.execute_script("return window.Chart && Object.keys(window.Chart.instances).length") == 3, 30)
    with p.server.client() as c:
        costly = c.get("/v1/questions", params={"order": "tokens", "limit": 10}).json()["questions"]
        days = c.get("/v1/usage").json()["usage"]
    links = [a.get_attribute("href").rsplit("/", 1)[1] for a in p.all("#questions-costly a")]
    assert links == [q["id"] for q in costly]
    plotted = p.d.execute_script("return Chart.getChart('chart-day').data.datasets[0].data")
    assert sum(plotted) == sum(d["questions"] for d in days)
    p.shot("usage")
    p.all("#questions-costly a")[0].click()
    p.wait_for("#timeline")


def test_search_playground_shows_both_retrievers_and_the_fused_list(page):
    p = page
    p.go("/search?collection=shop")
    p.wait_for("#query").send_keys("standard shipping days")
    p.css("#search-button").click()
    rows = p.wait_for("#search-table tbody tr") and p.all("#search-table tbody tr")
    with p.server.client() as c:
        found = c.post("/v1/collections/shop/search", json={"query": "standard shipping days", "k": 10}).json()["results"]
    assert [int(r.get_attribute("data-chunk")) for r in rows] == [x["chunk_id"] for x in found]
    first = rows[0].find_elements("css selector", "td")
    s = found[0]["scores"]
    assert first[3].text == (f"{s['dense_rank']} · {s['dense']:.3f}" if s["dense_rank"] else "—")
    assert first[4].text == (f"{s['bm25_rank']} · {s['bm25']:.3f}" if s["bm25_rank"] else "—")
    # the two cards list each retriever's own top k, numbered 1, 2, 3... (not the fused top k's ranks)
    with p.server.client() as c:
        own = c.post("/v1/collections/shop/search", json={"query": "standard shipping days", "k": 10}).json()
    for card, kind in (("#dense-ranking", "dense"), ("#bm25-ranking", "bm25")):
        items = p.all(f"{card} li")
        assert [int(li.get_attribute("value")) for li in items] == list(range(1, len(own[kind]) + 1))
        assert [int(li.get_attribute("data-chunk")) for li in items] == [x["chunk_id"] for x in own[kind]]
    assert own["dense"]
    p.shot("search")


# --------------------------------------------------------------------------- defects found walking the console (#25)


def _recorded_question(server: Server, answer: str, prompt_tokens: int, collection: str = "shop") -> tuple[str, dict]:
    """A question written to the server's ledger directly (no generation), citing the top chunk for
    "standard shipping": what the trace and usage pages show of an answered question."""
    import uuid
    from contextlib import closing
    from dataclasses import dataclass

    from rag.settings import Settings
    from rag.store import ledger, open_db

    @dataclass
    class Call:  # a `rag.store.CallSource`
        n: int
        prompt_tokens: int
        completion_tokens: int = 40
        purpose: str = "answer"
        model_id: str = "recorded"
        runtime: str = "recorded"
        cached_prompt_tokens: int = 0
        wall_ms: float = 900.0

    with server.client() as c:
        hit = c.post("/v1/collections/shop/search", json={"query": "standard shipping days", "k": 1}).json()["results"][0]
    cite = {"n": 1, "chunk_ids": [hit["chunk_id"]], "document_id": hit["document_id"], "filename": hit["filename"],
            "page": hit["page"], "quote": hit["text"][:60]}
    qid = uuid.uuid4().hex
    with closing(open_db(Settings(data_dir=server.data_dir).db_path)) as conn:
        ledger.start_question(conn, qid, collection, "How long does shipping take? (recorded)", budget={"max_model_calls": 4,
                              "max_prompt_tokens": 10 ** 6}, options={}, models={"generator": "recorded", "embedder": "e5"})
        ledger.record_call(conn, qid, Call(1, prompt_tokens))
        result = {"id": qid, "answer": answer, "abstained": False, "citations": [cite], "usage": {"model_calls": 1,
                  "prompt_tokens": prompt_tokens, "completion_tokens": 40, "seconds": 1.0}, "stopped_by": None}
        ledger.finish_question(conn, qid, status="answered", result=result, seconds=1.0,
                               trace={"events": [], "context": [{"n": 1, "chunk_ids": cite["chunk_ids"], "text": hit["text"]}]})
    return qid, cite


def test_a_citation_opens_in_view_and_the_answer_can_be_rated_on_its_trace(page):
    p = page
    p.d.set_window_size(1400, 1000)
    long_answer = " ".join(["Standard shipping takes five to seven business days [1]."] * 120)
    qid, cite = _recorded_question(p.server, long_answer, prompt_tokens=500)
    p.go(f"/questions/{qid}")
    marker = p.wait_for("#answer button.marker")
    p.d.execute_script("window.scrollTo(0, 0)")
    marker.click()
    p.wait_for("#passage .chunk.cited")
    top, bottom, height = p.d.execute_script(
        "const r = document.getElementById('passage').getBoundingClientRect(); return [r.top, r.bottom, innerHeight]")
    assert 0 <= top < height and bottom > 0, (top, bottom, height)  # it opened where the reader can see it
    p.shot("citation-in-view", full=False)

    p.css("#feedback-comment").send_keys("cites the right page")
    p.css("#rate-down").click()
    item = p.wait_for("#feedback-list li[data-rating=down]")
    assert "Not helpful" in item.text and "cites the right page" in item.text
    with p.server.client() as c:
        stored = c.get(f"/v1/questions/{qid}/trace").json()["feedback"]
    assert [(f["rating"], f["comment"]) for f in stored] == [("down", "cites the right page")]
    p.go(f"/questions/{qid}")  # shown again after a reload, from the API
    assert "cites the right page" in p.wait_for("#feedback-list li[data-rating=down]").text


def test_the_ask_page_shows_the_servers_budget_limits_and_an_empty_collection_says_so(page):
    p = page
    with p.server.client() as c:
        assert c.post("/v1/collections", json={"name": "void"}).status_code == 201
        limits = c.get("/openapi.json").json()["components"]["schemas"]["BudgetIn"]["properties"]
    p.go("/ask?collection=void")
    for name in ("max_model_calls", "max_prompt_tokens", "max_rounds", "timeout_s"):
        field = p.wait_for(f"input[name={name}]")
        limit = next(x["maximum"] for x in limits[name]["anyOf"] if "maximum" in x)
        assert field.get_attribute("placeholder") == f"{limit:g} (limit)" and float(field.get_attribute("max")) == limit
    p.css("#question").send_keys("How long does shipping take?")
    p.css("#ask").click()
    error = p.wait_for("#result .error")
    assert error.find_element("css selector", "code").text == "collection_empty" and "empty" in error.text
    assert "do not say" not in p.css("#result").text
    with p.server.client() as c:  # refused before anything ran: nothing in the ledger
        assert c.get("/v1/questions", params={"collection": "void"}).json()["questions"] == []


def test_steps_name_budgets_and_times_in_words(page):
    p = page
    p.go("/")
    p.wait_for("main section")
    lines = p.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([import('/console/js/words.js'), import('/console/js/dom.js')]).then(([w, d]) => done([
          w.describe({type: 'model_call', n: 1, purpose: 'answer', prompt_tokens: 900, completion_tokens: 20,
                      wall_ms: 60142, stopped_by: 'timeout_s'}),
          w.describe({type: 'budget', budget: 'timeout_s', limit: 60, reason: 'no time left for an answer'}),
          w.describe({type: 'done', rounds: 1, usage: {model_calls: 1, prompt_tokens: 9, completion_tokens: 2,
                      seconds: 1.5}, stopped_by: 'max_model_calls'}),
          d.fmt.ms(60142)]));""")
    call, budget, done, elapsed = lines
    assert "stopped by the time limit" in call and "60.14 s" in call, call
    assert budget.startswith("Time limit (60 s) reached"), budget
    assert "stopped by the model-call budget" in done, done
    assert elapsed == "60.14 s"
    assert not any("timeout_s" in x or "max_model_calls" in x or "60142" in x for x in lines), lines


def test_a_trace_of_a_deleted_collection_offers_no_replay(page):
    p = page
    with p.server.client() as c:
        assert c.post("/v1/collections", json={"name": "gone"}).status_code == 201
    qid, _ = _recorded_question(p.server, "Five to seven business days.", prompt_tokens=100, collection="gone")
    p.go(f"/questions/{qid}")
    assert p.wait_for("#replay-button").is_enabled()  # while the collection exists
    with p.server.client() as c:
        assert c.delete("/v1/collections/gone").status_code == 204
    p.go(f"/questions/{qid}")
    assert "was deleted" in p.wait_for("#replay-gone").text
    assert not p.all("#replay-button") and p.css("#answer").text == "Five to seven business days."


def test_most_expensive_questions_fit_at_1400_px_with_numbers_right_aligned_and_feedback(page):
    p = page
    p.d.set_window_size(1400, 1000)
    qid, _ = _recorded_question(p.server, "Five to seven business days [1].", prompt_tokens=900_000)
    with p.server.client() as c:
        assert c.post(f"/v1/questions/{qid}/feedback", json={"rating": "up"}).status_code == 200
    p.go("/usage")
    table = p.wait_for("#questions-costly")
    width = p.d.execute_script("return arguments[0].getBoundingClientRect().width", table)
    assert width > 1000, width  # the table has the page's width, not a column beside a chart
    for th in table.find_elements("css selector", "th"):  # every header whole ("Toke" was cut) and visible
        fits = p.d.execute_script("const e = arguments[0]; return [e.scrollWidth <= e.clientWidth, "
                                  "e.getBoundingClientRect().right <= innerWidth]", th)
        assert fits == [True, True], th.text
    row = table.find_element("css selector", f"tr:has(a[href='/questions/{qid}'])")
    aligned = p.d.execute_script("return [...arguments[0].querySelectorAll('td.num')].map(e => getComputedStyle(e).textAlign)"
                                 ".concat([...document.querySelectorAll('#questions-costly th.num')].map(e => getComputedStyle(e).textAlign))", row)
    assert len(aligned) == 6 and set(aligned) == {"right"}, aligned
    question = row.find_element("css selector", "td a")
    assert question.size["height"] < 3 * 24, question.size  # not one word per line
    assert row.find_element("css selector", "td.feedback").text == "+1"
    assert "rated 1 helpful" in p.css("#totals").text
    p.shot("usage-costly-1400", full=False)


# --------------------------------------------------------------------------- safety, layout, offline docs


def test_document_text_is_shown_as_text_never_run(page, tmp_path):
    p = page
    evil = tmp_path / "evil.md"
    evil.write_text("# Returns\n\nRefunds take <img src=x onerror=\"window.__pwned=1\"> 14 days. "
                    "<script>window.__pwned=2</script> Always.\n", encoding="utf-8")
    with p.server.client() as c:
        job = c.post("/v1/collections/shop/documents", files=[("files", ("evil.md", evil.read_bytes()))]).json()["jobs"][0]
        _wait_job(c, job["id"])
    p.go("/search?collection=shop")
    p.wait_for("#query").send_keys("refunds take days")
    p.css("#search-button").click()
    p.wait_for("#search-table tbody tr")
    time.sleep(0.5)
    assert p.d.execute_script("return window.__pwned === undefined")
    assert not p.all("#search-table img, #search-table script")


@pytest.mark.parametrize("path", ["/", "/collections/shop", "/ask", "/search", "/usage", "trace"])
def test_the_layout_fits_a_phone(page, path):
    p = page
    if path == "trace":
        with p.server.client() as c:
            qs = c.get("/v1/questions", params={"limit": 1}).json()["questions"]
        path = f"/questions/{qs[0]['id']}" if qs else f"/questions/{_ask(p, SHIPPING_Q)}"
    p.d.set_window_size(390, 844)
    p.go(path)
    p.wait_for("main section")
    time.sleep(0.3)
    overflow = p.d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"{path} is {overflow}px wider than a phone screen"
    p.shot("phone-" + (path.strip("/").split("/")[0] or "home"))


@pytest.mark.parametrize("path, ready", [("/docs", ".swagger-ui .info .title"), ("/redoc", "redoc-wrap h1, .api-info h1")])
def test_api_docs_render_from_local_assets_only(page, path, ready):
    """Everything the page needs comes from this server, and nothing tries to leave it: ReDoc's sidebar
    logo (a CDN address inside its bundle) is no longer even attempted (it was refused by the content
    security policy, one console error per load)."""
    p = page
    p.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__refused = []; document.addEventListener('securitypolicyviolation', e => window.__refused.push(e.blockedURI));")})
    p.go(path)
    title = p.wait_for(ready, 60)
    assert title.text.startswith("rag")
    time.sleep(0.5)
    resources = p.d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    refused = set(p.d.execute_script("return window.__refused"))
    assert any(r.startswith(p.server.url + "/docs-assets/") for r in resources), resources
    assert all(r.startswith(p.server.url) or r.startswith("data:") for r in resources), resources
    assert not refused and browser.console_errors(p.d) == [], refused
    p.shot(path.strip("/"), full=False)


def test_an_unknown_address_shows_the_console_to_a_browser_and_json_to_api_clients(page):
    p = page
    p.go("/no/such/page")
    heading = p.wait_for("#view h1")
    assert heading.text == "Not found" and p.css("nav a[data-tab]")  # the console, with its navigation
    assert "/no/such/page" in p.css("#view").text
    for path, accept in (("/no/such/page", "application/json"), ("/no/such/page", "*/*"), ("/v1/nope", "text/html")):
        r = httpx.get(p.server.url + path, headers={"Accept": accept})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, accept, r.text[:80])
    page_404 = httpx.get(p.server.url + "/no/such/page", headers={"Accept": "text/html"})
    assert page_404.status_code == 404 and page_404.headers["content-type"].startswith("text/html")


# --------------------------------------------------------------------------- chat

CHAT_FOLLOW_UP = "What about express shipping?"  # leans on the turn before: condensed before retrieval


def _turn_answers(p: Page) -> list[str]:
    return [a.text.replace("\n", "") for a in p.all("#turns li.turn .answer")]


def _send_and_watch(p: Page, text: str) -> None:
    """Types `text` in the chat box and presses Enter, recording every change of the last turn's answer."""
    p.d.execute_script("""
        window.__seen = [];
        new MutationObserver(() => {
          const turns = document.querySelectorAll('#turns li.turn'), last = turns[turns.length - 1];
          const a = last && last.querySelector('.answer');
          if (a) window.__seen.push({turns: turns.length, text: a.textContent.length, streaming: a.classList.contains('streaming'),
                                     disabled: document.getElementById('chat-input').disabled});
        }).observe(document.getElementById('view'), {subtree: true, childList: true, characterData: true});""")
    p.css("#chat-input").send_keys(text, Keys.ENTER)


def _wait_turns_done(p: Page, n: int) -> list:
    return _wait(p.d, lambda d: (len(t := d.find_elements("css selector", "#turns li.turn[data-question]")) == n
                                 and not d.find_element("id", "chat-input").get_attribute("disabled")) and t)


def test_chat_streams_a_question_and_its_follow_up_into_one_conversation_that_reloads(page):
    p = page
    p.go("/chat?collection=shop")
    p.wait_for("#new-conversation").click()
    box = p.wait_for("#chat-input")
    assert p.all("#turns li.turn") == []
    box.send_keys("How long")
    ActionChains(p.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()  # a new line, not sent
    box.send_keys("does it take?")
    time.sleep(1)
    assert box.get_attribute("value") == "How long\ndoes it take?" and p.all("#turns li.turn") == []
    box.clear()

    _send_and_watch(p, SHIPPING_Q)
    (first,) = _wait_turns_done(p, 1)
    seen = p.d.execute_script("return window.__seen")
    streaming = [s for s in seen if s["streaming"]]
    assert len({s["text"] for s in streaming if s["text"]}) >= 3, streaming[-5:]  # tokens came one after another
    assert all(s["disabled"] for s in streaming)  # no second question while a turn runs
    cid = p.d.execute_script("return new URLSearchParams(location.search).get('conversation')")
    assert cid and p.css("#conversations li.active").get_attribute("data-conversation") == cid
    assert p.css("#conversations li.active a").text == SHIPPING_Q  # the first question names it

    _send_and_watch(p, CHAT_FOLLOW_UP)
    turns = _wait_turns_done(p, 2)
    seen = p.d.execute_script("return window.__seen")
    assert len({s["text"] for s in seen if s["streaming"] and s["turns"] == 2 and s["text"]}) >= 3, seen[-5:]
    with p.server.client() as c:
        got = c.get(f"/v1/conversations/{cid}").json()
    assert [t["question"] for t in got["turns"]] == [SHIPPING_Q, CHAT_FOLLOW_UP]  # the follow-up went to the same one
    assert [t.get_attribute("data-question") for t in turns] == [t["id"] for t in got["turns"]]
    api_answers = [t["answer"].replace("\n", "") for t in got["turns"]]
    assert _turn_answers(p) == api_answers
    cost = turns[1].find_element("css selector", "p.cost").text
    assert cost.startswith(f"{got['turns'][1]['usage']['model_calls']} model call"), cost
    assert "2 turns" in p.css("#conversations li.active").text  # the list counts the new turns
    p.shot("chat-two-turns")

    p.d.refresh()  # the conversation comes back from the API with both turns
    _wait_turns_done(p, 2)
    assert [q.text for q in p.all("#turns li.turn p.q")] == [SHIPPING_Q, CHAT_FOLLOW_UP]
    assert _turn_answers(p) == api_answers
    cited = got["turns"][0]["citations"]
    assert cited and len(p.all("#turns li.turn:first-child ol.citations li")) == len(cited)


def test_a_chat_turn_is_rated_copied_and_opens_its_trace_and_a_conversation_is_deleted(page):
    p = page
    with p.server.client() as c:
        cid = c.post("/v1/collections/shop/conversations", json={"title": "rated in the console"}).json()["id"]
        turn = c.post(f"/v1/conversations/{cid}/questions", json={"question": SHIPPING_Q}).json()
    p.d.execute_cdp_cmd("Browser.grantPermissions", {"origin": p.server.url,
                                                     "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    p.go(f"/chat?collection=shop&conversation={cid}")
    item = p.wait_for(f"#turns li.turn[data-question='{turn['id']}']")
    assert item.find_element("css selector", ".answer").text.replace("\n", "") == turn["answer"].replace("\n", "")

    up = item.find_element("css selector", "button.rate-up")
    assert up.get_attribute("aria-pressed") == "false"
    up.click()
    _wait(p.d, lambda d: up.get_attribute("aria-pressed") == "true")
    with p.server.client() as c:
        assert [f["rating"] for f in c.get(f"/v1/questions/{turn['id']}").json()["feedback"]] == ["up"]
    item.find_element("css selector", "button.rate-down").click()
    _wait(p.d, lambda d: up.get_attribute("aria-pressed") == "false")
    with p.server.client() as c:  # a second rating by the same key replaces the first
        assert [f["rating"] for f in c.get(f"/v1/questions/{turn['id']}").json()["feedback"]] == ["down"]

    copy = item.find_element("css selector", "button.copy")
    copy.click()
    _wait(p.d, lambda d: copy.get_attribute("data-state"), 10)
    assert copy.get_attribute("data-state") == "copied" and copy.text == "Copied"
    pasted = p.d.execute_async_script("navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('!' + e))")
    assert pasted == turn["answer"]

    p.d.refresh()  # the rating is shown again, from the conversation's turns
    item = p.wait_for(f"#turns li.turn[data-question='{turn['id']}']")
    assert item.find_element("css selector", "button.rate-down").get_attribute("aria-pressed") == "true"
    item.find_element("css selector", "a.trace-link").click()
    p.wait_for("#timeline")
    assert p.d.current_url.endswith(f"/questions/{turn['id']}") and p.css("#question-text").text == SHIPPING_Q

    p.go(f"/chat?collection=shop&conversation={cid}")
    p.wait_for(f"#conversations li[data-conversation='{cid}'] .delete-conversation").click()
    p.d.switch_to.alert.accept()
    _wait(p.d, lambda d: not d.find_elements("css selector", f"#conversations li[data-conversation='{cid}']")
          and "conversation=" not in d.current_url)
    with p.server.client() as c:
        assert c.get(f"/v1/conversations/{cid}").json()["error"]["code"] == "conversation_not_found"


def test_a_turn_left_while_it_runs_is_found_again_in_its_conversation(page):
    p = page
    p.go("/chat?collection=shop")
    p.wait_for("#chat-input").send_keys(ZH_Q, Keys.ENTER)
    p.wait_for("#turns li.turn .answer")  # asked: leave at once, while it is still being answered
    cid = p.d.execute_script("return new URLSearchParams(location.search).get('conversation')")
    p.css("nav a[data-tab=ask]").click()
    p.wait_for("#question")
    p.css("nav a[data-tab=chat]").click()
    p.wait_for("#turns li.turn")
    _wait(p.d, lambda d: f"conversation={cid}" in d.current_url)  # the Chat tab goes back to where the reader was
    assert p.css("#conversations li.active").get_attribute("data-conversation") == cid
    item = p.wait_for("#turns li.turn[data-question] .cost")  # its answer, shown once the ledger has it
    with p.server.client() as c:
        (turn,) = c.get(f"/v1/conversations/{cid}").json()["turns"]
    assert turn["status"] == "answered" and "8851.8" in turn["answer"]
    assert p.css("#turns li.turn .answer").text.replace("\n", "") == turn["answer"].replace("\n", "")
    assert item.text.startswith(f"{turn['usage']['model_calls']} model call")


def test_the_chat_speaks_the_browsers_language(server, tmp_path):
    driver = browser.start(tmp_path / "profile", lang="zh-CN")
    try:
        driver.get(server.url + "/chat?collection=shop")
        _type_key(driver, server.admin_key)
        fresh = _wait(driver, lambda d: d.find_elements("id", "new-conversation"))[0]
        assert fresh.text == "新对话" and driver.find_element("css selector", "section.chat h1").text == "对话"
        assert "Enter 发送" in driver.find_element("id", "chat-input").get_attribute("placeholder")
    finally:
        driver.quit()


def test_no_script_errors_on_any_screen(page):
    p = page
    for path in ("/", "/collections/shop", "/ask", "/chat", "/search", "/usage"):
        p.go(path)
        p.wait_for("main section")
    assert browser.console_errors(p.d) == []
