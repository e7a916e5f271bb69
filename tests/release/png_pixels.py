# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal PNG reader (standard library only: zlib + struct) for the docs screenshot test.

Rule: reads what headless Chromium writes (8-bit RGB or RGBA, not interlaced) exactly, and refuses
everything else with a clear error instead of guessing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import zlib

SIGNATURE = b'\x89PNG\r\n\x1a\n'
CHANNELS = {2: 3, 6: 4}     # colour type -> channels: RGB, RGBA


class PNGError(ValueError):
    """Not a PNG this reader handles."""


class Image(object):
    """Decoded pixels: ``rows[y]`` is a bytearray of ``width * channels`` samples."""

    def __init__(self, width, height, channels, rows):
        self.width = width
        self.height = height
        self.channels = channels
        self.rows = rows

    def luminance(self, x, y):
        """0..255 (ITU-R BT.601 weights) of the pixel at x, y."""
        i = x * self.channels
        r, g, b = self.rows[y][i:i + 3]
        return (299 * r + 587 * g + 114 * b) // 1000

    def region_luminances(self, x0, y0, x1, y1, step=1):
        """Luminances of the pixels in [x0, x1) x [y0, y1), every ``step`` pixels."""
        return [self.luminance(x, y) for y in range(y0, y1, step) for x in range(x0, x1, step)]


def _chunks(data):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack('>I', data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) & 0xffffffff != crc:
            raise PNGError('CRC mismatch in chunk %r' % kind)
        yield kind, body
        pos += 12 + length


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw, width, height, bpp):
    stride = width * bpp
    rows = []
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ftype == 0:
            pass
        elif ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xff
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xff
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xff
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xff
        else:
            raise PNGError('unknown filter type %d in row %d' % (ftype, y))
        rows.append(line)
        prev = line
    return rows


def read_png(path):
    """Decode the PNG at ``path`` into an Image."""
    with open(path, 'rb') as f:
        data = f.read()
    if not data.startswith(SIGNATURE):
        raise PNGError('%s: not a PNG (signature)' % path)
    header = None
    idat = []
    for kind, body in _chunks(data):
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat.append(body)
        elif kind == b'IEND':
            break
    if header is None:
        raise PNGError('%s: no IHDR chunk' % path)
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise PNGError('%s: unsupported PNG (depth %d, colour type %d, interlace %d)'
                       % (path, depth, colour, interlace))
    channels = CHANNELS[colour]
    raw = zlib.decompress(b''.join(idat))
    if len(raw) != height * (1 + width * channels):
        raise PNGError('%s: %d bytes of pixel data, expected %d'
                       % (path, len(raw), height * (1 + width * channels)))
    return Image(width, height, channels, _unfilter(raw, width, height, channels))
