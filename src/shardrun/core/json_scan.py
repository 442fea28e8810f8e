"""The items of a JSON file's top-level array as byte ranges, found streaming.

The file is read a chunk at a time, and json's own decoder (`raw_decode`, in C) reads each item
from the text so far: it follows strings, escapes and nesting, and checks the item is JSON, at C
speed. An item that runs past the text read so far is read again once more text is in; text before
the current item is dropped, so memory holds about a chunk and one item, never the file. Invalid
JSON is a one-line SplitError naming the file and the line.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shardrun.core.errors import SplitError

_NOT_SPACE = re.compile(r"[^ \t\r\n]")
_DECODER = json.JSONDecoder()
NEAR_END = 64  # an error this close to the end of the text read so far may be the cut: read on


def json_items(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[int, int]]:
    """(start, end) byte offsets of each item of the file's top-level array, each checked."""
    with path.open("rb") as f:
        yield from _Scanner(path, f, chunk).items()


class _Scanner:
    def __init__(self, path: Path, f: BinaryIO, chunk: int) -> None:
        self.path, self.f, self.chunk = path, f, chunk
        self.decode = codecs.getincrementaldecoder("utf-8")().decode
        self.text = ""
        self.eof = False
        self.ascii = True  # self.text is ASCII: character offsets are byte offsets
        self.i = 0  # position in self.text
        self.line = 1  # line number at self.text[0]
        # a position in the text whose byte offset in the file is known (moves forward only)
        self.at_char, self.at_byte = 0, 0

    def byte(self, pos: int) -> int:
        """The file offset of self.text[pos] (pos never goes back)."""
        if self.ascii:
            self.at_byte += pos - self.at_char
        else:
            self.at_byte += len(self.text[self.at_char : pos].encode("utf-8"))
        self.at_char = pos
        return self.at_byte

    def fail(self, what: str, pos: int) -> SplitError:
        line = self.line + self.text.count("\n", 0, pos)
        return SplitError(f"{self.path}: not valid JSON: line {line}: {what}")

    def _more(self, keep: int) -> bool:
        """Read on, dropping the text before `keep`; False at the end of the file."""
        if self.eof:
            return False
        self.byte(keep)
        self.line += self.text.count("\n", 0, keep)
        data = self.f.read(max(self.chunk, len(self.text) - keep))
        try:
            more = self.decode(data, final=not data)
        except UnicodeDecodeError as err:
            raise SplitError(f"{self.path}: not UTF-8 text ({err.reason})") from None
        self.eof = not data
        self.text = self.text[keep:] + more
        self.ascii = self.text.isascii()
        self.i -= keep
        self.at_char -= keep
        return bool(data)

    def _skip_space(self) -> str:
        """The next non-space character (not consumed), or '' at the end of the file."""
        while True:
            m = _NOT_SPACE.search(self.text, self.i)
            if m is not None:
                self.i = m.start()
                return m.group()
            self.i = len(self.text)
            if not self._more(self.i):
                return ""

    def items(self) -> Iterator[tuple[int, int]]:
        first = self._skip_space()
        if first != "[":
            if first == "":
                raise self.fail("the file is empty", self.i)
            if first == "\ufeff":
                raise self.fail("Unexpected UTF-8 BOM (save the file without it)", self.i)
            if first in '{"-0123456789tfn':
                raise SplitError(f"{self.path}: the json splitter needs a top-level array")
            raise self.fail("Expecting value", self.i)
        self.i += 1
        expect_item = False  # after '[': an item or ']'; after ',': an item
        while True:
            c = self._skip_space()
            if c == "":
                raise self.fail("Expecting ',' delimiter or ']' (the array is not closed)", self.i)
            if c == "]" and not expect_item:
                self.i += 1
                break
            yield self._item()
            expect_item = False
            c = self._skip_space()
            if c == ",":
                self.i += 1
                expect_item = True
            elif c != "]":
                raise self.fail("Expecting ',' delimiter" if c else "the array is not closed", self.i)
        if self._skip_space() != "":
            raise self.fail("Extra data after the top-level array", self.i)

    def _item(self) -> tuple[int, int]:
        while True:
            start = self.i
            try:
                _, end = _DECODER.raw_decode(self.text, start)
            except json.JSONDecodeError as err:
                cut = err.pos >= len(self.text) - NEAR_END or err.msg.startswith("Unterminated")
                if cut and not self.eof:
                    self._more(start)
                    continue
                raise self.fail(err.msg, err.pos) from None
            # a number may go on in the next chunk ("3.5" of "3.5e+2"): near the end, read on first
            if end > len(self.text) - NEAR_END and not self.eof:
                self._more(start)
                continue
            self.i = end
            return self.byte(start), self.byte(end)
