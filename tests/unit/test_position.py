"""Position policy: fix acceptance, averaging, relocation confirmed only by persistent far fixes."""

from portable import near

from firmware.position import Position, acceptable, distance_m


def test_distance():
    assert near(distance_m(40.0, 111.0, 40.0, 111.0), 0.0)
    d = distance_m(40.0, 111.0, 41.0, 111.0)  # one degree of latitude
    assert 111000 < d < 111400


def test_fix_policy_rejects_fake_and_weak_fixes():
    assert acceptable(True, 8, 0.9)
    assert not acceptable(True, 0, 0.0)  # the early fake fix
    assert not acceptable(True, 3, 1.0)
    assert not acceptable(True, 8, 0.0)
    assert not acceptable(True, 8, 9.9, hdop_max=5.0)
    assert not acceptable(False, 8, 0.9)
    assert not acceptable(True, None, 0.9)


def test_average_converges_and_outlier_is_not_a_move():
    p = Position(relocation_m=200)
    for i in range(20):
        d = 0.00002 * (1 if i % 2 else -1)
        assert p.add(40.8425 + d, 111.749 - d, 1065.0) is None
    assert near(p.lat, 40.8425, 1e-5) and near(p.lon, 111.749, 1e-5)
    assert p.add(40.9, 111.749) is None  # a single wild fix
    assert p.add(40.8425, 111.749) is None
    assert p.as_dict()["n"] == 21


def test_relocation_after_persistent_far_fixes():
    p = Position(relocation_m=200)
    for _ in range(5):
        p.add(40.8425, 111.749)
    moved = None
    for _ in range(3):
        moved = p.add(40.8525, 111.749)
    assert moved is not None
    old, new, metres = moved
    assert near(old[0], 40.8425, 1e-6) and near(new[0], 40.8525, 1e-6)
    assert 1000 < metres < 1200
    assert near(p.lat, 40.8525, 1e-6)


def test_restore_avoids_spurious_relocation():
    p = Position(relocation_m=200)
    p.restore({"lat": 40.8425, "lon": 111.749, "alt": 1065.0, "n": 50})
    assert p.add(40.84251, 111.74901) is None
    assert p.n == 51
