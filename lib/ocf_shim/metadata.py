"""The meta-data XML, built with ElementTree (imported lazily: only meta-data needs it)."""

from __future__ import annotations

from collections.abc import Sequence

from .spec import ActionSpec, Parameter

OCF_VERSION = "1.1"
_PROLOGUE = '<?xml version="1.0"?>\n<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n'


def render(
    *,
    name: str,
    version: str,
    shortdesc: str,
    longdesc: str,
    parameters: Sequence[Parameter],
    actions: Sequence[ActionSpec],
) -> str:
    """Return the meta-data document, ASCII only (other characters become references)."""
    import xml.etree.ElementTree as ET

    def desc(parent: ET.Element, longtext: str, shorttext: str) -> None:
        ET.SubElement(parent, "longdesc", lang="en").text = longtext
        ET.SubElement(parent, "shortdesc", lang="en").text = shorttext

    root = ET.Element("resource-agent", name=name, version=version)
    ET.SubElement(root, "version").text = OCF_VERSION
    desc(root, longdesc, shortdesc)

    params = ET.SubElement(root, "parameters")
    for p in parameters:
        el = ET.SubElement(
            params,
            "parameter",
            name=p.name,
            unique="1" if p.unique else "0",
            required="1" if p.required else "0",
        )
        desc(el, *_descriptions(p))
        content = ET.SubElement(el, "content", type=p.type)
        default = p.default_text()
        if default is not None:
            content.set("default", default)

    acts = ET.SubElement(root, "actions")
    for a in actions:
        el = ET.SubElement(acts, "action", name=a.name, timeout=f"{a.timeout}s")
        if a.interval is not None:
            el.set("interval", f"{a.interval}s")
        if a.depth is not None:
            el.set("depth", str(a.depth))

    ET.indent(root, space="  ")
    data: bytes = ET.tostring(root, encoding="us-ascii")
    body = data.decode("ascii")
    return _PROLOGUE + body + "\n"


DEPRECATED = "Deprecated"


def _descriptions(p: Parameter) -> tuple[str, str]:
    """A parameter's longdesc and shortdesc; a deprecated one says so at the start of both.

    In the descriptions, because that is the one form all three schemas accept: ra-api-1.dtd
    (what ocf-tester checks) allows no ``<deprecated>`` element (OCF 1.1) and no
    ``deprecated``/``obsoletes`` attribute (the pre-1.1 extensions pcs reads), and
    resource-agents' metadata.rng allows neither either.
    """
    if p.deprecated is None:
        return p.longdesc, p.shortdesc
    return (
        f"{DEPRECATED}: {p.deprecated}\n\n{p.longdesc}",
        f"{DEPRECATED}: {p.shortdesc}",
    )
