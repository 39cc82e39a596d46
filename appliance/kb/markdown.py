"""Markdown and plain text -> passages (pure).

Markdown is split along headings (ATX "#" headings, not inside code fences); every passage
carries its heading path ("Delivery > Eilat"). A section longer than ``MAX_CHARS`` is split
along paragraphs, then lines, sentences and words, with ``OVERLAP_CHARS`` of overlap. Plain
text gets the same paragraph packing; its locator is the line range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .passage import MAX_CHARS, OVERLAP_CHARS, TARGET_CHARS, Passage

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass
class _Block:
    """A paragraph (lines without a blank line between them) and where it sits in the file."""

    text: str
    line_start: int
    line_end: int


def split_markdown(text: str, stem: str) -> list[Passage]:
    lines = text.split("\n")
    start = _skip_front_matter(lines)
    path: list[tuple[int, str]] = []           # (level, heading)
    section: list[tuple[int, str]] = []        # (line number, text) of the current section
    heading = None
    passages: list[Passage] = []
    in_fence = False

    def flush() -> None:
        blocks = _blocks(section)
        title = heading if heading else stem
        for chunk in _pack(blocks):
            passages.append(Passage(
                ordinal=len(passages), title=title, text=chunk.text,
                locator=heading or f"lines {chunk.line_start}-{chunk.line_end}",
                line_start=chunk.line_start, line_end=chunk.line_end, heading=heading))

    for number, raw in enumerate(lines[start:], start + 1):
        if _FENCE.match(raw):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(raw)
        if match:
            flush()
            section = []
            level, name = len(match.group(1)), _plain(match.group(2))
            path = [(lv, h) for lv, h in path if lv < level] + [(level, name)]
            heading = " > ".join(h for _, h in path if h)
            continue
        section.append((number, raw))
    flush()
    return passages


def split_text(text: str, stem: str) -> list[Passage]:
    numbered = list(enumerate(text.split("\n"), 1))
    return [Passage(ordinal=i, title=stem, text=chunk.text,
                    locator=f"lines {chunk.line_start}-{chunk.line_end}",
                    line_start=chunk.line_start, line_end=chunk.line_end)
            for i, chunk in enumerate(_pack(_blocks(numbered)))]


def _skip_front_matter(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for i, line in enumerate(lines[1:], 1):
            if line.strip() in ("---", "..."):
                return i + 1
    return 0


def _plain(heading: str) -> str:
    return re.sub(r"[*_`]+", "", heading).strip()


def _blocks(lines: list[tuple[int, str]]) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[tuple[int, str]] = []
    for number, line in lines + [(0, "")]:
        if line.strip():
            current.append((number, line.rstrip()))
        elif current:
            blocks.append(_Block("\n".join(t for _, t in current), current[0][0], current[-1][0]))
            current = []
    return blocks


def _pack(blocks: list[_Block]) -> list[_Block]:
    """Group paragraphs into passages of about TARGET_CHARS, never over MAX_CHARS.

    Paragraphs that fit are packed whole. When a passage is closed because the next paragraph
    does not fit, the next passage starts with the closing passage's last OVERLAP_CHARS (cut at
    a sentence or word boundary), so a fact spanning the cut is found from either side.
    """
    pieces: list[_Block] = []
    for block in blocks:
        pieces.extend(_split_block(block))
    out: list[_Block] = []
    current: _Block | None = None
    for piece in pieces:
        if current is None:
            current = piece
            continue
        joined = len(current.text) + 2 + len(piece.text)
        if joined <= TARGET_CHARS:
            current = _Block(f"{current.text}\n\n{piece.text}", current.line_start,
                             piece.line_end)
            continue
        out.append(current)
        overlap = _tail(current.text, OVERLAP_CHARS)
        if overlap and len(overlap) + 2 + len(piece.text) <= MAX_CHARS:
            current = _Block(f"{overlap}\n\n{piece.text}", current.line_end, piece.line_end)
        else:
            current = piece
    if current is not None:
        out.append(current)
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+")


def _split_block(block: _Block) -> list[_Block]:
    """A paragraph longer than MAX_CHARS: split at lines, then sentences, then words."""
    if len(block.text) <= MAX_CHARS:
        return [block]
    parts: list[tuple[int, str]] = []
    for offset, line in enumerate(block.text.split("\n")):
        number = block.line_start + offset
        if len(line) <= MAX_CHARS:
            parts.append((number, line))
            continue
        for sentence in _SENTENCE_END.split(line):
            if len(sentence) <= MAX_CHARS:
                parts.append((number, sentence))
            else:
                parts.extend((number, w) for w in _hard_wrap(sentence, TARGET_CHARS))
    out: list[_Block] = []
    text, first, last = "", parts[0][0], parts[0][0]
    for number, part in parts:
        sep = "\n" if number != last else " "
        if text and len(text) + 1 + len(part) > TARGET_CHARS:
            out.append(_Block(text, first, last))
            text, first = _tail(text, OVERLAP_CHARS), number
            text = f"{text} {part}" if text and len(text) + 1 + len(part) <= MAX_CHARS else part
        else:
            text = f"{text}{sep}{part}" if text else part
        last = number
    if text:
        out.append(_Block(text, first, last))
    return out


def _hard_wrap(sentence: str, width: int) -> list[str]:
    out, current = [], ""
    for word in sentence.split():
        while len(word) > width:            # a "word" of thousands of characters (base64, ...)
            if current:
                out.append(current)
                current = ""
            out.append(word[:width])
            word = word[width:]
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _tail(text: str, limit: int) -> str:
    """The last sentences of ``text`` that fit in ``limit`` characters (or the last words)."""
    if len(text) <= limit:
        return ""   # the whole passage is shorter than the overlap: repeating it adds nothing
    sentences = _SENTENCE_END.split(text.replace("\n", " "))
    tail = ""
    for sentence in reversed(sentences):
        candidate = f"{sentence} {tail}".strip()
        if len(candidate) > limit:
            break
        tail = candidate
    if not tail:
        words = text[-limit:].split(" ", 1)
        tail = words[1] if len(words) == 2 else words[0]
    return tail.strip()
