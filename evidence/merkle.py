"""RFC 9162 (Certificate Transparency v2) Merkle tree math, pure and storage-agnostic.

Leaves and nodes are domain-separated as the RFC prescribes:
`leaf = sha256(0x00 || data)` and `node = sha256(0x01 || left || right)`.

Storage keeps only *perfect* subtrees, addressed as `(level, index)`: the subtree of
`2**level` leaves starting at leaf `index * 2**level`. Every range the RFC's recursive
definitions ever hash (MTH, PATH, SUBPROOF) starts at a multiple of the largest power of
two not above its size, so it splits into O(log n) stored perfect subtrees. The proof
builders therefore take a `NodeLookup` callable; `nodes_needed_for_*` runs the same
algorithm against a recorder first, so a database can fetch every node in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeLookup = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof is malformed or does not verify."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n > 1)."""
    if n < 2:
        raise ValueError("n must be at least 2")
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def range_hash(start: int, end: int, perfect: NodeLookup) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees. `start` must be suitably aligned."""
    size = end - start
    if size <= 0:
        raise ValueError("empty range")
    if _is_power_of_two(size):
        level = size.bit_length() - 1
        if start % size:
            raise ValueError("a perfect range must be aligned to its size")
        return perfect(level, start >> level)
    k = largest_power_of_two_below(size)
    return node_hash(range_hash(start, start + k, perfect), range_hash(start + k, end, perfect))


def root_hash(size: int, perfect: NodeLookup) -> bytes:
    return EMPTY_ROOT if size == 0 else range_hash(0, size, perfect)


def inclusion_proof(index: int, size: int, perfect: NodeLookup) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf-side first."""
    if not 0 <= index < size:
        raise ValueError("index must lie in [0, size)")
    path: list[bytes] = []
    start, end = 0, size
    # Walk down from the root; each step adds the sibling subtree's hash. The RFC lists
    # the path bottom-up, so the collected hashes are reversed at the end.
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index - start < k:
            path.append(range_hash(start + k, end, perfect))
            end = start + k
        else:
            path.append(range_hash(start, start + k, perfect))
            start = start + k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, perfect: NodeLookup) -> list[bytes]:
    """PROOF(first, D[0:second]) of RFC 9162 §2.1.4.1."""
    if not 0 < first <= second:
        raise ValueError("need 0 < first <= second")
    proof: list[bytes] = []
    # SUBPROOF(m, D[start:end], b), unrolled: each level appends one hash, and the RFC
    # appends on the way back up, so collect top-down and reverse.
    m, start, end, complete = first, 0, second, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(range_hash(start, end, perfect))
            break
        k = largest_power_of_two_below(n)
        if m <= k:
            proof.append(range_hash(start + k, end, perfect))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, perfect))
            m, start, complete = m - k, start + k, False
    # The terminal hash (if any) was appended last but belongs first.
    proof.reverse()
    return proof


def _recorder() -> tuple[NodeLookup, set[tuple[int, int]]]:
    seen: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        seen.add((level, index))
        return bytes(HASH_SIZE)

    return record, seen


def nodes_needed_for_inclusion(index: int, size: int) -> set[tuple[int, int]]:
    record, seen = _recorder()
    inclusion_proof(index, size, record)
    return seen


def nodes_needed_for_consistency(first: int, second: int) -> set[tuple[int, int]]:
    record, seen = _recorder()
    consistency_proof(first, second, record)
    return seen


def nodes_needed_for_root(size: int) -> set[tuple[int, int]]:
    record, seen = _recorder()
    root_hash(size, record)
    return seen


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf and its PATH. Raises ProofError if the shape is wrong.

    Mirrors the PATH recursion (which side each sibling is on) instead of the RFC's bit
    arithmetic; the tests check it against an independent §2.1.3.2 implementation.
    """
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    sibling_on_right: list[bool] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index - start < k:
            sibling_on_right.append(True)
            end = start + k
        else:
            sibling_on_right.append(False)
            start = start + k
    if len(sibling_on_right) != len(proof):
        raise ProofError(f"expected {len(sibling_on_right)} hashes, got {len(proof)}")
    current = leaf
    for on_right, sibling in zip(reversed(sibling_on_right), proof, strict=True):
        if len(sibling) != HASH_SIZE:
            raise ProofError("proof hash has the wrong length")
        current = node_hash(current, sibling) if on_right else node_hash(sibling, current)
    return current


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `leaf` sits at `index` in the tree of `size` with `root`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raise ProofError unless the two tree heads are consistent."""
    if not 0 < first <= second:
        raise ProofError("need 0 < first <= second")
    if first == second:
        if proof:
            raise ProofError("proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("equal sizes with different roots")
        return
    path = list(proof)
    if _is_power_of_two(first):
        path.insert(0, first_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != first_root or sr != second_root:
        raise ProofError("consistency proof does not match the roots")


def frontier_append(
    frontier: Sequence[bytes], size: int, leaf: bytes
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append a leaf to a tree summarised by its frontier.

    The frontier holds the roots of the perfect subtrees that make up a tree of `size`
    leaves, largest first (one per set bit of `size`). Returns the new frontier and every
    perfect subtree the leaf completed, as `(level, index, hash)`, so they can be stored.
    """
    if len(frontier) != size.bit_count():
        raise ValueError("frontier does not match the tree size")
    updated = list(frontier)
    completed = [(0, size, leaf)]
    current, level, index = leaf, 0, size
    while index & 1:
        current = node_hash(updated.pop(), current)
        level += 1
        index >>= 1
        completed.append((level, index, current))
    updated.append(current)
    return updated, completed


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """MTH of the tree a frontier summarises (right fold, as the RFC's split puts it)."""
    if not frontier:
        return EMPTY_ROOT
    current = frontier[-1]
    for subtree in reversed(frontier[:-1]):
        current = node_hash(subtree, current)
    return current
