"""Property: any sequence of route edits (move, delete, add, change a key) on a commented file
gives the data those edits mean, every route keeps its own comment directly above it, and the
lines outside the routes never change."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relaybox.config.document import ConfigDocument

from .support.properties import budget

HEAD = "# my relay\n\n[limits]\nmax_recipients = 10  # office\n\n# Routes: first match wins.\n\n"
TAIL_COMMENT = "# end of routes\n"


def route_text(name: str, paragraphs: int) -> str:
    comment = "#\n".join(f"# {name} note {n}\n" for n in range(paragraphs))
    return f'{comment}[[routes]]\ndomains = ["{name}.example"]\ntransport = "hold"\n'


Op = tuple[str, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["move", "delete", "add", "update"]), st.integers(0, 9), st.integers(0, 9)
    ),
    max_size=12,
)


@budget(150)
@given(
    count=st.integers(1, 6),
    paragraphs=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    edits=ops,
)
def test_route_edits_keep_comments_with_their_routes(
    count: int, paragraphs: list[int], edits: list[Op]
) -> None:
    names = [f"r{n}" for n in range(count)]
    text = (
        HEAD + "\n".join(route_text(n, p) for n, p in zip(names, paragraphs, strict=False)) + "\n"
    )
    text += TAIL_COMMENT
    doc = ConfigDocument.from_text(text)
    expected: list[dict[str, Any]] = [
        {"domains": [f"{n}.example"], "transport": "hold"} for n in names
    ]
    comments = dict(zip(names, paragraphs, strict=False))
    added = 0
    for kind, a, b in edits:
        size = len(expected)
        if kind == "add":
            name = f"new{added}"
            added += 1
            values = {"domains": [f"{name}.example"], "transport": "hold"}
            at = a % (size + 1)
            doc.add_route(values, at)
            expected.insert(at, values)
            if size == 0:  # the first route of a file: the default route keeps other mail
                expected.append({"domains": ["*"], "transport": "mx", "tls": "opportunistic"})
            comments[name] = 0
            continue
        if size == 0:
            continue
        if kind == "move":
            doc.move_route(a % size, b % size)
            expected.insert(b % size, expected.pop(a % size))
        elif kind == "delete":
            doc.delete_route(a % size)
            del expected[a % size]
        else:
            doc.update_route(a % size, {"max_connections": b + 1})
            expected[a % size] = {**expected[a % size], "max_connections": b + 1}
    assert doc.routes() == expected
    result = doc.text()
    assert result.startswith(HEAD) or not expected and result.startswith(HEAD.rstrip("\n"))
    assert TAIL_COMMENT in result
    lines = result.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("domains = "):
            name = line.split('"')[1].removesuffix(".example")
            if name == "*":
                continue  # written by add_route, with its own comment
            wanted = comments[name]
            above = lines[number - 1 - wanted - max(wanted - 1, 0) : number - 1]
            assert lines[number - 1] == "[[routes]]"
            assert [text for text in above if text != "#"] == [
                f"# {name} note {n}" for n in range(wanted)
            ]
