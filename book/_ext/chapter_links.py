"""Sphinx extension: a bar of links at the top of every chapter page of the web edition.

    Download notebook · Open in Colab · Solutions

The notebook download is the page's own source (Sphinx copies it to _sources/). The Colab link
opens the same file in the repository named by `repository.url`/`branch` in book/_config.yml.
The solutions link appears when chapters/solutions/<same name>.ipynb is part of the book.
"""
import html
import posixpath
from pathlib import Path

COLAB = "https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"


def _is_chapter(app, pagename: str) -> bool:
    if not pagename.startswith("chapters/") or pagename not in app.env.all_docs:
        return False
    return str(app.env.doc2path(pagename)).endswith(".ipynb")


def chapter_links(app, pagename: str) -> str:
    """The HTML of the link bar for one notebook page (relative URLs from that page)."""
    opts = app.config.html_theme_options
    repo = opts["repository_url"].rstrip("/").removeprefix("https://github.com/")
    source = f"{pagename}.ipynb"
    here = posixpath.dirname(pagename)
    links = [(posixpath.relpath(f"_sources/{source}", here), "Download notebook", "download"),
             (COLAB.format(repo=repo, branch=opts["repository_branch"], path=source),
              "Open in Colab", "colab")]
    stem = posixpath.basename(pagename)
    solution = f"chapters/solutions/{stem}"
    if solution in app.env.all_docs and solution != pagename:
        links.append((posixpath.relpath(solution, here) + ".html", "Solutions", "solutions"))
    items = []
    for href, text, kind in links:
        extra = ' download' if kind == "download" else ''
        items.append(f'<a class="chapter-link chapter-link-{kind}" href="{html.escape(href)}"{extra}>{text}</a>')
    return '<p class="chapter-links">' + " · ".join(items) + "</p>\n"


def _add_links(app, pagename, templatename, context, doctree):
    if doctree is not None and _is_chapter(app, pagename) and "body" in context:
        context["body"] = chapter_links(app, pagename) + context["body"]


def _fix_solution_self_links(app, docname, source):
    """A solutions notebook is the source its student edition is built from, so its "Solutions:"
    line links to solutions/NAME.ipynb relative to chapters/; on its own page that is itself."""
    if docname.startswith("chapters/solutions/"):
        source[0] = source[0].replace("](solutions/", "](")


def setup(app):
    app.connect("source-read", _fix_solution_self_links)
    app.connect("html-page-context", _add_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
