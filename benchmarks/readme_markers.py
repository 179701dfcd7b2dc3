"""Generated README sections: the text between `<!-- NAME -->` and `<!-- /NAME -->`."""

from __future__ import annotations


def has_section(text: str, name: str) -> bool:
    return f"<!-- {name} -->" in text and f"<!-- /{name} -->" in text


def replace_section(text: str, name: str, content: str) -> str:
    """`text` with the lines between the markers of `name` replaced by `content`."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + content + "\n" + end + rest.split(end, 1)[1]
