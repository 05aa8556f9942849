"""compute_mac from precomputed SHA-256 states is HMAC-SHA256, exactly."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from gatewire import auth
from gatewire.auth import MAC_TAG, compute_mac


@given(key=st.binary(max_size=200), body=st.binary(max_size=2000))
def test_compute_mac_is_hmac_sha256_of_the_tagged_body(key: bytes, body: bytes) -> None:
    assert compute_mac(body, key) == hmac.new(key, MAC_TAG + body, hashlib.sha256).hexdigest()


def test_a_key_s_states_are_reused_and_never_changed_by_a_mac() -> None:
    key = bytes(range(32))
    first = compute_mac(b"one", key)
    compute_mac(b"two" * 100, key)
    assert (
        compute_mac(b"one", key) == first == hmac.new(key, MAC_TAG + b"one", "sha256").hexdigest()
    )


def test_the_state_cache_is_bounded_and_stays_right_after_a_clear() -> None:
    keys = [n.to_bytes(32, "big") for n in range(auth._MAC_STATES_MAX + 10)]
    for key in keys:
        compute_mac(b"x", key)
    assert len(auth._MAC_STATES) <= auth._MAC_STATES_MAX
    for key in (keys[0], keys[-1]):
        assert compute_mac(b"x", key) == hmac.new(key, MAC_TAG + b"x", "sha256").hexdigest()
