"""`rag models`: the packaged models listed, prepared into folders and verified."""

from __future__ import annotations

from typing import Optional

import typer

from rag.settings import Settings

cli = typer.Typer(no_args_is_help=True, help="List, prepare and verify the packaged models.")


@cli.command("list")
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


@cli.command("prepare")
def models_prepare(
    names: Optional[list[str]] = typer.Argument(None, help="Registry names; default: the configured embedder and generator."),
    force: bool = typer.Option(False, help="Rebuild even when already prepared."),
    runtime: Optional[str] = typer.Option(None, help="Generator runtime to prepare for: transformers (a dense HF folder: "
                                          "stored in bfloat16 when RAG_GENERATOR_MODE is or resolves to bf16, else in "
                                          "float32, the GGUF's exact values), llamacpp (the GGUF as shipped), openvino "
                                          "(the GGUF converted to int8 OpenVINO weights) or all (every folder); "
                                          "default: what RAG_GENERATOR_RUNTIME runs on this CPU."),
) -> None:
    """Build model folders from packaged bytes (idempotent, atomic, checksummed)."""
    from rag.models import cache, runtimes
    from rag.models.registry import REGISTRY

    settings = Settings()
    with_folder = [name for name, kind in runtimes.RUNTIMES.items() if kind.folder is not None]
    if runtime not in (None, "all", *with_folder):
        typer.echo(f"--runtime must be one of {', '.join(with_folder)} or all")
        raise typer.Exit(2)
    if runtime == "all":
        wanted = cache.VARIANTS
    else:  # the runtime's folder in the configured mode; a runtime that loads no weights here still reads the tokenizer
        kind = runtimes.get(runtime) if runtime else runtimes.configured(settings)
        wanted = (kind.folder_for(settings.generator_mode) or "transformers",)
    for name in names or [settings.embedder, settings.generator]:
        spec = REGISTRY.get(name)
        if spec is None:
            typer.echo(f"{name}: not a registry model (used as given: a local folder or a cached hub id)")
            continue
        for variant in dict.fromkeys(v if v in cache.variants(spec) else "transformers" for v in wanted):
            _prepare_one(cache, spec, settings, force, variant)


def _prepare_one(cache, spec, settings: Settings, force: bool, variant: str) -> None:
    done = cache.prepare(spec, settings.models_dir, force=force, progress=True, runtime=variant)
    state = "prepared" if done.built else "already prepared"
    suffix = f" for {variant}" if len(cache.variants(spec)) > 1 else ""
    typer.echo(f"{spec.name}: {state}{suffix} in {done.path} ({done.seconds:.1f} s)")


@cli.command("verify")
def models_verify(names: Optional[list[str]] = typer.Argument(None, help="Registry names; default: every prepared model.")) -> None:
    """Re-check the packaged sources and every prepared file against their sha256."""
    from rag.errors import RagError
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
