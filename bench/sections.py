"""Result files with a section per variant, so a rerun rewrites only its own section.

bench/results/capacity_offline.md holds one ``## heading`` section per local model and a
``## Notes`` section written by hand; ``merge_section`` replaces one model's section and keeps
the text before the first heading, the other sections and the notes, in the order they stand.
Layout: one blank line after the text before the first heading, two between sections.
"""

from __future__ import annotations

Section = tuple[str, str]    # (heading without "## ", the section's text from its heading line)


def split(text: str) -> tuple[str, list[Section]]:
    """(the text before the first ``## `` heading, the sections in order)."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            sections.append((line[3:].strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), [(heading, "".join(lines)) for heading, lines in sections]


def join(preamble: str, sections: list[Section]) -> str:
    blocks = [text.rstrip("\n") for _, text in sections]
    head = [preamble.rstrip("\n")] if preamble.strip() else []
    if not blocks:
        return head[0] + "\n" if head else ""
    return "\n\n".join(head + ["\n\n\n".join(blocks)]) + "\n"


def with_notes(text: str, existing: str, notes: str = "Notes") -> str:
    """A fresh report ``text`` followed by the hand-written ``## notes`` section (and whatever
    follows it) of the ``existing`` file, if it has one."""
    marker = f"\n## {notes}"
    kept = existing.split(marker, 1)[1] if marker in existing else ""
    return text + (marker + kept if kept else "")


def merge_section(existing: str, heading: str, body: str, preamble: str = "",
                  before: str = "Notes") -> str:
    """``existing`` with the section ``## heading`` replaced by ``body`` (the text under the
    heading line). A new section goes before the ``## before`` section (or last), and
    ``preamble`` is used only when ``existing`` has no text before its first heading."""
    kept_preamble, sections = split(existing)
    new = (heading, f"## {heading}\n{body}")
    headings = [h for h, _ in sections]
    if heading in headings:
        sections[headings.index(heading)] = new
    elif before in headings:
        sections.insert(headings.index(before), new)
    else:
        sections.append(new)
    return join(kept_preamble if kept_preamble.strip() else preamble, sections)
