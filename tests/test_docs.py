"""The documentation site (`make docs`): its build checks on a small site, and the real site as a reader meets it, in
headless Chromium over a local server: every page loads without a console error, every link and image inside the site
resolves, search finds `TaskPromptVector`, and three screenshots are kept for a person to look at."""
import functools
import http.server
import json
import re
import shutil
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/"docs"))
import build as docs

SHOTS = ROOT/"build"/"docs_screenshots"  # ignored; kept after the run for a person to look at


def notebook(*markdown):
    "A notebook of Markdown cells."
    cells = [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def small(tmp_path):
    "A repository with a home page and one concept notebook, which builds."
    shutil.copy(ROOT/"settings.ini", tmp_path)
    (tmp_path/"docs").mkdir()
    (tmp_path/"docs"/"nav.yml").write_text("Concepts: [01_a]\n")
    (tmp_path/"nbs").mkdir()
    (tmp_path/"nbs"/"index.ipynb").write_text(notebook("# Home\n\n> The home page.", "See [the concept](01_a.ipynb)."))
    (tmp_path/"nbs"/"01_a.ipynb").write_text(notebook("# A concept\n\n> One idea.", "Some prose."))
    return tmp_path


def build(repo):
    return docs.build(repo, repo/"_site", repo/"build"/"docs")


def test_a_small_site_builds_with_its_menu(small):
    site = build(small)
    home = (site/"index.html").read_text()
    assert "A concept" in home and 'href="01_a.html"' in home


@pytest.mark.parametrize("bad, says", [
    ("See [nothing](02_missing.ipynb).", "02_missing"),
    ("See [a name](#no-such-target).", "no-such-target"),
    ("![a figure](figure_that_is_not_there.png)", "figure_that_is_not_there.png"),
])
def test_the_build_fails_on_a_broken_reference_or_a_missing_image(small, bad, says):
    (small/"nbs"/"01_a.ipynb").write_text(notebook("# A concept", bad))
    with pytest.raises(docs.DocsError, match=re.escape(says)):
        build(small)


def test_the_build_fails_on_a_notebook_not_in_the_navigation(small):
    (small/"nbs"/"02_b.ipynb").write_text(notebook("# Another concept"))
    with pytest.raises(docs.DocsError, match=r"nbs/02_b.ipynb is not in the site's navigation"):
        build(small)
    (small/"docs"/"nav.yml").write_text("Concepts: [01_a, 02_b, 03_gone]\n")
    with pytest.raises(docs.DocsError, match=r"docs/nav.yml lists nbs/03_gone.ipynb, which does not exist"):
        build(small)


def test_a_folder_that_is_not_a_site_is_never_replaced(small):
    keep = small/"_site"
    keep.mkdir()
    (keep/"notes.txt").write_text("mine")
    with pytest.raises(docs.DocsError, match="is not a site `make docs` built"):
        build(small)
    assert (keep/"notes.txt").read_text() == "mine"
    (keep/"notes.txt").unlink()
    build(small)
    build(small)  # its own site is replaced
    assert (keep/".buildinfo").is_file() and not (small/"jupyter_execute").exists()


# ---- the real site, in a browser ----

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The whole site, built from the repository as it is, served on 127.0.0.1."
    out = tmp_path_factory.mktemp("site")
    docs.build(ROOT, out/"_site", out/"work")
    handler = functools.partial(Quiet, directory=str(out/"_site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out/"_site", f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    "Headless Chromium from Debian's packages (`apt-get install chromium chromium-driver`; .ci/run installs them)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(options=opts, service=Service(driver))
    yield b
    b.quit()


def pages(site_dir):
    "Every page of the site, relative to its root."
    skip = ("_sources/", "_static/", "_downloads/", "_images/")
    return sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html") if not p.relative_to(site_dir).as_posix().startswith(skip))


def status(url):
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


LINKS = "return [...document.querySelectorAll('a[href]')].map(a => a.href)"
BROKEN_IMAGES = "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"


def test_every_page_loads_without_errors_and_its_links_and_images_resolve(site, browser):
    site_dir, base = site
    found = pages(site_dir)
    assert {"index.html", "06_vectors.html", "api.html", "experiments/regime.html", "paper_figures/README.html",
            "benchmarks/RESULTS.html", "DATA.html", "search.html"} <= set(found)
    problems, links = [], set()
    for page in found:
        browser.get(base + page)
        problems += [f"{page}: console: {e['message']}" for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        problems += [f"{page}: image did not load: {src}" for src in browser.execute_script(BROKEN_IMAGES)]
        links |= {(page, h) for h in browser.execute_script(LINKS) if h.startswith(base)}
    for page, href in sorted(links):
        url, _, anchor = href.partition("#")
        code, text = status(url)
        if code != 200:
            problems.append(f"{page}: broken link {href} ({code})")
        elif anchor and url.endswith(".html") and f'id="{urllib.parse.unquote(anchor)}"' not in text:
            problems.append(f"{page}: link to a missing anchor {href}")
    assert not problems, "\n".join(problems[:40])


VERDICTS = """const t = [...document.querySelectorAll('table')].find(t => t.rows[0].innerText.includes('verdict'));
const i = [...t.rows[0].cells].findIndex(c => c.innerText.trim() === 'verdict');
return [...t.rows].slice(1).map(r => r.cells[i].innerText.trim())"""


def test_the_claims_table_keeps_its_columns(site, browser):
    "A `|` inside a cell (|τ|/|θ₀|) must not split it: the verdict column holds verdicts, row after row."
    _, base = site
    browser.get(base + "paper_figures/README.html")
    got = browser.execute_script(VERDICTS)
    known = {"supported", "not supported", "inconclusive", "underpowered", "untestable here", "holds", "fails",
             "descriptive"}
    assert got and set(got) <= known, sorted(set(got) - known)


def test_search_finds_task_prompt_vector_offline(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    _, base = site
    browser.get(base + "search.html?q=TaskPromptVector")
    hits = WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#search-results li a"))
    hrefs = [h.get_attribute("href") for h in hits]
    assert any("06_vectors.html" in h for h in hrefs), hrefs


def shot(browser, url, path, height):
    "A screenshot of `url`, `height` pixels tall."
    browser.set_window_size(1400, height)
    browser.get(url)
    browser.save_screenshot(str(path))
    return path


def test_screenshots_of_the_home_page_a_concept_and_the_claims_table(site, browser):
    _, base = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    taken = [shot(browser, base + "index.html", SHOTS/"home.png", 1400),
             shot(browser, base + "06_vectors.html", SHOTS/"concept_vectors.png", 2200),
             shot(browser, base + "paper_figures/README.html#the-paper-s-claims-against-this-run", SHOTS/"claims_table.png", 1600)]
    browser.set_window_size(1400, 1000)
    assert all(p.stat().st_size > 20_000 for p in taken), [(p, p.stat().st_size) for p in taken]
