"""A Markdown file rendered for its preview, safely: markdown-it-py with raw HTML off (tags show as
text), then nh3's allow-list as a second wall. Relative images load from the file's own folder;
remote ones are never fetched (they become links), so a file cannot make the browser call out."""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote, urlsplit

import nh3
from markdown_it import MarkdownIt

_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
         "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead",
         "tr", "ul"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}


def render(text: str, bucket_root: str | None, folder: str) -> str:
    """HTML for the Markdown `text`. `bucket_root`: the bucket's URL under /v1/content/ (ending in
    '/'), or None where no other file may be shown (a shared file: images stay their alt text);
    `folder`: the file's folder in it ('' or ending in '/'), where relative images are found."""
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    parser.add_render_rule("image", _image(bucket_root, folder))
    return nh3.clean(parser.render(text), tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


def _image(bucket_root: str, folder: str):
    def rule(renderer, tokens, index, options, env):
        token = tokens[index]
        source, alt = token.attrGet("src") or "", renderer.renderInlineAsText(token.children or [], options, env)
        if urlsplit(source).scheme or source.startswith(("//", "/")):
            # Remote (or elsewhere on this host): not loaded; a link the reader may follow.
            token.tag, token.nesting = "a", 0
            return f'<a href="{_escape(source)}">{_escape(alt or source)} (image not loaded)</a>'
        if bucket_root is None:
            return _escape(alt)
        key = image_key(folder, source)
        if key is None:
            return _escape(alt)  # past the bucket: nothing to show
        return f'<img src="{_escape(bucket_root + quote(key, safe="/"))}" alt="{_escape(alt)}">'
    return rule


def image_key(folder: str, source: str) -> str | None:
    """The key a relative image names from `folder`, or None when it leaves the bucket. Decided on
    what the browser and the server will see, not on the text: percent-escapes decoded (a browser
    resolves "%2e%2e" as "..", the server decodes "%2f" into "/"), backslashes as slashes (a browser
    reads "\\" as "/" in http URLs). The answer is re-encoded whole, so no escape survives to be read
    another way."""
    path = unquote(source.split("#", 1)[0].split("?", 1)[0]).replace("\\", "/")
    if not path or path.startswith("/") or any(ord(character) < 0x20 for character in path):
        return None
    key = posixpath.normpath(folder + path)
    if key in (".", "..") or key.startswith(("../", "/")):
        return None
    return key


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
