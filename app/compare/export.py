"""A report as one self-contained HTML file: plotly.js (from the installed plotly package), the
dashboard's chart scripts and CSS, and the data are all inlined, so it opens offline. It is inert:
a Content-Security-Policy meta tag forbids every network fetch (``default-src 'none'``), allowing
only the inline scripts and styles the charts need and ``data:``/``blob:`` images; images in the
notes are links (``app.compare.reports.render_notes``)."""

from __future__ import annotations

import re
from functools import lru_cache

from markupsafe import Markup

from app.compare.reports import ReportView
from app.web.static import STATIC_DIR, plotly_js_path
from app.web.templating import templates


def _inline_script(text: str) -> Markup:
    """Script text safe inside <script>…</script> (no closing tag, no comment opener)."""
    return Markup(text.replace("</script", "<\\/script").replace("<!--", "<\\!--"))


@lru_cache(maxsize=1)
def _plotly() -> Markup:
    return _inline_script(plotly_js_path().read_text(encoding="utf-8"))


EXPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
)


def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def export_html(view: ReportView) -> str:
    template = templates.env.get_template("report_export.html")
    return template.render(
        view=view,
        member=False,
        export_csp=Markup(EXPORT_CSP),  # a constant with quotes, not user data
        plotly_js=_plotly(),
        charts_js=_inline_script(_static("charts.js")),
        compare_js=_inline_script(_static("compare.js")),
        css=Markup(_static("cw.css").replace("</style", "<\\/style")),
    )


def export_filename(view: ReportView, ext: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", view.title).strip("-").lower()[:60] or "report"
    return f"report-{view.id}-{slug}.{ext}"


__all__ = ["EXPORT_CSP", "export_filename", "export_html"]
