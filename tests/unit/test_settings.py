"""Settings: where the publisher writes and with which token, apart from where readers read."""

from __future__ import annotations

import pytest

from cloudfree.settings import STAC_TOKEN_FILE, Settings


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOUDFREE_STAC_WRITE_TOKEN", "CLOUDFREE_STAC_WRITE_URL",
                 "CLOUDFREE_STAC_API_URL", "CLOUDFREE_STAC_WRITE_PORT", "CLOUDFREE_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_publish_url_is_the_local_writer_unless_set(tmp_path) -> None:
    settings = Settings(state_dir=tmp_path, host="127.0.0.2", stac_port=9001, stac_write_port=9002)
    assert settings.stac_url == "http://127.0.0.2:9001"
    assert settings.stac_publish_url == "http://127.0.0.2:9002"
    remote = Settings(state_dir=tmp_path, stac_api_url="https://stac.example/v1",
                      stac_write_url="https://stac-writer.example/v1")
    assert (remote.stac_url, remote.stac_publish_url) == (
        "https://stac.example/v1", "https://stac-writer.example/v1")


def test_token_from_the_environment_before_the_state_file(tmp_path, monkeypatch) -> None:
    (tmp_path / STAC_TOKEN_FILE).write_text("from-the-file\n")
    assert Settings(state_dir=tmp_path).stac_token() == "from-the-file"
    monkeypatch.setenv("CLOUDFREE_STAC_WRITE_TOKEN", "from-the-env")
    settings = Settings(state_dir=tmp_path)
    assert settings.stac_token() == "from-the-env"
    assert "from-the-env" not in repr(settings)  # a SecretStr: never in a repr or a log


def test_no_token_anywhere_is_none(tmp_path) -> None:
    assert Settings(state_dir=tmp_path).stac_token() is None
    (tmp_path / STAC_TOKEN_FILE).write_text("\n")
    assert Settings(state_dir=tmp_path).stac_token() is None
