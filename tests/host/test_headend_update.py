"""Head-end: the fleet's versions and update states in `status`; `update` arguments checked up front."""

import json

import pytest

from tools.headend import Ingest, Store, cli, synth, view

T0 = 1795478400
A, B = "861234567890123", "861234567890124"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "fleet.db"
    store = Store(path)
    ing = Ingest(store)
    ing.handle("bdmeter/%s/status" % A, synth.status_online(T0, fw="0.2.0"), now=T0)
    ing.handle("bdmeter/%s/event" % A, synth.event(1, T0, "update", {"state": "downloading", "ver": "0.2.0",
                                                                      "done": 50, "total": 200}, inc="0000abcd"),
               now=T0)
    ing.handle("bdmeter/%s/event" % A, synth.event(2, T0 + 9, "update", {"state": "confirmed", "ver": "0.2.0"},
                                                    inc="0000abcd"), now=T0 + 9)
    ing.handle("bdmeter/%s/status" % B, synth.status_online(T0, fw="0.1.0"), now=T0)
    ing.handle("bdmeter/%s/event" % B, synth.event(1, T0, "update", {"state": "rolled_back", "ver": "0.3.0",
                                                                      "running": "0.1.0", "why": "import: boom"},
                                                    inc="0000beef"), now=T0)
    store.close()
    return str(path)


def test_status_shows_versions_and_update_states(db, capsys):
    assert cli.main(["status", "--db", db]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.split()[-2:] == ["fw", "update"]
    line_a = next(x for x in out.splitlines() if x.startswith(A))
    line_b = next(x for x in out.splitlines() if x.startswith(B))
    assert "0.2.0" in line_a and line_a.rstrip().endswith("confirmed 0.2.0")
    assert "0.1.0" in line_b and line_b.rstrip().endswith("rolled_back 0.3.0 (import: boom)")
    assert cli.main(["status", "--db", db, "--json"]) == 0
    fleet = {t["tid"]: t for t in json.loads(capsys.readouterr().out)}
    assert fleet[A]["fw"] == "0.2.0" and fleet[A]["upd"] == {"state": "confirmed", "ver": "0.2.0"}


def test_update_cell_in_a_few_words():
    assert view.update_cell(None) == "-"
    assert view.update_cell({"state": "downloading", "ver": "0.3.0", "done": 45, "total": 100}) == \
        "downloading 0.3.0 45%"
    assert view.update_cell({"state": "failed", "ver": "0.3.0", "why": "hash_mismatch"}) == \
        "failed 0.3.0 (hash_mismatch)"


def test_update_arguments_checked_before_anything_is_sent(tmp_path, capsys):
    assert cli.main(["update", "--bundle", str(tmp_path), "--key", "00" * 16, A]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert cli.main(["update", "--bundle", str(tmp_path), A]) == 2  # checked before the missing key
    assert cli.main(["update", "--key", "00" * 16, A]) == 2  # --bundle is required
