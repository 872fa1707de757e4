"""make deploy / tools/deploy.py without a board: refusals, the probe and route choice, the mpremote commands."""

import json
import os
import subprocess
import sys

import pytest

from harness import MICROPYTHON, ROOT
from tools import deploy

_STUB_CHECKER = """import sys
text = open(sys.argv[1]).read() if __import__("os").path.exists(sys.argv[1]) else None
if text is None or "bogus" in text:
    print("%s: unknown key 'bogus'" % sys.argv[1])
    sys.exit(2)
print("%s: ok" % sys.argv[1])
"""

# Stands in for mpremote: logs its argv as one JSON line, answers the probe as the test tells it.
_FAKE_MPREMOTE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if "exec" in sys.argv and "BDPROBE" in sys.argv[-1]:
    print(os.environ["FAKE_PROBE"])
"""


@pytest.fixture
def checked(tmp_path, monkeypatch):
    """A stub for tools/checkconfig.py (contract: problems one per line, exit 2; else 'PATH: ok', exit 0)."""
    stub = tmp_path / "checkconfig_stub.py"
    stub.write_text(_STUB_CHECKER)
    monkeypatch.setattr(deploy, "CHECKCONFIG", [sys.executable, str(stub)])
    good = tmp_path / "terminal.json"
    good.write_text(json.dumps({"board": "esp32s3-ec800m", "apn": "cmnet"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"board": "esp32s3-ec800m", "bogus": 1}))
    return good, bad


def test_make_deploy_without_a_board_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    p = subprocess.run(["make", "--no-print-directory", "deploy", "PORT=/dev/bdmeter-no-such-tty"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode != 0
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and "no board at /dev/bdmeter-no-such-tty" in lines[0], lines


def test_tool_without_a_board_refuses():
    with pytest.raises(SystemExit) as e:
        deploy.main(["--port", "/dev/bdmeter-no-such-tty", "--config", "x.json"])
    assert str(e.value).startswith("deploy: no board at /dev/bdmeter-no-such-tty")


def test_missing_checker_is_reported_not_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(deploy, "checker_available", lambda: False)
    with pytest.raises(deploy.Refused) as e:
        deploy.check_config(tmp_path / "terminal.json")
    assert "tools/checkconfig.py" in str(e.value) and "refusing" in str(e.value)


def test_no_config_is_refused():
    with pytest.raises(deploy.Refused) as e:
        deploy.check_config(None)
    assert "CONFIG=" in str(e.value)


def test_valid_config_is_reported(checked, capsys):
    good, _ = checked
    deploy.check_config(good)
    assert "%s: ok" % good in capsys.readouterr().out


def test_invalid_config_is_refused_with_its_problems(checked, tmp_path, capsys):
    _, bad = checked
    with pytest.raises(deploy.Refused) as e:
        deploy.deploy("/dev/x", bad, dry_run=True, image=tmp_path / "i.romfs")
    assert "nothing was written" in str(e.value)
    assert "unknown key 'bogus'" in capsys.readouterr().out
    assert not (tmp_path / "i.romfs").exists()


def test_dry_run_prints_both_routes(checked, tmp_path, capsys):
    good, _ = checked
    deploy.deploy("/dev/ttyACM7", good, dry_run=True, image=tmp_path / "i.romfs")
    out = capsys.readouterr().out
    assert "ROMFS image" in out and (tmp_path / "i.romfs").exists()
    assert "connect /dev/ttyACM7 romfs -p 0 deploy %s" % (tmp_path / "i.romfs") in out
    assert "fs cp -r %s %s :" % (deploy.MPY / "lib", deploy.MPY / "firmware") in out
    assert out.count(":config.json") == 3 and out.count("connect /dev/ttyACM7 reset") == 3
    assert "BDPROBE" in out  # the probe is shown, not run


@pytest.mark.parametrize("probe,route,words", [
    (((1, 29, 0), "esp32", -1, 0, False), "mpy", "no ROMFS support"),
    (((1, 24, 1), "rp2", -1, 0, False), "mpy", "no ROMFS support"),
    (((1, 26, 0), "rp2", 0, 0, False), "mpy", "no ROMFS partition"),
    (((1, 26, 0), "esp32", 1, 65536, False), "mpy", "the image needs 76902"),
    (((1, 29, 0), "esp32", 1, 131072, False), "romfs", "partition 0 holds 131072"),
    (((1, 29, 0), "esp32", 1, 131072, True), "frozen", "frozen in"),
    (((1, 28, 0), "rp2", -1, 0, True), "frozen", "frozen in"),
])
def test_route_follows_the_board(probe, route, words):
    got, why = deploy.choose_route(probe, 76902)
    assert got == route and words in why
    if route == "mpy":
        assert "copying .mpy files" in why and "RAM" in why


def test_too_old_micropython_is_refused():
    with pytest.raises(deploy.Refused) as e:
        deploy.choose_route(((1, 22, 2), "rp2", -2, 0, False), 1000)
    assert "1.23.0 or later" in str(e.value)


def test_plans_clean_before_copying_and_reset_last():
    for route in ("frozen", "romfs", "mpy"):
        steps = [s[3:] for s in deploy.plan(route, "/dev/p", "t.json", "i.romfs")]
        verbs = [s[0] for s in steps]
        assert verbs[0] == "exec" and verbs[-1] == "reset"  # main.py and stale trees go first
        assert ["fs", "cp", "t.json", ":config.json"] in steps
        assert steps[-2][-2:] == [str(deploy.MPY / "main.py"), ":"]  # main.py last, once everything else is there
        copies_trees = any(s[:3] == ["fs", "cp", "-r"] for s in steps)
        assert copies_trees == (route == "mpy") and ("romfs" in verbs) == (route == "romfs")


def test_probe_runs_under_micropython_and_names_the_unix_port():
    p = subprocess.run([MICROPYTHON, "-c", deploy.PROBE], capture_output=True, text=True, timeout=30)
    version, platform, n, size, frozen = deploy.parse_probe(p.stdout)
    assert version >= (1, 23, 0) and platform == "linux" and n < 0 and size == 0 and not frozen
    assert deploy.choose_route((version, platform, n, size, frozen), 1000)[0] == "mpy"


def test_probe_is_not_fooled_by_a_firmware_already_imported_from_the_filesystem():
    # the interrupted terminal imported `firmware` from the filesystem: that is not a frozen firmware
    p = subprocess.run([MICROPYTHON, "-c", "import firmware\n" + deploy.PROBE], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert deploy.parse_probe(p.stdout)[4] is False


def test_clean_removes_old_trees_and_keeps_state(tmp_path):
    for rel in ("firmware/app.mpy", "lib/umqtt/simple.mpy", "lib/old_driver.mpy", "data/outbox.bin", "main.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    p = subprocess.run([MICROPYTHON, "-c", deploy.CLEAN], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["data"]  # main.py too: it is copied back last
    assert (tmp_path / "data" / "outbox.bin").exists()


@pytest.mark.parametrize("probe,route", [("BDPROBE 1.29.0 esp32 1 262144 0", "romfs"),
                                         ("BDPROBE 1.29.0 rp2 -1 0 0", "mpy"),
                                         ("BDPROBE 1.28.0 rp2 -1 0 1", "frozen")])
def test_auto_route_with_a_board_that_answers(checked, tmp_path, monkeypatch, capsys, probe, route):
    good, _ = checked
    fake = tmp_path / "mpremote"
    fake.write_text(_FAKE_MPREMOTE.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "log"
    monkeypatch.setattr(deploy, "mpremote", lambda: str(fake))
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(log))
    monkeypatch.setenv("FAKE_PROBE", probe)
    board = tmp_path / "ttyACM0"
    board.touch()
    deploy.deploy(str(board), good, image=tmp_path / "i.romfs")
    calls = [json.loads(line)[2:] for line in log.read_text().splitlines()]
    assert calls[0][0] == "exec" and "BDPROBE" in calls[0][1]
    assert calls[1:] == [s[3:] for s in deploy.plan(route, str(board), good, tmp_path / "i.romfs")]
    out = capsys.readouterr().out
    assert ("copying .mpy files" in out) == (route == "mpy")
    assert "deploy: done (%s)" % route in out


def test_unanswered_probe_is_refused():
    with pytest.raises(deploy.Refused) as e:
        deploy.parse_probe("Traceback ...\nOSError: [Errno 2] ENOENT")
    assert "did not answer the probe" in str(e.value)


def _tls_terminal(tmp_path, mutual):
    """A TLS terminal's config with its certificate files next to it, as provisioning writes them."""
    from tools.pki import make_pki

    pki = make_pki(tmp_path / "pki", clients=())
    out = tmp_path / "t1"
    out.mkdir()
    (out / "ca.pem").write_bytes(pki.ca.read_bytes())
    cfg = {"board": "esp32s3-ec800m", "broker_tls": True, "broker_port": 8883, "tls_ca": "ca.pem",
           "broker_user": "861234567890123", "broker_pass": "f00dfeedf00dfeed"}
    if mutual:
        cert, key = pki.client("861234567890123")
        (out / "client.pem").write_bytes(cert.read_bytes())
        (out / "client.key").write_bytes(key.read_bytes())
        cfg.update(tls_cert="client.pem", tls_key="/client.key")  # a board path from the root: the same file
    path = out / "terminal.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("mutual", [False, True])
def test_a_tls_config_takes_its_certificate_files_to_the_board(tmp_path, monkeypatch, capsys, mutual):
    config = _tls_terminal(tmp_path, mutual)
    fake = tmp_path / "mpremote"
    fake.write_text(_FAKE_MPREMOTE.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "log"
    monkeypatch.setattr(deploy, "mpremote", lambda: str(fake))
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(log))
    monkeypatch.setenv("FAKE_PROBE", "BDPROBE 1.28.0 rp2 -1 0 1")
    board = tmp_path / "ttyACM0"
    board.touch()
    deploy.deploy(str(board), config, image=tmp_path / "i.romfs")  # the real tools/checkconfig.py
    calls = [json.loads(line)[2:] for line in log.read_text().splitlines()]
    copies = [c[2:] for c in calls if c[:2] == ["fs", "cp"]]
    d = config.parent
    want = [[str(d / "ca.pem"), ":ca.pem"]]
    if mutual:
        want += [[str(d / "client.pem"), ":client.pem"], [str(d / "client.key"), ":/client.key"]]
    assert copies[:len(want) + 1] == want + [[str(config), ":config.json"]], copies  # the files before the config
    out = capsys.readouterr().out
    assert "deploy: TLS file ca.pem goes to the board with the config" in out
    assert "BEGIN" not in out and "f00dfeed" not in out


def test_a_plain_config_copies_no_certificate_file(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"board": "esp32s3-ec800m", "tls_ca": "nowhere.pem"}))
    assert deploy.cert_copies(path) == []
    steps = [s[3:] for s in deploy.plan("frozen", "/dev/p", path, "i.romfs")]
    assert [s for s in steps if s[:2] == ["fs", "cp"]][0] == ["fs", "cp", str(path), ":config.json"]


def test_a_tls_config_whose_ca_is_missing_is_refused_before_the_board(tmp_path, capsys):
    config = _tls_terminal(tmp_path, mutual=False)
    (config.parent / "ca.pem").unlink()
    with pytest.raises(deploy.Refused) as e:
        deploy.deploy("/dev/x", config, dry_run=True, image=tmp_path / "i.romfs")
    assert "nothing was written" in str(e.value)
    out = capsys.readouterr().out
    assert "tls_ca file %s: cannot read it" % (config.parent / "ca.pem") in out and "f00dfeed" not in out
    assert not (tmp_path / "i.romfs").exists()


def test_dry_run_shows_the_certificate_copies(tmp_path, capsys):
    config = _tls_terminal(tmp_path, mutual=True)
    deploy.deploy("/dev/ttyACM7", config, dry_run=True, image=tmp_path / "i.romfs")
    out = capsys.readouterr().out
    assert out.count("%s :ca.pem" % (config.parent / "ca.pem")) == 3  # in each route's commands
    assert out.count(":/client.key") == 3 and "PRIVATE KEY" not in out
