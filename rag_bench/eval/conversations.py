"""A dialogue set over Debian documents this project did not write, for `rag bench conversations`.

`data/conversations.jsonl` holds one dialogue per line: ``id``, ``lang`` (``en`` | ``zh-Hans`` |
``zh-Hant``), ``doc`` (a key of `rag_bench.eval.factoid.DOCS`) and 2-4 ``turns``, each with

* ``question``: as the user asks it in the dialogue (a follow-up may say "it", "And ldaps?", "呢");
* ``standalone``: the gold standalone form (the same text when the follow-up names its subject);
* ``gold``: acceptable short answers, scored as the factoid set scores them (`factoid.is_correct`);
* ``item``: the factoid item the standalone form and gold answers come from (checked there against
  the document's own text), and its ``kind``.

Follow-ups whose ``question`` differs from their ``standalone`` form depend on the turns before them;
the others are standalone follow-ups, which should cost no condense call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).with_name("data") / "conversations.jsonl"


@dataclass(frozen=True)
class Turn:
    question: str
    standalone: str
    gold: tuple[str, ...]
    kind: str
    item: str

    @property
    def dependent(self) -> bool:
        return self.question != self.standalone


@dataclass(frozen=True)
class Dialogue:
    id: str
    lang: str
    doc: str
    turns: tuple[Turn, ...]


def load_set(path: Path = DATA) -> list[Dialogue]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        try:
            turns = tuple(Turn(t["question"], t["standalone"], tuple(t["gold"]), t["kind"], t["item"]) for t in d["turns"])
            out.append(Dialogue(d["id"], d["lang"], d["doc"], turns))
        except KeyError as exc:
            raise ValueError(f"{path}:{n}: missing field {exc}") from None
    return out
