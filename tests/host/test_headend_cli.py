"""The head-end's command line: the installed command from any folder, arguments checked up front (each bad
value named, exit 2, nothing written), status by zone and state, config commands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.headend import Ingest, Store, cli, synth
from tools.headend.query import op_for

TID = "861234567890123"
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
T = "bdmeter/%s/" % TID
T0 = 1795478400  # 2026-11-24T00:00:00Z
COMMAND = Path(sys.executable).parent / "bdmeter-headend"


@pytest.fixture
def db(tmp_path):
    """A small fleet: one online terminal with a reading, one offline, one never heard of since a status."""
    path = tmp_path / "fleet.db"
    store = Store(path)
    ing = Ingest(store)
    ing.handle(T + "status", synth.status_online(T0), now=T0)
    ing.handle(T + "register", synth.register(1, T0, ["000072007201"], 40.84, 111.75, inc="00c0ffee"), now=T0)
    ing.handle(T + "energy", synth.energy(2, T0 + 60, "000072007201", 321.09, inc="00c0ffee"), now=T0 + 60)
    ing.handle("bdmeter/861234567890999/status", b'{"v":2,"state":"offline"}', now=T0)
    ing.handle("bdmeter/861234567890888/status", synth.status_online(T0), now=T0)
    store.close()
    return str(path)


def _run(argv, cwd="/", timeout=30):
    return subprocess.run([str(COMMAND)] + argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_the_installed_command_works_from_any_folder(db):
    assert COMMAND.exists(), "bdmeter-headend is not installed in the venv: run `make venv` (tools/bootstrap.sh)"
    p = _run(["status", "--db", db])
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith(TID))
    assert "000072007201" in line and "321.09" in line
    assert _run(["--help"]).stdout.startswith("usage: bdmeter-headend")
    # the module form works from another folder too, with the venv's interpreter
    p = subprocess.run([sys.executable, "-m", "tools.headend", "status", "--db", db], cwd="/", capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and TID in p.stdout, p.stderr


def test_status_imports_neither_pillow_nor_the_mqtt_client(db):
    code = ("import sys; from tools.headend import cli; rc = cli.main(['status', '--db', %r]);"
            "print('LOADED', sorted(m for m in ('PIL', 'paho') if m in sys.modules), rc)" % db)
    p = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=30)
    assert "LOADED [] 0" in p.stdout, p.stdout + p.stderr


def test_status_labels_the_zone_and_filters_by_state(db, capsys):
    assert cli.main(["status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "last seen (UTC)" in out and "2026-11-24 00:01" in out
    assert "terminals: 2 online, 0 silent, 1 offline, 0 unknown (3 terminals)" in out
    assert cli.main(["status", "--db", db, "--tz", "Asia/Shanghai"]) == 0
    out = capsys.readouterr().out
    assert "last seen (Asia/Shanghai)" in out and "2026-11-24 08:01" in out
    assert cli.main(["status", "--db", db, "--state", "offline"]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("8612")]
    assert [x.split()[0] for x in lines] == ["861234567890999"]
    assert "(3 terminals); shown: offline" in out
    assert cli.main(["status", "--db", db, "--state", "online", "--json", "--tz", "Asia/Shanghai"]) == 0
    fleet = json.loads(capsys.readouterr().out)
    assert [t["tid"] for t in fleet] == [TID, "861234567890888"]
    assert fleet[0]["last_seen_at"] == "2026-11-24T08:01:00+08:00"
    assert fleet[0]["incarnations"][0]["inc"] == "00c0ffee"


@pytest.mark.parametrize("argv, names", [
    (["status", "--tz", "Mars/Olympus"], "argument --tz: unknown time zone 'Mars/Olympus'"),
    (["status", "--state", "asleep"], "argument --state: invalid choice"),
    (["status", "--heartbeat-s", "-5"], "argument --heartbeat-s"),
])
def test_status_arguments(db, capsys, argv, names):
    assert cli.main(argv[:1] + ["--db", db] + argv[1:]) == 2
    assert names in capsys.readouterr().err


def _report(db, out, *extra):
    return ["report", "--db", db, "--from", "2026-11-24", "--to", "2026-11-25", "--out", str(out)] + list(extra)


@pytest.mark.parametrize("extra, names", [
    (["--grid", "-0.02"], "argument --grid: '-0.02' is out of range"),
    (["--grid", "0"], "argument --grid: '0' is out of range"),
    (["--grid", "nan"], "argument --grid: 'nan' is not a finite number"),
    (["--grid", "0.02", "--size", "100x80"], "argument --size: 100x80 is out of range"),
    (["--grid", "0.02", "--size", "big"], "argument --size: 'big' is not WxH"),
])
def test_report_arguments_are_refused_before_anything_is_written(db, tmp_path, capsys, extra, names):
    out = tmp_path / "out" / "energy"
    assert cli.main(_report(db, out, *extra)) == 2
    assert names in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_negative_grid_ends_at_once_in_the_installed_command(db, tmp_path):
    p = _run(_report(db, tmp_path / "e", "--grid", "-0.02"), timeout=20)
    assert p.returncode == 2 and "argument --grid" in p.stderr and "Traceback" not in p.stderr


def test_report_dates_and_regions_files_are_named(db, tmp_path, capsys):
    out = tmp_path / "out" / "energy"
    argv = ["report", "--db", db, "--grid", "0.02", "--out", str(out)]
    assert cli.main(argv + ["--from", "2026-13-01", "--to", "2026-12-02"]) == 2
    err = capsys.readouterr().err
    assert "argument --from: '2026-13-01' is not an ISO 8601 date" in err and "month must be in 1..12" in err
    assert cli.main(argv + ["--from", "2026-11-25", "--to", "2026-11-24"]) == 2
    assert "argument --to: 2026-11-24T00:00:00Z is not after --from" in capsys.readouterr().err
    bad = tmp_path / "districts.geojson"
    base = ["report", "--db", db, "--from", "2026-11-24", "--to", "2026-11-25", "--out", str(out)]
    for text, why in (("{not json", "not JSON"), ('{"type":"Point"}', "not a GeoJSON FeatureCollection"),
                      ('{"type":"FeatureCollection","features":[{"geometry":{"type":"Polygon",'
                       '"coordinates":[[[1,2],[3]]]}}]}', "a ring needs at least 4 positions")):
        bad.write_text(text)
        assert cli.main(base + ["--regions", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "argument --regions: %s" % bad in err and why in err
    assert cli.main(base + ["--regions", str(tmp_path / "none.geojson")]) == 2
    assert "argument --regions: cannot read %s" % (tmp_path / "none.geojson") in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert cli.main(base[:-1] + [str(tmp_path / "afile" / "energy"), "--grid", "0.02"]) == 2
    assert "argument --out" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert cli.main(argv + ["--from", "2026-11-24", "--to", "2026-11-25"]) == 0  # and a good one works


def test_key_checks_the_terminal_id_the_key_and_the_database(tmp_path, db, capsys):
    missing = tmp_path / "typo.db"
    assert cli.main(["key", "--db", str(missing), TID, KEY]) == 2
    assert "argument --db: no database at" in capsys.readouterr().err and not missing.exists()
    assert cli.main(["key", "--db", db, "86123/+#", KEY]) == 2
    assert "argument terminal: '86123/+#' is not a valid terminal id" in capsys.readouterr().err
    assert cli.main(["key", "--db", db, TID, "00ff" + KEY[:20]]) == 2
    err = capsys.readouterr().err
    assert "argument HEX: shorter than 16 bytes" in err and KEY[:20] not in err  # the key is never echoed
    assert cli.main(["key", "--db", db, TID, "zz" * 32]) == 2
    assert "argument HEX: not hex" in capsys.readouterr().err
    assert cli.main(["key", "--db", db, TID, KEY]) == 0
    assert capsys.readouterr().out.strip() == "key stored for %s" % TID
    assert cli.main(["key", "--db", db, "861234567890777", KEY]) == 0
    assert "not seen yet" in capsys.readouterr().out
    assert cli.main(["key", "--db", str(missing), "--create", TID, KEY]) == 0 and missing.exists()


@pytest.mark.parametrize("argv, names", [
    (["query", "--broker", "127.0.0.1:99999", TID], "argument --broker"),
    (["query", "--timeout", "0", TID], "argument --timeout"),
    (["query", "--key", "abc", TID], "argument --key: not hex"),
    (["query", "bad/tid"], "argument terminal"),
    (["query", "--key", KEY, TID, "config.set", "poll_s"], "argument what: config.set: 'poll_s' is not KEY=VALUE"),
    (["query", "--key", KEY, TID, "format"], "argument what: ask for any of address"),
    (["run", "--db", "/no/such/folder/fleet.db"], "argument --db: folder /no/such/folder does not exist"),
    (["run", "--prefix", "a/b"], "argument --prefix"),
    (["run", "--check-s", "0"], "argument --check-s"),
])
def test_query_and_run_arguments(capsys, argv, names):
    assert cli.main(argv) == 2
    assert names in capsys.readouterr().err


def test_keys_file_is_checked(tmp_path, capsys):
    f = tmp_path / "keys.txt"
    f.write_text("%s %s\n%s short\n" % (TID, KEY, "861234567890999"))
    assert cli.main(["query", "--keys", str(f), TID]) == 2
    err = capsys.readouterr().err
    assert "argument --keys: %s: the key of '861234567890999' is not hex" % f in err


def test_config_words_become_config_ops():
    assert op_for(["config.get"]) == ("config.get", {"keys": []})
    assert op_for(["config.get", "poll_s", "inst"]) == ("config.get", {"keys": ["poll_s", "inst"]})
    assert op_for(["config.set", "poll_s=60", "hdop_max=2.5", 'inst=["v","i"]', "time_sync_meters=true",
                   "note=plain text"]) == ("config.set", {"set": {"poll_s": 60, "hdop_max": 2.5, "inst": ["v", "i"],
                                                                  "time_sync_meters": True, "note": "plain text"}})
    for words in (["config.set"], ["config.set", "=5"], ["config.set", "a=1", "a=2"], ["config.get", "Bad Key"]):
        with pytest.raises(ValueError):
            op_for(words)
