"""HTML export's Markdown rendering: bare URLs linked as the editor's preview
(marked, GFM) links them, and never a `javascript:` one."""

from __future__ import annotations

from collab.history.export import render_html

LINK = '<a href="{href}" target="_blank" rel="noopener noreferrer">{text}</a>'


def render(markdown: str) -> str:
    return render_html(markdown, allow_remote_images=False)


def test_bare_urls_www_hosts_and_email_addresses_become_links_as_in_the_preview():
    html = render("see https://example.com/a?b=1. and www.example.org, or ann@example.com")
    assert LINK.format(href="https://example.com/a?b=1", text="https://example.com/a?b=1") in html
    assert LINK.format(href="http://www.example.org", text="www.example.org") in html
    assert LINK.format(href="mailto:ann@example.com", text="ann@example.com") in html
    assert "https://example.com/a?b=1</a>. and" in html  # the full stop stays text


def test_a_bare_domain_or_scheme_relative_url_stays_text_as_marked_leaves_it():
    html = render("example.com and //example.net")
    assert html == "<p>example.com and //example.net</p>\n"


def test_urls_in_code_and_in_task_items_render_as_the_preview_does():
    html = render("`https://in.code`\n\n- [ ] read https://task.example")
    assert "<code>https://in.code</code>" in html
    assert "☐ read " + LINK.format(href="https://task.example", text="https://task.example") in html


def test_a_javascript_url_never_becomes_a_link():
    bare = render("javascript:alert(1) JaVaScRiPt:alert(2) [x](javascript:alert(1))")
    assert "<a" not in bare
    raw = render('<a href="javascript:alert(1)">raw</a> <javascript:alert(1)>')
    assert "href" not in raw
