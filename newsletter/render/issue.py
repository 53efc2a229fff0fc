"""Issue -> RenderedIssue: Jinja2 once, premailer once, tokens left for each subscriber.

The result is what gets frozen in the store: every message of the issue is this HTML and text
with four tokens replaced (name, email, unsubscribe and preferences URLs), so rendering cost is
paid once per issue, never per subscriber.
"""

from __future__ import annotations

import jinja2

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.models import Issue, RenderedIssue
from newsletter.render import placeholders
from newsletter.render.context import template_context
from newsletter.render.inline import inline_css
from newsletter.render.templates import make_environment, operator_templates_dir

# Gmail clips an HTML part past ~102 KB, hiding the footer and its unsubscribe link; we warn
# with room to spare for the per-subscriber values.
CLIP_BYTES = 102_000
WARN_HTML_BYTES = 95_000


def render_template(env: jinja2.Environment, name: str, context: dict) -> str:
    """Render one template; any failure becomes a RenderError naming the template file (its
    path, which may be an included or extended file rather than ``name``) and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template syntax error: {exc.message}", where=exc.filename or name,
                          line=exc.lineno) from None
    except jinja2.UndefinedError as exc:  # a misspelt variable or attribute (StrictUndefined)
        where, line = _template_position(exc, name)
        raise RenderError(f"{exc.message}", where=where, line=line) from None
    except jinja2.TemplateNotFound as exc:  # an {% include %}, {% extends %} or {% import %} of no file
        where, line = _template_position(exc, name)
        raise RenderError(f"template not found: {exc.name}", where=where, line=line) from None
    except Exception as exc:  # an operator's template doing arithmetic on text, dividing by zero...
        where, line = _template_position(exc, name)
        raise RenderError(f"{type(exc).__name__}: {exc}", where=where, line=line) from None


def _template_position(exc: BaseException, name: str) -> tuple[str, int | None]:
    """The template file and line an error was raised from: Jinja2 rewrites the traceback so
    each template's own frames carry its file name and line (and mark their globals with
    ``__jinja_exception__``); the innermost one is where the error is, e.g. in an included file."""
    where, line = name, None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "__jinja_exception__" in tb.tb_frame.f_globals and not filename.startswith("<"):
            where, line = filename, tb.tb_lineno
        tb = tb.tb_next
    return where, line


def render_issue(issue: Issue, config: Config, *, env: jinja2.Environment | None = None) -> RenderedIssue:
    """Render ``issue``'s subject, HTML (CSS inlined) and text, with per-subscriber tokens."""
    if not issue.papers:
        raise RenderError("an issue without papers cannot be rendered", where=issue.key)
    env = env or make_environment(operator_templates_dir(config))
    context = template_context(issue, config)
    subject = " ".join(render_template(env, "subject.txt.j2", context).split())
    if not subject:
        raise RenderError("the subject came out empty", where="subject.txt.j2")
    context["subject"] = subject
    html = inline_css(render_template(env, "issue.html.j2", context))
    text = finish_text(render_template(env, "issue.txt.j2", context))
    return RenderedIssue(issue=issue, subject=subject, html=html, text=text)


def finish_text(text: str) -> str:
    """The text part as sent: no trailing spaces on a line, no blank lines at either end."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


def html_size_bytes(rendered: RenderedIssue) -> int:
    """Size of the decoded HTML part for a typical subscriber (tokens at their usual length)."""
    sample = placeholders.Personal(name="A typical reader name", email="reader@example.org",
                                   unsubscribe_url="https://example.org/unsubscribe/" + "x" * 90)
    return len(placeholders.fill(rendered.html, sample.for_html()).encode("utf-8"))


def size_warning(rendered: RenderedIssue) -> str | None:
    """A sentence for the user when the HTML part is close to Gmail's clipping size, else None."""
    size = html_size_bytes(rendered)
    if size < WARN_HTML_BYTES:
        return None
    return (f"the HTML part is {size / 1000:.0f} KB; Gmail clips messages past about "
            f"{CLIP_BYTES // 1000} KB and hides the footer with the unsubscribe link: "
            "lower issue.max_papers or trim the templates")
