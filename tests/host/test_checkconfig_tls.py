"""tools/checkconfig.py on a TLS config: the certificate files the terminal will upload are there, readable and PEM
of the right kind, the client certificate comes with its key, a verified link has a CA; nothing of a file's
content or a secret is printed; exit 2 on any problem."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness import ROOT
from tools import checkconfig
from tools.pki import make_pki

SECRET = "b9f1c0ffee5ecret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), clients=("861234567890123",))


def _write(tmp_path, **keys):
    cfg = {"broker_tls": True, "broker_user": "861234567890123", "broker_pass": SECRET}
    cfg.update(keys)
    path = tmp_path / "terminal.json"
    path.write_text(json.dumps(cfg))
    return path


def _check(path):
    p = subprocess.run([sys.executable, "-m", "tools.checkconfig", str(path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def _no_secrets(out, *files):
    assert SECRET not in out and "BEGIN CERTIFICATE-----\n" not in out and "PRIVATE KEY-----\n" not in out, out
    for f in files:
        body = f.read_text().splitlines()[1]  # a line of base64 from inside the file
        assert body not in out, out


def test_a_good_tls_config_with_the_ca_next_to_it_passes(tmp_path, pki):
    shutil.copy(pki.ca, tmp_path / "ca.pem")
    path = _write(tmp_path)  # tls_ca defaults to ca.pem: looked up next to the config, as deploy ships it
    assert checkconfig.problems(str(path)) == []
    assert checkconfig.tls_files(str(path), dict(broker_tls=True, tls_verify=True, tls_ca="ca.pem", tls_cert="",
                                                 tls_key="")) == [("tls_ca", "ca.pem", str(tmp_path / "ca.pem"))]


def test_mutual_tls_with_absolute_paths_passes(tmp_path, pki):
    cert, key = pki.client("861234567890123")
    assert checkconfig.problems(str(_write(tmp_path, tls_ca=str(pki.ca), tls_cert=str(cert),
                                           tls_key=str(key)))) == []


def test_a_missing_ca_is_one_clear_line_exit_2(tmp_path):
    path = _write(tmp_path, tls_ca="ca.pem")
    rc, out = _check(path)
    assert rc == 2, out
    assert "tls_ca file %s: cannot read it (No such file or directory)" % (tmp_path / "ca.pem") in out, out
    _no_secrets(out)


def test_an_unreadable_ca_is_reported(tmp_path, pki):
    if os.geteuid() == 0:
        (tmp_path / "ca.pem").mkdir()  # root reads any file: a folder in its place cannot be read either
    else:
        shutil.copy(pki.ca, tmp_path / "ca.pem")
        os.chmod(tmp_path / "ca.pem", 0)
    found = checkconfig.problems(str(_write(tmp_path)))
    assert len(found) == 1 and "tls_ca file" in found[0] and "cannot read it" in found[0], found


def test_files_of_the_wrong_kind_are_not_pem_and_their_content_is_not_shown(tmp_path, pki):
    cert, key = pki.client("861234567890123")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n%s\nworld\n" % SECRET)
    path = _write(tmp_path, tls_ca=str(key), tls_cert=str(garbage), tls_key=str(cert))
    rc, out = _check(path)
    assert rc == 2, out
    assert "tls_ca file %s is not a CA certificate in PEM form (no -----BEGIN CERTIFICATE----- line)" % key in out
    assert "tls_cert file %s is not a certificate in PEM form" % garbage in out
    assert "tls_key file %s is not a private key in PEM form" % cert in out
    assert out.count("problem(s)") == 1 and "3 problem(s)" in out, out
    _no_secrets(out, key, cert)


@pytest.mark.parametrize("given,lacking", [("tls_cert", "tls_key"), ("tls_key", "tls_cert")])
def test_a_client_certificate_without_its_key_or_the_reverse(tmp_path, pki, given, lacking):
    cert, key = pki.client("861234567890123")
    shutil.copy(pki.ca, tmp_path / "ca.pem")
    path = _write(tmp_path, **{given: str(cert if given == "tls_cert" else key)})
    rc, out = _check(path)
    assert rc == 2, out
    assert "%s is set but %s is empty: mutual TLS needs the client certificate and its key together" % (
        given, lacking) in out, out
    _no_secrets(out, key)


def test_an_empty_ca_with_verification_is_refused(tmp_path):
    rc, out = _check(_write(tmp_path, tls_ca=""))
    assert rc == 2, out
    assert "broker_tls with tls_verify needs tls_ca" in out and "cannot read" not in out, out


def test_without_verification_or_without_tls_no_file_is_needed(tmp_path):
    assert checkconfig.problems(str(_write(tmp_path, tls_verify=False))) == []
    assert checkconfig.problems(str(_write(tmp_path, broker_tls=False, tls_ca="nowhere.pem"))) == []
