"""The crm-examples/ files, as users copy them, with their placeholders replaced (pure functions).

A crm example is a list of statements (continuation lines joined, comments dropped). The lab
loads the statements it needs, after replacing each placeholder (an id such as
``rtb-0123456789abcdef0``, ``node1``...) with the lab's value: `instantiate` fails when a
placeholder is no longer in the file, so a changed example breaks the test rather than
silently testing something else.

Agents reach the simulated EC2 API through their ``endpoint_url`` parameter (DESIGN.md, the
lab): `with_params` adds it to the ipfailover primitives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "crm-examples"


class ExampleError(ValueError):
    """The example does not have what the lab expects (a placeholder or a statement is gone)."""


def statements(text: str) -> list[str]:
    """The crm statements of a file: comments and blank lines dropped, continuations joined."""
    result: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        result.append(current + line)
        current = ""
    if current:
        result.append(current.rstrip())
    return result


def statement_id(statement: str) -> str:
    """`primitive rsc_x ...` -> rsc_x; `property cib-bootstrap-options: ...` -> property."""
    words = statement.split()
    if words[0] in ("property", "rsc_defaults", "op_defaults"):
        return words[0]
    return words[1].rstrip(":")


def instantiate(
    name: str,
    replacements: Mapping[str, str],
    *,
    only: Sequence[str] | None = None,
    examples: Path = EXAMPLES,
) -> str:
    """The crm text of example `name`, placeholders replaced, limited to the statements whose
    ids are in `only` (all when None), one statement per line."""
    text = (examples / name).read_text()
    for placeholder in replacements:
        if placeholder not in text:
            raise ExampleError(f"{name}: the placeholder {placeholder!r} is not in the example")
    chosen = statements(text)
    if only is not None:
        ids = [statement_id(s) for s in chosen]
        missing = [wanted for wanted in only if wanted not in ids]
        if missing:
            raise ExampleError(f"{name}: no statement {', '.join(missing)}")
        chosen = [s for s in chosen if statement_id(s) in only]
    out = "\n".join(chosen) + "\n"
    # longest first, so a placeholder that contains another is replaced whole
    for placeholder in sorted(replacements, key=len, reverse=True):
        out = out.replace(placeholder, replacements[placeholder])
    return out


def with_params(crm: str, extra: Mapping[str, str]) -> str:
    """Add `extra` parameters to every ocf:ipfailover primitive (right after `params`)."""
    added = " ".join(f"{key}={value}" for key, value in extra.items())
    lines = []
    for line in crm.splitlines():
        if line.startswith("primitive ") and " ocf:ipfailover:" in line:
            changed, count = re.subn(r"\bparams ", f"params {added} ", line, count=1)
            if count != 1:
                raise ExampleError(f"no params in {line!r}")
            lines.append(changed)
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"
