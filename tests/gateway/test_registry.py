"""The gateway registry on SQLite and PostgreSQL: orgs, prefixes, sellers, keys, gates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.ledger.store import SqlStore, open_store
from gateway.registry import (
    ApiPrincipal,
    ApiRole,
    InspectionResult,
    OrgRole,
    Registry,
    RegistryConflictError,
    RegistryError,
    RegistryNotFoundError,
    SellerStatus,
)
from tests.support.postgres import PostgresServer

SELLER = "https://provgate.dev/seller/s-01"
OTHER_SELLER = "https://provgate.dev/seller/s-02"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A fresh database on each backend."""
    if request.param == "sqlite":
        url = str(tmp_path / "gateway.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.new_url()
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def registry(store: SqlStore) -> Registry:
    """A registry with brand Acme (prefix 4012345) registered."""
    reg = Registry(store)
    reg.add_org("brand-acme", "Acme Sportswear", OrgRole.BRAND_OWNER)
    reg.add_prefix("brand-acme", "4012345")
    return reg


# ---- organisations and prefixes ------------------------------------------------------


def test_org_round_trip_with_sorted_prefixes(registry: Registry) -> None:
    registry.add_prefix("brand-acme", "0614141")
    org = registry.org("brand-acme")
    assert org is not None
    assert (org.name, org.role, org.prefixes) == (
        "Acme Sportswear",
        OrgRole.BRAND_OWNER,
        ("0614141", "4012345"),
    )
    assert [o.org for o in registry.orgs()] == ["brand-acme"]
    assert registry.org("brand-nobody") is None


def test_add_org_again_identically_is_a_no_op_but_differently_is_refused(
    registry: Registry,
) -> None:
    version = registry.version()
    registry.add_org("brand-acme", "Acme Sportswear", OrgRole.BRAND_OWNER)
    assert registry.version() == version
    with pytest.raises(RegistryConflictError, match="already registered"):
        registry.add_org("brand-acme", "Someone Else", OrgRole.BRAND_OWNER)


def test_bad_org_name_and_role_are_refused(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="bad organisation name"):
        registry.add_org("has space", "X", OrgRole.OTHER)
    with pytest.raises(RegistryError, match="role must be one of"):
        registry.add_org("x-corp", "X", "emperor")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["12345", "1234567890123", "40123a5", ""])
def test_prefix_must_be_6_to_12_digits(registry: Registry, prefix: str) -> None:
    with pytest.raises(RegistryError, match="6–12 digits"):
        registry.add_prefix("brand-acme", prefix)


def test_prefix_of_another_org_is_refused(registry: Registry) -> None:
    registry.add_org("brand-evil", "Evil Corp", OrgRole.BRAND_OWNER)
    with pytest.raises(RegistryConflictError, match=r"4012345 is registered to 'brand-acme'"):
        registry.add_prefix("brand-evil", "4012345")
    assert registry.prefix_owners() == {"4012345": "brand-acme"}


@pytest.mark.parametrize("prefix", ["40123456", "401234", "401234567890"])
def test_overlapping_prefix_is_refused(registry: Registry, prefix: str) -> None:
    registry.add_org("brand-evil", "Evil Corp", OrgRole.BRAND_OWNER)
    with pytest.raises(RegistryConflictError, match="overlaps prefix 4012345"):
        registry.add_prefix("brand-evil", prefix)


def test_prefix_for_unknown_org_is_refused(registry: Registry) -> None:
    with pytest.raises(RegistryNotFoundError, match="unknown organisation"):
        registry.add_prefix("brand-ghost", "9521141")


def test_owner_of_gtin_takes_the_longest_matching_prefix(registry: Registry) -> None:
    registry.add_org("brand-borealis", "Borealis", OrgRole.BRAND_OWNER)
    registry.add_prefix("brand-borealis", "061414")
    # GTIN-14 = indicator digit + company prefix + item reference + check digit.
    assert registry.owner_of_gtin("04012345000016") == "brand-acme"
    assert registry.prefix_of_gtin("04012345000016") == ("4012345", "brand-acme")
    assert registry.owner_of_gtin("10614141000019") == "brand-borealis"
    assert registry.owner_of_gtin("09521141000019") is None
    with pytest.raises(RegistryError, match="14 digits"):
        registry.owner_of_gtin("4012345")


# ---- version -------------------------------------------------------------------------


def test_version_is_bumped_by_every_write_the_verifier_caches(registry: Registry) -> None:
    writes: list[Callable[[], object]] = [
        lambda: registry.add_org("site-dc1", "DC 1", OrgRole.SITE),
        lambda: registry.add_prefix("site-dc1", "5012345"),
        lambda: registry.suspend_seller(SELLER, "fraud", now=11.0),
        lambda: registry.reinstate_seller(SELLER, now=12.0),
        lambda: registry.record_inspection(
            "04012345000016/1", "ann", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=13.0
        ),
        lambda: registry.add_recall("04012345000016", None, "lead", now=15.0),
    ]
    for write in writes:
        before = registry.version()
        write()
        assert registry.version() == before + 1


def test_bookkeeping_writes_do_not_make_verifiers_reload(registry: Registry) -> None:
    """A new active seller, verdict outcomes and records the rules never read keep the
    version: otherwise every REJECT made every worker reload the whole registry."""
    writes: list[Callable[[], object]] = [
        lambda: registry.ensure_seller(SELLER, now=10.0),
        lambda: registry.note_outcome(SELLER, "REJECT", now=14.0),
        lambda: registry.prune_outcomes(before=0.0),
        lambda: registry.record_inspection(
            "04012345000016/1", "ann", InspectionResult.GENUINE, seller_id=SELLER, now=13.0
        ),
        lambda: registry.add_photo(PNG, now=13.5),
        lambda: registry.create_api_key(ApiRole.OPERATOR, None, "gate crew"),
        lambda: registry.record_gate_status("dc1", "in-1", now=16.0, online=True),
    ]
    for write in writes:
        before = registry.version()
        write()
        assert registry.version() == before


def test_seller_ids_are_stripped_and_blank_ones_refused(registry: Registry) -> None:
    registry.ensure_seller(f"  {SELLER} ", now=1.0)
    assert [s.seller_id for s in registry.sellers()] == [SELLER]
    registry.suspend_seller(f"{SELLER}\t", "fraud", now=2.0)
    seller = registry.seller(f" {SELLER}")
    assert seller is not None
    assert seller.status.value == "suspended"
    registry.note_outcome(f"{SELLER} ", "REJECT", now=3.0)
    assert registry.recent_rejects(f" {SELLER}", 0.0) == 1
    assert [s.seller_id for s in registry.sellers_named([f" {SELLER} ", " ", "x"])] == [SELLER]
    for blank in ("", "   "):
        with pytest.raises(RegistryError, match="seller ID"):
            registry.ensure_seller(blank, now=1.0)
        with pytest.raises(RegistryError, match="seller ID"):
            registry.record_inspection(
                "04012345000016/1", "ann", InspectionResult.COUNTERFEIT, seller_id=blank, now=4.0
            )


def test_a_refused_write_does_not_bump_the_version(registry: Registry) -> None:
    before = registry.version()
    with pytest.raises(RegistryError):
        registry.reinstate_seller("never-seen", now=1.0)
    assert registry.version() == before


def test_version_is_shared_by_registries_on_one_database(store: SqlStore) -> None:
    first = Registry(store)
    with open_store(store.url) as other_store:
        second = Registry(other_store)
        before = second.version()
        first.suspend_seller(SELLER, "fraud", now=1.0)
        assert second.version() == before + 1
        assert second.seller(SELLER) is not None


# ---- sellers and inspections ---------------------------------------------------------


def test_ensure_seller_creates_once_with_first_seen(registry: Registry) -> None:
    seller = registry.ensure_seller(SELLER, now=100.0)
    assert (seller.status, seller.strikes, seller.first_seen) == (SellerStatus.ACTIVE, 0, 100.0)
    assert registry.ensure_seller(SELLER, now=200.0).first_seen == 100.0
    assert [s.seller_id for s in registry.sellers()] == [SELLER]


def test_counterfeit_inspection_strikes_and_suspends_the_seller(registry: Registry) -> None:
    registry.ensure_seller(SELLER, now=1.0)
    inspection_id = registry.record_inspection(
        "04012345000016/7",
        "ann",
        InspectionResult.COUNTERFEIT,
        seller_id=SELLER,
        notes="wrong hologram",
        photos=["sha256:ab"],
        now=50.0,
    )
    seller = registry.seller(SELLER)
    assert seller is not None
    assert seller.status is SellerStatus.SUSPENDED
    assert seller.strikes == 1
    assert seller.suspended_at == 50.0
    assert (
        seller.reason == f"counterfeit confirmed by inspection {inspection_id} of 04012345000016/7"
    )
    [recorded] = registry.inspections("04012345000016/7")
    assert (recorded.inspection_id, recorded.result, recorded.seller_id) == (
        inspection_id,
        InspectionResult.COUNTERFEIT,
        SELLER,
    )
    assert (recorded.notes, recorded.photos, recorded.at) == (
        "wrong hologram",
        ("sha256:ab",),
        50.0,
    )


def test_counterfeit_from_an_unseen_seller_creates_and_suspends_it(registry: Registry) -> None:
    registry.record_inspection(
        "04012345000016/7", "ann", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=5.0
    )
    seller = registry.seller(SELLER)
    assert seller is not None
    assert (seller.status, seller.strikes, seller.first_seen) == (SellerStatus.SUSPENDED, 1, 5.0)


@pytest.mark.parametrize("result", [InspectionResult.GENUINE, InspectionResult.INCONCLUSIVE])
def test_other_results_leave_the_seller_alone(registry: Registry, result: InspectionResult) -> None:
    registry.ensure_seller(SELLER, now=1.0)
    registry.record_inspection("04012345000016/7", "ann", result, seller_id=SELLER, now=2.0)
    seller = registry.seller(SELLER)
    assert seller is not None
    assert (seller.status, seller.strikes) == (SellerStatus.ACTIVE, 0)


def test_reinstated_seller_keeps_strikes_and_is_suspended_by_the_next(registry: Registry) -> None:
    registry.record_inspection(
        "04012345000016/1", "ann", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=1.0
    )
    reinstated = registry.reinstate_seller(SELLER, now=2.0)
    assert (reinstated.status, reinstated.strikes, reinstated.suspended_at, reinstated.reason) == (
        SellerStatus.ACTIVE,
        1,
        None,
        None,
    )
    registry.record_inspection(
        "04012345000016/2", "bob", InspectionResult.COUNTERFEIT, seller_id=SELLER, now=3.0
    )
    seller = registry.seller(SELLER)
    assert seller is not None
    assert (seller.status, seller.strikes, seller.suspended_at) == (SellerStatus.SUSPENDED, 2, 3.0)


def test_suspending_twice_keeps_the_first_reason(registry: Registry) -> None:
    registry.suspend_seller(SELLER, "first", now=1.0)
    seller = registry.suspend_seller(SELLER, "second", now=2.0)
    assert (seller.reason, seller.suspended_at, seller.strikes) == ("first", 1.0, 0)


def test_inspection_ids_increase_and_filter_by_item(registry: Registry) -> None:
    ids = [
        registry.record_inspection(key, "ann", InspectionResult.GENUINE, seller_id=None, now=1.0)
        for key in ("a/1", "b/2", "a/1")
    ]
    assert ids == [1, 2, 3]
    assert [i.inspection_id for i in registry.inspections("a/1")] == [1, 3]
    assert len(registry.inspections()) == 3


def test_bad_inspection_is_refused(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="result must be one of"):
        registry.record_inspection("a/1", "ann", "fake", seller_id=None, now=1.0)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="inspector must be a non-empty string"):
        registry.record_inspection("a/1", " ", InspectionResult.GENUINE, seller_id=None, now=1.0)
    with pytest.raises(RegistryError, match="finite number"):
        registry.record_inspection(
            "a/1", "ann", InspectionResult.GENUINE, seller_id=None, now=float("nan")
        )
    assert registry.inspections() == []


def test_recent_rejects_count_rejects_since(registry: Registry) -> None:
    for at, decision in [(10.0, "REJECT"), (20.0, "PASS"), (30.0, "REJECT"), (40.0, "HOLD")]:
        registry.note_outcome(SELLER, decision, now=at)
    registry.note_outcome(OTHER_SELLER, "REJECT", now=35.0)
    assert registry.recent_rejects(SELLER, since=0.0) == 2
    assert registry.recent_rejects(SELLER, since=30.0) == 1
    assert registry.recent_rejects(SELLER, since=31.0) == 0
    with pytest.raises(RegistryError, match="PASS, REJECT or HOLD"):
        registry.note_outcome(SELLER, "MAYBE", now=1.0)


def test_pruned_outcomes_no_longer_count(registry: Registry) -> None:
    for at in (10.0, 20.0, 30.0):
        registry.note_outcome(SELLER, "REJECT", now=at)
    assert registry.prune_outcomes(before=25.0) == 2
    assert registry.recent_rejects(SELLER, since=0.0) == 1


def test_photo_round_trip_and_refusal_of_other_formats(registry: Registry) -> None:
    ref = registry.add_photo(PNG, now=1.0)
    assert ref.startswith("sha256:")
    assert registry.photo(ref) == ("image/png", PNG)
    assert registry.add_photo(PNG, now=2.0) == ref
    assert registry.photo("sha256:00") is None
    with pytest.raises(RegistryError, match="JPEG or PNG"):
        registry.add_photo(b"GIF89a....", now=1.0)


# ---- recalls -------------------------------------------------------------------------


def test_recalls_of_gtin_and_batch(registry: Registry) -> None:
    whole = registry.add_recall("4012345000016", None, "contaminated", now=1.0)
    batch = registry.add_recall("04012345000023", "L42", "bad lot", now=2.0)
    assert whole.gtin == "04012345000016"  # GTIN-13 normalised to GTIN-14
    assert registry.recalls() == [whole, batch]
    again = registry.add_recall("04012345000023", "L42", "other words", now=3.0)
    assert again == batch


@pytest.mark.parametrize(
    ("gtin", "batch", "message"),
    [
        ("04012345000017", None, "bad GTIN"),
        ("12345", None, "8, 12, 13 or 14 digits"),
        ("04012345000016", "", "batch must be"),
        ("04012345000016", "x" * 21, "batch must be"),
    ],
)
def test_bad_recall_is_refused(registry: Registry, gtin: str, batch: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        registry.add_recall(gtin, batch, "why", now=1.0)


# ---- API keys ------------------------------------------------------------------------


def test_api_key_round_trip(registry: Registry) -> None:
    key = registry.create_api_key(ApiRole.BRAND_OWNER, "brand-acme", "acme uploads")
    assert key.startswith("pgk_")
    [info] = registry.api_keys()
    assert registry.check_api_key(key) == ApiPrincipal(
        info.key_id, ApiRole.BRAND_OWNER, "brand-acme"
    )
    assert (info.label, info.revoked_at) == ("acme uploads", None)
    stored = registry.store._execute("SELECT key_hash FROM gw_api_keys")
    assert key not in str(stored)


def test_wrong_or_revoked_api_key_is_refused(registry: Registry) -> None:
    key = registry.create_api_key(ApiRole.ADMIN, None, "root")
    assert registry.check_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert registry.check_api_key("") is None
    assert registry.check_api_key("not-a-key") is None
    principal = registry.check_api_key(key)
    assert principal is not None
    registry.revoke_api_key(principal.key_id, now=1.0)
    assert registry.check_api_key(key) is None


def test_brand_owner_key_needs_a_registered_org(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="must name its organisation"):
        registry.create_api_key(ApiRole.BRAND_OWNER, None, "x")
    with pytest.raises(RegistryNotFoundError, match="unknown organisation"):
        registry.create_api_key(ApiRole.BRAND_OWNER, "brand-ghost", "x")


# ---- gates ---------------------------------------------------------------------------


def test_gate_status_merges_reports(registry: Registry) -> None:
    registry.record_gate_status("dc1", "in-1", now=1.0, counters={"pass": 3, "reject": 1})
    registry.record_gate_status(
        "dc1", "in-1", now=2.0, online=False, counters={"pass": 5}, health={"rfid": "ok"}
    )
    registry.record_gate_status("dc1", "in-0", now=3.0)
    first, second = registry.gates()
    assert (first.gate, first.online, first.last_seen) == ("in-0", True, 3.0)
    assert (second.online, second.last_seen) == (False, 2.0)
    assert second.counters == {"pass": 5, "reject": 1}
    assert second.health == {"rfid": "ok"}
    registry.record_gate_status("dc1", "in-1", now=4.0)
    assert registry.gates()[1].online is False


def test_bad_gate_counters_are_refused(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="counters must map names to integers"):
        registry.record_gate_status("dc1", "in-1", now=1.0, counters={"pass": "3"})  # type: ignore[dict-item]


def test_only_ascii_digits_make_a_prefix_or_gtin(registry: Registry) -> None:
    arabic_indic = "٤٠١٢٣٤٥"  # digits to str.isdigit() and to \d, not to GS1
    with pytest.raises(RegistryError, match="6–12 digits"):
        registry.add_prefix("brand-acme", arabic_indic)
    with pytest.raises(RegistryError, match="14 digits"):
        registry.owner_of_gtin("0" + arabic_indic + "000016")
    with pytest.raises(RegistryError, match="8, 12, 13 or 14 digits"):
        registry.add_recall("0" + arabic_indic + "000016", None, "x", now=1.0)
