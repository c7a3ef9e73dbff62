"""Prompt text and exact token counts, the same for every generator runtime.

`ChatTokenizer` wraps a Hugging Face tokenizer with its chat template. The transformers and llama.cpp
runtimes both use it (so they render the same prompt text and count tokens the same way), and so does
the openai runtime when the served model's tokenizer is on this machine. It takes no lock: it is safe
to call while a generation runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError


class Tokens(Protocol):
    source: str  # where counts come from: "local", or the server's tokenizer

    def count_tokens(self, text: str) -> int: ...

    def render(self, messages: list[dict]) -> str: ...

    def prompt_tokens(self, messages: list[dict]) -> int: ...


class ChatTokenizer:
    """A local tokenizer and its chat template (a `Tokens`)."""

    source = "local"

    def __init__(self, tokenizer, origin: Path | str):
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(f"{origin}: the tokenizer has no chat template")
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, path: Path) -> "ChatTokenizer":
        """The tokenizer of a folder, or of a `.gguf` file (read from its header by transformers)."""
        from transformers import AutoTokenizer

        path = Path(path)
        folder, kwargs = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" and path.is_file() else (path, {})
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        except Exception as exc:
            raise ModelError(f"cannot load the tokenizer of {path}: {exc}", code="model_load_failed") from exc
        return cls(tokenizer, path)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        """Exact number of the model's tokens in `text` (no special tokens added)."""
        return len(self.encode(text))

    def render(self, messages: list[dict]) -> str:
        """The prompt text the model sees: chat template applied, assistant turn opened."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Exact number of tokens `generate(messages)` will feed the model."""
        return len(self.encode(self.render(messages)))
