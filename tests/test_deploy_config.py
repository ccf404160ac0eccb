"""Production configuration: ``suanli init`` makes a production or development data dir;
``suanli serve`` takes its gRPC TLS material from files and refuses a production data dir
without them; settings come from env files beneath the environment; the database
password comes from a file and is shown nowhere."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.datadir import DataDirError, mode_of, server_tls, settle_mode
from api.devpki import ensure_dev_pki
from api.settings import Settings

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_production_init_makes_keys_and_nothing_of_the_centres(tmp_path: Path) -> None:
    data = tmp_path / "prod"
    code, out = invoke("init", "--data-dir", str(data))
    assert code == 0, out
    assert mode_of(data) == "production"
    assert "(production)" in out and "log key:" in out
    for name in ("log.key", "issuer.key", "service.key"):
        assert stat.S_IMODE((data / "keys" / name).stat().st_mode) == 0o600
    assert not (data / "centres").exists()  # centres bring their own keys
    assert not (data / "tls").exists()  # the bureau's CA issues the certificates
    code, out = invoke("centres", "list", "--data-dir", str(data))
    assert code == 0 and out.count("no key registered yet") == 2, out


def test_dev_init_makes_centre_keys_and_a_dev_pki(tmp_path: Path) -> None:
    data = tmp_path / "dev"
    code, out = invoke("init", "--dev", "--data-dir", str(data))
    assert code == 0, out
    assert mode_of(data) == "development"
    for centre in ("nscc-cd", "cd-icc"):
        for name in ("client.pem", "client.key", "ca.pem", "signing.key"):
            assert (data / "centres" / centre / name).exists()
    assert (data / "tls" / "server.pem").exists()


def test_a_production_data_dir_stays_production(tmp_path: Path) -> None:
    data = tmp_path / "prod"
    assert invoke("init", "--data-dir", str(data))[0] == 0
    code, out = invoke("init", "--dev", "--data-dir", str(data))
    assert code == 3 and "already a production data dir" in out


def test_serve_refuses_a_production_data_dir_without_tls(tmp_path: Path) -> None:
    data = tmp_path / "prod"
    assert invoke("init", "--data-dir", str(data))[0] == 0
    code, out = invoke("serve", "--data-dir", str(data))
    assert code == 3
    assert "production data dir" in out and "--tls-cert" in out
    assert not (data / "tls").exists()  # nothing made


def test_serve_names_the_missing_tls_files(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "ca").server
    (tmp_path / "d").mkdir()  # serve makes no data dir that was named: suanli init does
    code, out = invoke("serve", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(pki.cert))
    assert code == 3 and "missing --tls-key, --client-ca" in out
    gone = tmp_path / "nothing.pem"
    settings = Settings(data_dir=tmp_path / "d", tls_cert=pki.cert, tls_key=gone, client_ca=pki.ca)
    with pytest.raises(DataDirError, match=r"--tls-key .*nothing\.pem: no such file"):
        server_tls(settings)


def test_given_tls_files_are_used_as_they_are(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "ca").server
    data = tmp_path / "prod"
    assert invoke("init", "--data-dir", str(data))[0] == 0
    settings = Settings(data_dir=data, tls_cert=pki.cert, tls_key=pki.key, client_ca=pki.ca)
    files, made = server_tls(settings)
    assert (files.cert, files.key, files.ca, made) == (pki.cert, pki.key, pki.ca, ())


def test_a_development_data_dir_gets_development_tls(tmp_path: Path) -> None:
    files, made = server_tls(Settings(data_dir=tmp_path / "dev"))
    assert files.cert == tmp_path / "dev" / "tls" / "server.pem" and "server" in made


def test_env_file_beneath_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "suanli.env"
    env_file.write_text(
        "SUANLI_HTTP=0.0.0.0:9000\nSUANLI_GRPC=0.0.0.0:9001\n"
        "SUANLI_CENTRE_TARGET=elsewhere:1\n"  # the centre's settings may share the file
    )
    monkeypatch.setenv("SUANLI_GRPC", "127.0.0.1:7000")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.http == "0.0.0.0:9000"  # from the file
    assert settings.grpc == "127.0.0.1:7000"  # the environment wins


def test_the_database_password_comes_from_a_file_and_is_shown_nowhere(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cr3t-p@ss\n")
    secret.chmod(0o600)
    settings = Settings(db="postgresql+psycopg://suanli@db.example/suanli", db_password_file=secret)
    assert "s3cr3t-p%40ss@db.example" in settings.database_url()
    assert "s3cr3t" not in settings.database_shown()
    assert settings.database_shown() == "postgresql+psycopg://suanli:***@db.example/suanli"


def test_an_unmarked_data_dir_is_a_development_one_and_stays_so(tmp_path: Path) -> None:
    data = tmp_path / "old"
    assert settle_mode(data) == ("development", True)  # what the first `serve` does
    assert settle_mode(data) == ("development", False)
    code, out = invoke("init", "--data-dir", str(data))
    assert code == 3 and "already a development data dir" in out


def test_production_init_refuses_an_unmarked_dir_with_development_keys(tmp_path: Path) -> None:
    data = tmp_path / "legacy"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "log.key").write_text("made by an earlier version\n")
    code, out = invoke("init", "--data-dir", str(data))
    assert code == 3 and "new directory" in out
    assert not (data / "MODE").exists()
