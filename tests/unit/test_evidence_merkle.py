"""The evidence log's Merkle math against the RFC 9162 definitions and CT's test vectors."""

from __future__ import annotations

import hashlib

import pytest

from evidence import merkle

# The leaves and roots of certificate-transparency's merkle_tree_test.cc (RFC 6962).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 §2.1.1 defines it, recursively over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_mth(leaves[:k]), reference_mth(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def build(leaves: list[bytes]) -> tuple[dict[tuple[int, int], bytes], list[bytes]]:
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    for index, leaf in enumerate(leaves):
        frontier, completed = merkle.frontier_append(frontier, index, leaf)
        for level, node_index, digest in completed:
            nodes[(level, node_index)] = digest
    return nodes, frontier


LEAVES = [merkle.leaf_hash(f"record {i}".encode()) for i in range(70)]
NODES, FRONTIER = build(LEAVES)


def lookup(level: int, index: int) -> bytes:
    return NODES[(level, index)]


def test_roots_match_certificate_transparency_vectors_when_built_incrementally() -> None:
    leaves = [merkle.leaf_hash(data) for data in CT_LEAVES]
    nodes, _ = build(leaves)
    for size, expected in enumerate(CT_ROOTS, start=1):
        assert merkle.root_hash(size, lambda lv, ix: nodes[(lv, ix)]).hex() == expected


def test_frontier_root_equals_rfc_mth_when_any_size_up_to_70() -> None:
    frontier: list[bytes] = []
    for size in range(1, len(LEAVES) + 1):
        frontier, _ = merkle.frontier_append(frontier, size - 1, LEAVES[size - 1])
        assert merkle.frontier_root(frontier) == reference_mth(LEAVES[:size])
        assert merkle.root_hash(size, lookup) == reference_mth(LEAVES[:size])


def test_every_inclusion_proof_verifies_when_sizes_up_to_70() -> None:
    for size in range(1, len(LEAVES) + 1):
        root = reference_mth(LEAVES[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, lookup)
            merkle.verify_inclusion(index, size, LEAVES[index], proof, root)


def test_inclusion_verification_fails_when_leaf_index_or_path_is_wrong() -> None:
    size, index = 53, 17
    root = reference_mth(LEAVES[:size])
    proof = merkle.inclusion_proof(index, size, lookup)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, LEAVES[index + 1], proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index + 1, size, LEAVES[index], proof, root)
    tampered = [proof[0], bytes(32), *proof[2:]]
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, LEAVES[index], tampered, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, LEAVES[index], proof[:-1], root)


def test_every_consistency_proof_verifies_when_sizes_up_to_40() -> None:
    for second in range(1, 41):
        second_root = reference_mth(LEAVES[:second])
        for first in range(1, second + 1):
            proof = merkle.consistency_proof(first, second, lookup)
            merkle.verify_consistency(
                first, second, reference_mth(LEAVES[:first]), second_root, proof
            )


def test_consistency_verification_fails_when_old_root_or_proof_is_altered() -> None:
    first, second = 13, 37
    proof = merkle.consistency_proof(first, second, lookup)
    first_root, second_root = reference_mth(LEAVES[:first]), reference_mth(LEAVES[:second])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, LEAVES[0], second_root, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, first_root, second_root, proof[1:])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, first_root, second_root, [*proof, bytes(32)])
    forked = [merkle.leaf_hash(b"other") if i == 0 else leaf for i, leaf in enumerate(LEAVES)]
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, second, reference_mth(forked[:first]), second_root, proof)


def test_nodes_needed_are_logarithmic_when_tree_is_large() -> None:
    size = 1_000_003
    assert len(merkle.nodes_needed_for_inclusion(123_456, size)) <= 2 * size.bit_length()
    assert len(merkle.nodes_needed_for_consistency(999_999, size)) <= 2 * size.bit_length()
