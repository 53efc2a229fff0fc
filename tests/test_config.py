"""Settings: defaults, newsletter.toml, environment and flags, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import SETTINGS, load_config
from newsletter.errors import ConfigError, ConfigErrors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.path is None
    assert config["issue.days"] == 7
    assert config["delivery.outbox"] == "outbox"
    assert not config.smtp_enabled


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[issue]\nmax_papers = 12\ndays = 3\n\n[smtp]\nhost = "mail.example.org"\n')
    env = {"NEWSLETTER_ISSUE_DAYS": "5", "NEWSLETTER_SOURCES_URLS": "a.json, https://example.org/f.xml"}
    config = load_config(path, env=env, overrides={"issue.max_papers": 20})
    assert config["issue.days"] == 5
    assert config.origin("issue.days") == "environment NEWSLETTER_ISSUE_DAYS"
    assert config["issue.max_papers"] == 20
    assert config["sources.urls"] == ["a.json", "https://example.org/f.xml"]
    assert config.smtp_enabled
    assert config.origin("smtp.host") == f"{path}:6"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[issue]\ndays = 7\nmax_paper = 3\n", 3, "unknown key 'max_paper'"),
        ("[issue]\n\n\ndays = \"seven\"\n", 4, "expected a whole number"),
        ("[newsletter]\nname = 'x'\n[smtpp]\nhost = 'a'\n", 3, "unknown section [smtpp]"),
        ("[smtp]\nsecurity = \"ssl\"\n", 2, "must be one of starttls, tls, none"),
        ("[issue]\nmax_papers = 0\n", 2, "must be at least 1"),
        ("[issue]\ndays = 7\ndays = 8\n", 3, "not valid TOML"),
    ],
)
def test_wrong_key_or_value_names_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message


def test_every_wrong_key_and_value_is_reported_at_once(tmp_path: Path) -> None:
    """One run names every mistake, file and environment alike, so one edit fixes them all."""
    from click.testing import CliRunner

    from newsletter.cli import main

    path = write(tmp_path, '[issue]\ndays = "seven"\nmax_paper = 3\n\n[smtpp]\nhost = "a"\n\n'
                           '[smtp]\nsecurity = "ssl"\nport = 2525\n')
    env = {"NEWSLETTER_DELIVERY_CONCURRENCY": "many"}
    with pytest.raises(ConfigErrors) as info:
        load_config(path, env=env)
    lines = str(info.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{path}:2", f"{path}:3", f"{path}:5", f"{path}:9", "environment NEWSLETTER_DELIVERY_CONCURRENCY"]
    assert "expected a whole number" in lines[0] and "unknown key 'max_paper'" in lines[1]
    assert "unknown section [smtpp]" in lines[2] and "must be one of" in lines[3]

    result = CliRunner().invoke(main, ["--config", str(path), "papers"], env=env)
    assert result.exit_code == 1
    assert all(line in result.output for line in lines), result.output


def test_bad_environment_value_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="environment NEWSLETTER_DELIVERY_CONCURRENCY: delivery.concurrency"):
        load_config(env={"NEWSLETTER_DELIVERY_CONCURRENCY": "many"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml", env={})


def test_password_never_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp]\nhost = "a"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}:3: ")


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in reference or f"`{s.env}`" not in reference]
    assert not missing, f"settings not documented in docs/configuration.md (run python3 docs/make_configuration.py): {missing}"


def test_an_unknown_timezone_is_refused_by_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the scheduler: `send` and `preview` use the timezone for the issue key."""
    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[schedule]\ntimezone = "Europe/Berln"\n')
    for args in (["send", "--dry-run"], ["preview"], ["papers"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "newsletter.toml:2: schedule.timezone: unknown timezone 'Europe/Berln' (did you mean " \
               "'Europe/Berlin'?)" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    with pytest.raises(ConfigError, match="environment NEWSLETTER_SCHEDULE_TIMEZONE: schedule.timezone: unknown"):
        load_config(tmp_path / "newsletter.toml", env={"NEWSLETTER_SCHEDULE_TIMEZONE": "Mars/Olympus"})


def test_non_finite_numbers_ports_and_unknown_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    for name, value, words in (("NEWSLETTER_SCHEDULE_GRACE_HOURS", "nan", "expected a finite number"),
                               ("NEWSLETTER_DELIVERY_RATE_PER_SECOND", "inf", "expected a finite number"),
                               ("NEWSLETTER_SMTP_PORT", "99999", "must be at most 65535")):
        with pytest.raises(ConfigError, match=words):
            load_config(env={name: value})
    config = load_config(env={"NEWSLETTER_SMTP_HOSTNAME": "mail.example.org", "NEWSLETTER_SECRET_KEY": "k",
                              "NEWSLETTER_SMTP_PASSWORD": "p", "NEWSLETTER_CONFIG": "x"})
    assert config.warnings == ("environment NEWSLETTER_SMTP_HOSTNAME: not a setting, ignored "
                               "(did you mean NEWSLETTER_SMTP_HOST?)",)
    assert not config.smtp_enabled
    result = CliRunner().invoke(main, ["papers"], env={"NEWSLETTER_SMTP_HOSTNAME": "mail.example.org"})
    assert result.exit_code == 0 and "Warning: environment NEWSLETTER_SMTP_HOSTNAME: not a setting" in result.output


def test_a_bad_schedule_is_reported_with_the_other_mistakes(tmp_path: Path) -> None:
    path = write(tmp_path, '[schedule]\nsend = "mondy at 08:00"\ningest = "daily at 25:00"\n[issue]\ndays = 0\n')
    with pytest.raises(ConfigErrors) as info:
        load_config(path, env={"NEWSLETTER_DELIVERY_CONCURRENCY": "many"})
    places = [line.split(": ", 2)[:2] for line in str(info.value).splitlines()]
    assert places == [[f"{path}:2", "schedule.send"], [f"{path}:3", "schedule.ingest"], [f"{path}:5", "issue.days"],
                      ["environment NEWSLETTER_DELIVERY_CONCURRENCY", "delivery.concurrency"]]


def test_an_absurd_interval_is_a_configuration_error_not_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsletter.cli import main

    result = CliRunner().invoke(main, ["--config", str(write(tmp_path, '[schedule]\ningest = "every 100000000000 hours"\n')),
                                       "issues"])
    assert result.exit_code == 1 and "newsletter.toml:2: schedule.ingest: cannot read" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
