"""What a data scientist does in the UI, done in headless Chromium (Debian's package) against a
running ``dagster dev`` and the MLflow UI and report server that ``make ui`` starts beside it.

Each step asserts what the user must see and saves a screenshot in ``test-artifacts/`` (the
README's "Operating the platform" shows three of them)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 60_000
WIDTH = 1600  # the laptop: what is cut at this width, a user does not see


@contextmanager
def browser_page() -> Iterator[Page]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def dismiss_first_visit(page: Page) -> None:
    for label in ("Skip", "Dismiss"):  # the first-visit dialog, when shown
        button = page.get_by_role("button", name=label)
        if button.count():
            button.first.click()


def open_asset(
    page: Page, port: int, key: str, partition: str | None = None, expect: str = ""
) -> None:
    """An asset's page: the latest materialization's metadata (of ``partition``, if given),
    once its row ``expect`` is shown (any row if not given)."""
    url = f"http://127.0.0.1:{port}/assets/{key}"
    if partition is not None:
        url += f"?view=partitions&partition={partition}"
    page.goto(url, wait_until="networkidle", timeout=90_000)
    dismiss_first_visit(page)
    if partition is not None:
        page.get_by_text("Latest materialization").first.wait_for()
    wait_for_row(page, expect)


def wait_for_row(page: Page, key: str) -> Locator:
    """The metadata row ``key``, waited for: the page's first table row may belong to another
    table (the partitions, the checks), and on a busy machine the materialization's metadata
    renders after it. A row that never comes fails with the rows that did, and a screenshot."""
    row = metadata_row(page, key)
    try:
        row.first.wait_for(timeout=TIMEOUT_MS)
    except PlaywrightTimeoutError:
        shot(page, "missing_row.png")
        shown = page.locator("tr td:first-child").all_inner_texts()
        raise AssertionError(f"no row {key!r} on {page.url}; rows shown: {shown}") from None
    return row


def metadata_row(page: Page, key: str) -> Locator:
    """The metadata table's row whose first cell is exactly ``key`` (any row for "")."""
    name = re.compile(f"^\\s*{re.escape(key)}\\s*$") if key else re.compile(".")
    return page.locator("tr").filter(has=page.locator("td:first-child", has_text=name))


def link(page: Page, key: str) -> str:
    """The target of a URL metadata entry: an anchor the user clicks, not text to copy."""
    anchor = wait_for_row(page, key).first.locator("a[href^='http']").first
    href = anchor.get_attribute("href")
    assert href, f"metadata entry {key!r} has no link"
    return href


def show_plot(page: Page, key: str, screenshot: str | None = None) -> None:
    """Open a plot by the name it is listed under and see its image rendered."""
    row = wait_for_row(page, key)
    row.first.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog").filter(has_text=key)
    image = dialog.locator("img[src^='data:image/png']").first
    image.wait_for()
    loaded = image.evaluate("img => img.complete && img.naturalWidth")
    assert loaded and loaded > 200, f"plot {key!r} did not render ({loaded})"
    if screenshot:
        page.wait_for_timeout(600)  # the dialog fades in: a picture of the finished state
        page.screenshot(path=str(ARTIFACTS / screenshot))
    close(page, dialog)


def close(page: Page, dialog: Locator, tries: int = 5) -> None:
    """Close a dialog with Escape, as a user would. An Escape pressed while the dialog is still
    fading in, before it has taken the focus, is ignored by the UI (seen on a busy machine: the
    dialog stayed open for a minute), so it is pressed again until the dialog is gone."""
    for _ in range(tries - 1):
        page.keyboard.press("Escape")
        try:
            dialog.wait_for(state="detached", timeout=5_000)
            return
        except PlaywrightTimeoutError:
            continue
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")  # the last try fails with Playwright's own message


def text_of(page: Page) -> str:
    return page.inner_text("body")


def shot(page: Page, name: str, locator: Locator | None = None) -> Path:
    path = ARTIFACTS / name
    if locator is not None:
        locator.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    return path


def row_text(page: Page, key: str) -> str:
    """The text of metadata row ``key`` (its value), waited for."""
    return wait_for_row(page, key).first.inner_text()


def visible_at_width(page: Page, locator: Locator, what: str) -> None:
    """``locator`` is on screen horizontally at 1600 px: its right edge inside the viewport (a
    table column past it is what the UI cuts off)."""
    element = locator.first
    element.wait_for()
    box = element.bounding_box()
    assert box is not None, f"{what} is not rendered"
    assert box["x"] + box["width"] <= WIDTH, f"{what} is cut at {WIDTH} px: {box}"


# The right edge of an element's text, and the nearest right edge that clips it (an ancestor
# that hides or scrolls its overflow, or the window): a line past it is cut for the user.
_TEXT_AND_CLIP = """element => {
    const range = document.createRange();
    const texts = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    let right = 0;
    while (texts.nextNode()) {
        range.selectNodeContents(texts.currentNode);
        for (const line of range.getClientRects()) right = Math.max(right, line.right);
    }
    let clip = window.innerWidth;
    for (let node = element.parentElement; node; node = node.parentElement) {
        if (getComputedStyle(node).overflowX !== "visible") {
            clip = Math.min(clip, node.getBoundingClientRect().right);
        }
    }
    return [right, clip];
}"""


def text_uncut(page: Page, key: str, what: str) -> str:
    """The value of metadata row ``key``, asserted shown whole at 1600 px: its text ends before
    the edge that clips it (on an asset's Overview tab, the column beside the definition
    panel; a wide table in another row widens the value column past it)."""
    value = wait_for_row(page, key).first.locator("td").last
    right, clip = value.evaluate(_TEXT_AND_CLIP)
    assert right <= clip + 1, (
        f"{what} is cut at {WIDTH} px: text to {right:.0f} px, shown to {clip:.0f}"
    )
    return value.inner_text()


def column_header(page: Page, row_key: str, column: str) -> Locator:
    """The header of column ``column`` of the table shown in metadata row ``row_key`` (the
    element whose whole text is the column's name)."""
    return wait_for_row(page, row_key).first.get_by_text(column, exact=True)
