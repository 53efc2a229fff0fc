"""Issue -> RenderedIssue (Jinja2 + premailer, once) -> one message per subscriber (cheap fill-in).

Public entry points: ``render_issue`` (``newsletter.render.issue``), ``MessageFactory`` and
``OutgoingMessage`` (``newsletter.render.messages``), ``make_environment`` and
``default_templates_dir`` (``newsletter.render.templates``).
"""
