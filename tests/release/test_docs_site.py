# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site that antsibull-docs + Sphinx built (scripts/release-checks.sh): every module and
role has its page with every documented option, every internal link resolves (file and anchor),
and the screenshot headless Chromium took of the volume module's page shows the themed page.

Rule: the expectations come from the collection's own sources (plugins/modules, roles/*/meta),
never from a list written here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import glob
import os
import struct

from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import yaml

import png_pixels

PAGES = 'collections/persistent_volumes/docker'


def _modules(repo):
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(repo, 'plugins', 'modules', '*.py'))
                  if not os.path.basename(p).startswith('_'))


def _roles(repo):
    return sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
                  for p in glob.glob(os.path.join(repo, 'roles', '*', 'meta', 'argument_specs.yml')))


def _module_doc(repo, module):
    with open(os.path.join(repo, 'plugins', 'modules', module + '.py')) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value if hasattr(node.value, 'value') else node.value.s)
    raise AssertionError('%s has no DOCUMENTATION' % module)


class _Page(HTMLParser):
    """Collects the ids (anchors), the links and the text of one HTML page."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.ids = set()
        self.links = []
        self.title = ''
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get('id'):
            self.ids.add(attrs['id'])
        if tag == 'a' and attrs.get('name'):
            self.ids.add(attrs['name'])
        for attr in ('href', 'src'):
            if attrs.get(attr) and tag in ('a', 'link', 'script', 'img'):
                self.links.append(attrs[attr])
        if tag == 'title':
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == 'title':
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


_PARSED = {}


def _parse(path):
    if path not in _PARSED:
        page = _Page()
        with open(path, encoding='utf-8') as f:
            page.feed(f.read())
        _PARSED[path] = page
    return _PARSED[path]


def test_every_module_has_a_page_with_every_option(repo, docs_html):
    modules = _modules(repo)
    assert modules, 'no module in plugins/modules'
    for module in modules:
        path = os.path.join(docs_html, PAGES, '%s_module.html' % module)
        assert os.path.isfile(path), 'no page for module %s' % module
        page = _parse(path)
        assert page.title.startswith('persistent_volumes.docker.%s module' % module), page.title
        doc = _module_doc(repo, module)
        missing = [o for o in doc.get('options') or {} if 'parameter-%s' % o not in page.ids]
        assert not missing, '%s page lacks the options %r' % (module, missing)
        for section in ('synopsis', 'parameters', 'examples', 'return-values'):
            assert section in page.ids, '%s page has no %s section' % (module, section)


def test_every_role_has_a_page_with_every_variable(repo, docs_html):
    roles = _roles(repo)
    assert roles, 'no role with meta/argument_specs.yml'
    for role in roles:
        path = os.path.join(docs_html, PAGES, '%s_role.html' % role)
        assert os.path.isfile(path), 'no page for role %s' % role
        page = _parse(path)
        assert page.title.startswith('persistent_volumes.docker.%s role' % role), page.title
        with open(os.path.join(repo, 'roles', role, 'meta', 'argument_specs.yml')) as f:
            specs = yaml.safe_load(f)['argument_specs']
        for entry, spec in specs.items():
            missing = [o for o in spec.get('options') or {} if 'parameter-%s--%s' % (entry, o) not in page.ids]
            assert not missing, '%s role page lacks the %s variables %r' % (role, entry, missing)


def test_collection_index_links_every_page(repo, docs_html):
    index = _parse(os.path.join(docs_html, PAGES, 'index.html'))
    targets = set(urlsplit(link).path for link in index.links)
    wanted = ['%s_module.html' % m for m in _modules(repo)] + ['%s_role.html' % r for r in _roles(repo)]
    missing = [w for w in wanted if w not in targets]
    assert not missing, 'the collection index does not link %r' % missing


def test_internal_links_resolve(docs_html):
    """Every relative href/src of every page points to a file of the site, and to an anchor that
    exists on that page (Sphinx -n -W checks references; this checks the HTML as written)."""
    pages = sorted(glob.glob(os.path.join(docs_html, '**', '*.html'), recursive=True))
    assert len(pages) >= 10, pages
    broken = []
    checked = 0
    for path in pages:
        for link in _parse(path).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith('//'):
                continue            # external (the theme's top bar, docs.ansible.com): not ours to check
            checked += 1
            target = path
            if parts.path:
                target = os.path.normpath(os.path.join(os.path.dirname(path), unquote(parts.path)))
                if os.path.isdir(target):
                    target = os.path.join(target, 'index.html')
            if not os.path.exists(target):
                broken.append('%s: %s (no file)' % (os.path.relpath(path, docs_html), link))
                continue
            if parts.fragment and target.endswith('.html'):
                if unquote(parts.fragment) not in _parse(target).ids:
                    broken.append('%s: %s (no anchor)' % (os.path.relpath(path, docs_html), link))
    assert checked > 100, 'only %d internal links found: is this the built site?' % checked
    assert not broken, '%d broken internal links:\n%s' % (len(broken), '\n'.join(broken[:50]))


def test_screenshot_shows_the_themed_page(screenshot):
    with open(screenshot, 'rb') as f:
        head = f.read(24)
    assert head[:8] == png_pixels.SIGNATURE, 'not a PNG'
    width, height = struct.unpack('>II', head[16:24])
    assert (width, height) == (1280, 800), (width, height)
    assert os.path.getsize(screenshot) > 20000, 'suspiciously small PNG: %d bytes' % os.path.getsize(screenshot)

    img = png_pixels.read_png(screenshot)
    every = img.region_luminances(0, 0, img.width, img.height, step=4)
    mean = sum(every) / float(len(every))
    variance = sum((v - mean) ** 2 for v in every) / len(every)
    assert variance > 1000, 'nearly uniform image (variance %.0f): blank or error page?' % variance

    # the theme's layout: a dark navigation column on the left (below its header) ...
    sidebar = img.region_luminances(0, 600, 300, 800, step=4)
    assert sum(sidebar) / float(len(sidebar)) < 90, 'no dark sidebar: the theme CSS did not load'
    # ... a dark top bar ...
    topbar = img.region_luminances(400, 2, 800, 40, step=4)
    assert sum(topbar) / float(len(topbar)) < 90, 'no dark top bar: the theme CSS did not load'
    # ... and a light content area with text in it
    content = img.region_luminances(352, 140, 1228, 800, step=2)
    assert sum(content) / float(len(content)) > 200, 'content area is not light'
    dark = sum(1 for v in content if v < 110) / float(len(content))
    assert dark > 0.01, 'hardly any text in the content area (%.4f dark pixels)' % dark


def test_png_reader_on_a_known_image(tmp_path):
    """The reader decodes rows written with the five PNG filters to the pixels they encode."""
    import zlib
    width, height = 3, 5
    pixels = [[(10 * x + y, 100 + y, 255 - x) for x in range(width)] for y in range(height)]

    def encode(row, prev, ftype):
        out = bytearray()
        flat = [c for px in row for c in px]
        up = [c for px in prev for c in px] if prev else [0] * len(flat)
        for i, v in enumerate(flat):
            left = flat[i - 3] if i >= 3 else 0
            upleft = up[i - 3] if i >= 3 else 0
            pred = [0, left, up[i], (left + up[i]) >> 1, png_pixels._paeth(left, up[i], upleft)][ftype]
            out.append((v - pred) & 0xff)
        return bytes([ftype]) + bytes(out)

    raw = b''.join(encode(pixels[y], pixels[y - 1] if y else None, y % 5) for y in range(height))

    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff)

    data = (png_pixels.SIGNATURE + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
    path = tmp_path / 'known.png'
    path.write_bytes(data)
    img = png_pixels.read_png(str(path))
    assert (img.width, img.height, img.channels) == (width, height, 3)
    decoded = [[tuple(img.rows[y][3 * x:3 * x + 3]) for x in range(width)] for y in range(height)]
    assert decoded == pixels
