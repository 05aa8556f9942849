"""Provenance ledger: EPCIS 2.0 events, hash chain, signed Merkle blocks, proofs."""
