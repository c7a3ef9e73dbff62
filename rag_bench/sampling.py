"""Which questions a benchmark asks, when it asks only some: an even sample, or an order whose every prefix
is spread over the whole list (a run cut short by its time target still covers every part of the set).

Shared by `rag bench qa` (`rag_bench.qa.runner`) and `rag bench factoid` (`rag_bench.factoid.runner`).
"""

from __future__ import annotations


def even_sample(items: list, n: int | None) -> list:
    """`n` of the items, evenly spread over the list (all of them when `n` is None or not below its length)."""
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    step = len(items) / n
    return [items[int((i + 0.5) * step)] for i in range(n)]  # evenly spread, centred (not always entry 1.1)


def spread_order(items: list, phase: float = 0.0) -> list:
    """All items in an order whose every prefix is spread evenly over the list (van der Corput positions,
    shifted by `phase`): a run that stops early still answers questions from every part of the FAQ, and
    sets given different phases ask about different entries."""
    n, seen, out, i = len(items), set(), [], 1
    while len(out) < n:
        x, f, k = 0.0, 0.5, i
        while k:
            x, f, k = x + f * (k & 1), f / 2, k >> 1
        j = min(n - 1, int(((x + phase) % 1.0) * n))
        if j not in seen:
            seen.add(j)
            out.append(items[j])
        i += 1
        if i > 64 * n:  # positions exhausted by rounding: the rest in list order
            out += [it for j, it in enumerate(items) if j not in seen]
            break
    return out
