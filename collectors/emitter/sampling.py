"""Deterministic image sampling: the same request id gives the same decision everywhere.

The decision hashes the request id (BLAKE2b, 64 bits, with a fixed personalisation) and
compares the hash, read as a fraction in [0, 1), with the sampling rate. It does not depend
on the process, the replica, `PYTHONHASHSEED` or the order of calls, so every replica of a
model server, the KServe bridge and a batch back-fill agree on which requests keep their
image, and raising the rate only ever adds requests to the sample.
"""

from __future__ import annotations

import hashlib

_PERSON = b"visionmon-img"
_SCALE = float(1 << 64)


def sample_fraction(request_id: str) -> float:
    """The request id's position in [0, 1), uniform over random ids."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=_PERSON).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sampled(request_id: str, rate: float) -> bool:
    """True when the request's image belongs to a sample of `rate` (a fraction in [0, 1])."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return sample_fraction(request_id) < rate
