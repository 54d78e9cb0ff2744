"""Seeds derived from names, the same on every machine, run and Python hash seed.

    stable_seed(*parts) = little-endian int of the first 8 bytes of sha256("\\x1f".join(str(p) for p in parts))

Used wherever a random choice is keyed by a name (a language, a split): preprocessing's splits and
BPE samples, fine-tuning's few-shot and ``--max-train-examples`` subsets.
"""
import hashlib


def stable_seed(*parts: object) -> int:
    """A 64-bit integer derived from ``parts`` that is the same on every machine and run."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")
