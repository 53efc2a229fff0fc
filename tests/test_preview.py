"""``newsletter init``, ``newsletter preview`` and the preview server, in a real browser."""

from __future__ import annotations

import email
import os
import re
import shutil
import tomllib
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner


from conftest import store_url
from newsletter.cli import main
from newsletter.compose import rank_papers
from newsletter.config import SETTINGS, load_config
from newsletter.render.templates import default_templates_dir
from newsletter.store import open_store
from newsletter.store.papers import upsert_papers
from newsletter.store.subscribers import add_subscriber
from newsletter.web.preview import create_preview_app
from newsletter.web.server import BackgroundServer
from test_render import hf_papers, long_word_paper

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def run(*args: str, cwd: Path | None = None):
    runner = CliRunner()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(main, list(args), catch_exceptions=False, env={"NEWSLETTER_SECRET_KEY": "k" * 32})
    finally:
        os.chdir(old)


# --- init --------------------------------------------------------------------------------

def test_init_writes_config_templates_and_subscribers(tmp_path):
    target = tmp_path / "digest"
    result = run("init", str(target))
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    templates = sorted(f"templates/{p.name}" for p in default_templates_dir().iterdir()
                       if p.is_file() and not p.name.startswith(("_", ".")) and p.suffix != ".py")
    assert written == sorted(["newsletter.toml", "subscribers.csv", *templates])
    for name in written:
        assert f"wrote  {target / name}\n" in result.output
    # The templates are copies of the defaults.
    for name in templates:
        assert (target / name).read_bytes() == (default_templates_dir() / Path(name).name).read_bytes()
    # The subscribers file is in our format: an email column first.
    assert (target / "subscribers.csv").read_text().splitlines()[0].split(",")[0] == "email"


def test_init_config_lists_every_setting_and_loads_as_defaults(tmp_path):
    run("init", str(tmp_path))
    text = (tmp_path / "newsletter.toml").read_text()
    tomllib.loads(text)
    for setting in SETTINGS:
        assert re.search(rf"^(# )?{re.escape(setting.key)} = ", text, re.M), setting.name
        assert setting.help in text
    config = load_config(tmp_path / "newsletter.toml", env={})
    for setting in SETTINGS:
        expected = "templates" if setting.name == "newsletter.templates" else setting.default
        if setting.path == "path" and expected:  # relative paths follow the file, defaults too
            expected = str(tmp_path / expected)
        elif setting.path == "sqlite_url":
            expected = f"sqlite:///{tmp_path / 'newsletter.db'}"
        assert config[setting.name] == expected, setting.name
    assert not config.smtp_enabled


def test_init_never_overwrites(tmp_path):
    run("init", str(tmp_path))
    (tmp_path / "newsletter.toml").write_text("# mine\n")
    (tmp_path / "templates" / "issue.txt.j2").write_text("my text template\n")
    result = run("init", str(tmp_path))
    assert result.exit_code == 0
    assert (tmp_path / "newsletter.toml").read_text() == "# mine\n"
    assert (tmp_path / "templates" / "issue.txt.j2").read_text() == "my text template\n"
    assert "0 file(s) written" in result.output and "kept" in result.output


@pytest.mark.parametrize("shipped", [True, False])
def test_init_subscribers_file_imports_as_our_format(tmp_path, monkeypatch, shipped):
    """From a checkout the example file is copied; from a wheel (which lacks it) a header and
    one row are written. Either way `subscribers import` reads it as our format."""
    from newsletter.render import scaffold

    if not shipped:
        monkeypatch.setattr(scaffold, "_EXAMPLE_SUBSCRIBERS", tmp_path / "not-shipped.csv")
    run("init", str(tmp_path / "d"))
    result = run("--db", f"sqlite:///{tmp_path / 'd' / 'n.db'}", "subscribers", "import",
                 str(tmp_path / "d" / "subscribers.csv"))
    assert result.exit_code == 0, result.output
    assert "newsletter format" in result.output and re.search(r"\b[1-9]\d* address(es)? added", result.output)


def test_init_into_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "file")])
    assert result.exit_code != 0


# --- preview to files --------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, fixtures_dir):
    """A scaffolded folder with the real papers ingested, the way a user gets there."""
    run("init", str(tmp_path))
    store = open_store(store_url(tmp_path / "newsletter.db"))
    with store.atomic() as conn:
        upsert_papers(conn, hf_papers(fixtures_dir))
        add_subscriber(conn, "grace@example.org", name="Grace \"Amazing\" Hopper")
    store.dispose()
    return tmp_path


def test_preview_writes_html_text_and_eml_and_prints_the_paths(folder):
    result = run("preview", "--out", "out", cwd=folder)
    assert result.exit_code == 0, result.output
    files = sorted((folder / "out").iterdir())
    assert [p.suffix for p in files] == [".eml", ".html", ".txt"]
    flat = " ".join(result.output.split())
    for path in files:
        assert str(Path("out") / path.name) in flat
    html = (folder / "out" / files[1].name).read_text()
    assert "Hi Reader," in html
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"] == "Reader <reader@example.org>"
    assert msg.get_body("html").get_content().replace("\r\n", "\n") == html
    assert msg.get_body("plain").get_content().replace("\r\n", "\n") == files[2].read_text()


def test_preview_for_one_subscriber(folder):
    result = run("preview", "--out", "out", "--subscriber", "grace@example.org", cwd=folder)
    assert result.exit_code == 0, result.output
    eml = next((folder / "out").glob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].display_name == 'Grace "Amazing" Hopper'
    assert "Hi Grace &quot;Amazing&quot; Hopper," in msg.get_body("html").get_content()


def test_preview_for_an_unknown_subscriber_fails(folder):
    result = CliRunner().invoke(main, ["--config", str(folder / "newsletter.toml"), "--db",
                                       store_url(folder / "newsletter.db"), "preview", "--out",
                                       str(folder / "out"), "--subscriber", "nobody@example.org"])
    assert result.exit_code == 1 and "nobody@example.org" in result.output


def test_preview_without_papers_says_so(tmp_path):
    result = run("preview", "--out", "out", cwd=tmp_path)
    assert result.exit_code == 0
    assert "No papers" in result.output and not (tmp_path / "out").exists()


def test_preview_warns_before_gmail_clips(folder):
    text = (folder / "newsletter.toml").read_text().replace("# max_papers = 10", "max_papers = 30")
    (folder / "newsletter.toml").write_text(text)
    (folder / "templates" / "issue.html.j2").write_text(
        (folder / "templates" / "issue.html.j2").read_text().replace(
            "{% if paper.excerpt %}", "<p>" + "padding words " * 250 + "</p>\n{% if paper.excerpt %}"))
    result = CliRunner().invoke(main, ["--config", str(folder / "newsletter.toml"), "--db",
                                                       store_url(folder / "newsletter.db"), "preview",
                                                       "--out", str(folder / "out")])
    assert result.exit_code == 0
    assert "Warning" in result.stderr and "clips" in result.stderr


# Each template error names the file it is in (an included one, not the top template) and the
# line: a missing variable or attribute (StrictUndefined) and a missing include as well.
TEMPLATE_ERRORS = {
    "undefined variable": ({"issue.txt.j2": "{{ newsletter.name }}\n{{ nosuchvar }}\n"},
                           "templates/issue.txt.j2:2: 'nosuchvar' is undefined"),
    "misspelt attribute": ({"issue.txt.j2": "{{ newsletter.name }}\n{% for paper in papers %}\n{{ paper.titel }}\n{% endfor %}\n"},
                           "templates/issue.txt.j2:3: "),
    "undefined in an include": ({"issue.html.j2": "<p>top</p>\n{% include 'part.j2' %}\n",
                                 "part.j2": "<p>part</p>\n\n{{ nothere }}\n"},
                                "templates/part.j2:3: 'nothere' is undefined"),
    "missing include": ({"issue.html.j2": "<p>top</p>\n\n{% include 'missing.j2' %}\n"},
                        "templates/issue.html.j2:3: template not found: missing.j2"),
}


@pytest.mark.parametrize("case", TEMPLATE_ERRORS)
def test_preview_names_the_file_and_line_of_a_template_error(folder, case):
    files, expected = TEMPLATE_ERRORS[case]
    for name, text in files.items():
        (folder / "templates" / name).write_text(text, encoding="utf-8")
    result = run("preview", "--out", "out", cwd=folder)
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert f"Error: {expected}" in flat, flat
    if case == "misspelt attribute":
        assert "'titel'" in flat
    assert not (folder / "out").exists()


# --- the preview server in a browser -----------------------------------------------------

def test_preview_server_listens_on_loopback_unless_told():
    from newsletter.cli.issue import preview
    from newsletter.net import is_loopback as _is_loopback

    host = next(p for p in preview.params if p.name == "host")
    assert host.default == "127.0.0.1"
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.10")


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port``, from the kernel's own tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_preview_serve_listens_on_loopback_only(folder):
    import subprocess
    import sys
    import time

    import httpx

    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux's /proc/net/tcp to see what the server listens on")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NEWSLETTER_SECRET_KEY": "k" * 32,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "preview", "--serve", "--port", "0"], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        port = int(m.group(1))
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
                time.sleep(0.1)
        assert response.status_code == 200 and "Phone, 375px" in response.text
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=10)



@pytest.fixture
def server(folder):
    config = load_config(folder / "newsletter.toml", env={})
    config = config.with_overrides({"store.url": store_url(folder / "newsletter.db")})
    store = open_store(config.store_url)
    running = BackgroundServer(create_preview_app(config, store), host="127.0.0.1", port=0).start()
    try:
        yield running, folder
    finally:
        running.stop()
        store.dispose()


def _save(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)
    return path


def test_preview_server_in_a_browser(server, browser, fixtures_dir, tmp_path):
    running, _ = server
    best = rank_papers(hf_papers(fixtures_dir), max_papers=10)  # the default max_papers
    titles = [" ".join(p.title.split()) for p in best]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(running.url + "/")
    assert page.locator("iframe#phone").get_attribute("width") == "375"
    assert page.locator("iframe#desktop").get_attribute("width") == "800"
    for frame_id in ("phone", "desktop"):
        frame = page.frame_locator(f"iframe#{frame_id}")
        for title in titles:
            heading = frame.locator("h2.paper-title", has_text=title[:40])
            heading.first.wait_for(state="visible", timeout=10_000)
            assert heading.first.is_visible()
    page.close()

    # The mail itself at phone and desktop widths, in the light and the dark palette.
    palettes = {"light": ("rgb(255, 255, 255)", "rgb(31, 41, 51)"), "dark": ("rgb(27, 31, 36)", "rgb(230, 232, 235)")}
    for width in (375, 800):
        for scheme, (background, text_colour) in palettes.items():
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            page.goto(running.url + "/issues/next/email.html")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            client_width = page.evaluate("document.documentElement.clientWidth")
            assert scroll_width <= client_width, (width, scheme, scroll_width, client_width)
            for title in titles:
                assert page.locator("h2.paper-title", has_text=title[:40]).first.is_visible()
            container = page.locator("table.container")
            assert container.evaluate("e => getComputedStyle(e).backgroundColor") == background, scheme
            assert page.locator(".excerpt").first.evaluate("e => getComputedStyle(e).color") == text_colour, scheme
            if width == 375:  # the phone layout: the container fills the screen
                assert container.evaluate("e => e.getBoundingClientRect().width") == width
            name = f"preview-{width}px.png" if scheme == "light" else f"preview-{width}px-{scheme}.png"
            shot = _save(page, name, tmp_path)
            assert shot.stat().st_size > 10_000
            page.close()


def test_long_unbroken_words_wrap_inside_the_card(server, browser):
    """A 1,205-character title, a 300-character author name and a long URL in the excerpt wrap
    inside the card: no horizontal scroll at phone or desktop width, in either palette."""
    running, folder = server
    store = open_store(store_url(folder / "newsletter.db"))
    with store.atomic() as conn:
        upsert_papers(conn, [long_word_paper()])
    store.dispose()
    for width in (375, 800):
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            page.goto(running.url + "/issues/next/email.html")
            title = page.locator("h2.paper-title", has_text="Long Supercalifragilistic")
            assert title.count() == 1 and "Supercalifragilistic" * 60 in title.inner_text().replace("\n", "")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            client_width = page.evaluate("document.documentElement.clientWidth")
            assert scroll_width <= client_width, (width, scheme, scroll_width, client_width)
            container = page.locator("table.container").evaluate("e => e.getBoundingClientRect().width")
            assert container == min(width, 600), (width, scheme, container)
            for selector in ("h2.paper-title", "p.authors", "p.excerpt"):
                box = page.locator(selector).first.evaluate(
                    "e => [e.getBoundingClientRect().right, e.scrollWidth, e.clientWidth]")
                assert box[0] <= client_width and box[1] <= box[2], (selector, width, scheme, box)
            page.close()


def test_preview_server_text_part_past_issues_and_template_reload(server, browser):
    import httpx

    running, folder = server
    text = httpx.get(running.url + "/issues/next/email.txt")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "Unsubscribe with one click:" in text.text
    eml = httpx.get(running.url + "/issues/next/message.eml")
    assert eml.headers["content-type"].startswith("message/rfc822") and b"List-Unsubscribe:" in eml.content

    subject_template = folder / "templates" / "subject.txt.j2"
    subject_template.write_text("Edited subject for issue {{ issue.number }}\n")
    page = browser.new_page()
    page.goto(running.url + "/")
    assert page.locator("h1").inner_text() == "Edited subject for issue 1"
    page.close()

    # Freeze the issue (as a send would), and it shows among past issues.
    from newsletter import pipeline
    from newsletter.store.issues import freeze_issue

    config = load_config(folder / "newsletter.toml", env={}).with_overrides(
        {"store.url": store_url(folder / "newsletter.db")})
    store = open_store(config.store_url)
    issue = pipeline.build_issue(store, config)
    with store.atomic() as conn:
        freeze_issue(conn, issue, pipeline.render_issue(store, config, issue))
    store.dispose()
    index = httpx.get(running.url + "/")
    assert f'/issues/{issue.key}/"' in index.text
    past = httpx.get(running.url + f"/issues/{issue.key}/")
    assert past.status_code == 200 and "Edited subject for issue 1" in past.text
    assert httpx.get(running.url + "/issues/1999-W01/").status_code == 404


def test_init_prints_the_next_steps_in_order_including_the_import(tmp_path):
    result = run("init", str(tmp_path / "digest"))
    assert result.exit_code == 0, result.output
    steps = result.output.split("Next, in order:")[1]
    order = [f"cd {tmp_path / 'digest'}", "edit newsletter.toml", "newsletter ingest",
             "newsletter subscribers import subscribers.csv", "newsletter papers", "newsletter preview", "newsletter send"]
    positions = [steps.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), positions
    for name in ("welcome.txt.j2", "welcome.html.j2", "welcome-subject.txt.j2"):
        assert (tmp_path / "digest" / "templates" / name).is_file()
