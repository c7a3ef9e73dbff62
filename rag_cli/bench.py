"""`rag bench`: benchmarks that print figures and write reports (they are not tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from rag.settings import Settings

cli = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (not tests).")


@cli.command("models")
def bench_models(
    modes: str = typer.Option("fp32,int8-dynamic", help="Generator modes (transformers runtime), comma-separated."),
    runtimes: str = typer.Option("transformers", help="Generator runtimes: transformers, llamacpp and/or openvino, comma-separated (each prints its prefill and decode as fractions of this CPU's measured peak)."),
    llamacpp_sweep: bool = typer.Option(False, help="Run llamacpp once per llama.cpp setting (batch sizes, flash attention, KV type, batch threads), without the answer checks."),
    prefill_tokens: int = typer.Option(500, help="Prompt length for the prefill measurement, in generator tokens."),
    new_tokens: int = typer.Option(128, help="New tokens for the decode measurement."),
    generator_folder: Optional[Path] = typer.Option(None, help="A prepared transformers folder to bench instead of RAG_GENERATOR's."),
    llamacpp_folder: Optional[Path] = typer.Option(None, help="A prepared llamacpp folder (or .gguf) to bench instead of RAG_GENERATOR's."),
    embedder: bool = typer.Option(True, help="Also bench the embedder when it is prepared."),
) -> None:
    """Embedder sentences/s; generator load time, prefill and decode tokens/s, peak RSS, per mode and runtime."""
    from rag_bench.models import LLAMACPP_SWEEP, _parse_runtimes
    from rag_bench.models import main as run

    run(Settings(), modes=tuple(m.strip() for m in modes.split(",") if m.strip()), runtimes=_parse_runtimes(runtimes),
        llamacpp_settings=LLAMACPP_SWEEP if llamacpp_sweep else ({},), prefill_tokens=prefill_tokens,
        new_tokens=new_tokens, generator_folder=generator_folder, llamacpp_folder=llamacpp_folder,
        checks=not llamacpp_sweep, embedder=embedder)


@cli.command("ingest")
def bench_ingest_cmd(
    docs: Optional[list[Path]] = typer.Argument(None, help="Documents to ingest (default: the English and Chinese Debian Reference PDFs)."),
    sizes: str = typer.Option("10000,100000", help="Synthetic collection sizes for search latency, comma-separated ('' to skip)."),
    fairness: bool = typer.Option(False, "--fairness", help="Instead: how long a 1 KB upload waits while a 2 MB document ingests."),
) -> None:
    """Pages/s, chunks/s, share of time in embedding, peak RSS, index bytes, search latency p50/p99."""
    from rag_bench.ingest import DEFAULT_DOCS, bench_ingest, report
    from rag_bench.search import bench_search

    if fairness:
        from rag.models.cpu import read_cpu
        from rag_bench import fairness as fair

        cpu = read_cpu()
        typer.echo(f"CPU: {cpu.model} ({cpu.cpu_class}), {os.cpu_count()} cores")
        typer.echo(fair.report(fair.bench_fairness(Settings())))
        return

    paths = docs or [p for p in DEFAULT_DOCS if p.exists()]
    if not paths:
        typer.echo("no documents: install debian-reference-en and debian-reference-zh-cn, or pass paths")
        raise typer.Exit(1)
    result = bench_ingest(Settings(), paths)
    search = {int(n): bench_search(int(n)) for n in sizes.split(",") if n.strip()}
    typer.echo(report(result, search))


@cli.command("qa")
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
    from rag_bench.qa import MissingExtra, Options, run, stdout_table, write_report
    from rag_bench.eval.factoid import MissingPackage as FactoidMissing
    from rag_bench.eval.faq import MissingPackage

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
    path, charts = write_report(data, opts.out_dir)
    typer.echo(stdout_table(data))
    typer.echo(f"report: {path}" + "".join(f"\nchart: {c}" for c in charts))


@cli.command("factoid")
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
    from rag_bench import factoid as fb

    if compare or reports:
        if not compare or len(reports or []) != 2:
            typer.echo("usage: rag bench factoid --compare A.json B.json")
            raise typer.Exit(2)
        typer.echo("\n".join(fb.compare_tables(fb.load_report(reports[0]), fb.load_report(reports[1]))))
        return
    opts = fb.Options(langs=_factoid_langs(lang), limit=limit, minutes=minutes if minutes else None, data_dir=data_dir)
    _run_and_report(fb, opts, out_dir)


def _factoid_langs(lang: str) -> tuple[str, ...]:
    """`--lang` of the benches over the factoid set's documents: en, zh-Hans, zh-Hant, zh (both scripts) or all."""
    from rag_bench.eval.factoid import LANGS

    langs = {"all": LANGS, "zh": ("zh-Hans", "zh-Hant")}.get(lang, (lang,))
    if not set(langs) <= set(LANGS):
        typer.echo("--lang must be en, zh-Hans, zh-Hant, zh or all")
        raise typer.Exit(2)
    return tuple(langs)


def _run_and_report(bench, opts, out_dir: Optional[Path]) -> None:
    """Runs a bench module (`run`, `write_report`, `stdout_table`) over the installed Debian documents."""
    from rag_bench.eval.factoid import MissingPackage

    if out_dir is not None:
        opts.out_dir = out_dir
    try:
        data = bench.run(Settings(), opts, log=lambda m: typer.echo(m, err=True))
    except MissingPackage as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    md, js = bench.write_report(data, opts.out_dir)
    typer.echo(bench.stdout_table(data))
    typer.echo(f"report: {md}\ndata: {js}")


@cli.command("conversations")
def bench_conversations_cmd(
    limit: Optional[int] = typer.Option(None, help="Dialogues per language (default: all 43)."),
    lang: str = typer.Option("all", "--lang", help="en, zh-Hans, zh-Hant, zh (both scripts) or all."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock target: stop starting dialogues when the next would not fit."),
    data_dir: Optional[Path] = typer.Option(None, help="Persistent state folder: documents already ingested there are reused."),
    out_dir: Optional[Path] = typer.Option(None, help="Report folder (default: bench-reports/)."),
) -> None:
    """Follow-ups in conversations (Debian Reference and FAQ, en/zh-Hans/zh-Hant) against the same questions asked
    standalone: accuracy, condense calls and tokens per follow-up, how often the condensing rule fires."""
    from rag_bench import conversations as cb

    _run_and_report(cb, cb.Options(langs=_factoid_langs(lang), limit=limit, minutes=minutes, data_dir=data_dir), out_dir)


@cli.command("injection")
def bench_injection_cmd(
    limit: Optional[int] = typer.Option(None, help="Questions, spread over the corpus (default: all 270; any 90 cover each language x carrier x payload once)."),
    generator: Optional[str] = typer.Option(None, help="Generator for this run (default: the configured one)."),
    label: str = typer.Option("", help="Free text in the report's name and title (e.g. before, after)."),
    out_dir: Optional[Path] = typer.Option(None, help="Report folder (default: bench-reports/)."),
) -> None:
    """Prompt-injection corpus (rag_bench.eval.injection): attack success rate by carrier, payload and language,
    foreign links in answers, benign-answer and abstention rates, cost; dated JSON + markdown report."""
    from rag_bench import injection as ib

    opts = ib.Options(limit=limit, generator=generator, label=label)
    if out_dir is not None:
        opts.out_dir = out_dir
    data = ib.run(Settings(), opts, log=lambda m: typer.echo(m, err=True))
    md, js = ib.write_report(data, opts.out_dir)
    typer.echo(ib.stdout_table(data))
    typer.echo(f"report: {md}\ndata: {js}")


@cli.command("soak")
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
    from rag_bench import soak

    report = soak.run(minutes, writers, readers, url, key, seed_docs, interval, max_queued, echo=typer.echo)
    typer.echo(soak.summary(report))
    if out is not None:
        soak.write(report, out)
    if report.errors or report.jobs_done != report.uploads_acknowledged:
        raise typer.Exit(1)


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@cli.command("ann", context_settings=_PASS_THROUGH)
def bench_ann_cmd(ctx: typer.Context) -> None:
    """Vector search p50/p99 and recall@10 against exact search at 100k and 1M vectors: FAISS flat, IVF,
    HNSW and pgvector HNSW (`--help` for its options)."""
    from rag_bench import ann

    ann.main(list(ctx.args))


@cli.command("embed")
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
    from rag_bench import embed_rate

    ints = lambda v: tuple(int(x) for x in v.split(",") if x.strip())  # noqa: E731
    embed_rate.main(threads=ints(threads), batches=ints(batches), rounds=rounds,
                    variants=tuple(variants.split(",")) if variants else embed_rate.VARIANTS,
                    chunks=chunks, sentences=sentences, profile=profile)


@cli.command("concurrency")
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
    from rag_bench import concurrency

    concurrency.main(Settings(), clients=clients, slots=slots, rounds=rounds, max_answer_tokens=max_answer_tokens,
                     generator=generator, threads=threads, repeats=repeats)


@cli.command("backends", context_settings=_PASS_THROUGH)
def bench_backends_cmd(ctx: typer.Context) -> None:
    """The embedded store against Postgres: hybrid search p50/p99 end to end, BM25 in SQL and tsvector
    against bm25s, ingestion with 1 and 2 `rag worker` processes (`--help` for its options)."""
    from rag_bench import backends

    backends.main(list(ctx.args))
