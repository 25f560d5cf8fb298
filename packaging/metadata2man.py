#!/usr/bin/python3
"""Turn an OCF resource agent's meta-data into a man(7) page: ``ocf_<provider>_<agent>.7``.

Run at RPM build time (``%build``) on each agent's ``meta-data`` output, so the manual always
describes exactly the parameters and actions the agent declares. Standard library only, Python
>= 3.9, because it runs in the build roots of RHEL 9 and SLES 15.

    metadata2man.py --version 0.1.0 --output ocf_ipfailover_aws-eni.7 aws-eni.xml
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

PACKAGE = "ipfailover-agents"
PROVIDER = "ipfailover"

_EXIT_CODES = (
    ("0", "success (monitor: running)"),
    ("1", "generic error, for example an AWS call that failed for a reason other than those below"),
    ("2", "invalid argument: the configuration is wrong on this host only"),
    ("3", "unimplemented action"),
    ("4", "insufficient privileges: the IAM policy lacks a permission the action needs"),
    ("5", "not installed: a required program or Python module is missing"),
    ("6", "not configured: a parameter is missing or invalid; Pacemaker will not start the "
          "resource anywhere until the configuration is fixed"),
    ("7", "not running (monitor only, and only when the agent knows it)"),
)  # fmt: skip


@dataclass(frozen=True)
class Param:
    name: str
    shortdesc: str
    longdesc: str
    type: str
    default: Optional[str]
    required: bool
    unique: bool


@dataclass(frozen=True)
class Action:
    name: str
    attrs: dict[str, str]


@dataclass(frozen=True)
class MetaData:
    name: str
    version: str
    shortdesc: str
    longdesc: str
    params: tuple[Param, ...]
    actions: tuple[Action, ...]


def _text(parent: ET.Element, tag: str) -> str:
    """The English (or first) ``tag`` child's text."""
    found = parent.findall(tag)
    for el in found:
        if el.get("lang", "en") == "en":
            return el.text or ""
    return (found[0].text or "") if found else ""


def parse(xml: str) -> MetaData:
    """Parse meta-data; raise ValueError when it lacks what a manual needs."""
    # Our own agents' output, read at build time: no entity expansion risk worth a dependency.
    root = ET.fromstring(xml)  # noqa: S314
    if root.tag != "resource-agent" or not root.get("name"):
        raise ValueError("not OCF meta-data: no <resource-agent name=...> root")
    params = []
    for p in root.iterfind("parameters/parameter"):
        content = p.find("content")
        params.append(
            Param(
                name=p.get("name", ""),
                shortdesc=_text(p, "shortdesc"),
                longdesc=_text(p, "longdesc"),
                type=content.get("type", "string") if content is not None else "string",
                default=content.get("default") if content is not None else None,
                required=p.get("required") in ("1", "true"),
                unique=p.get("unique") in ("1", "true"),
            )
        )
    if not params or any(not p.name for p in params):
        raise ValueError("meta-data declares no parameters, or one without a name")
    actions = tuple(
        Action(a.get("name", ""), {k: v for k, v in a.attrib.items() if k != "name"})
        for a in root.iterfind("actions/action")
    )
    return MetaData(
        name=root.get("name", ""),
        version=root.get("version", ""),
        shortdesc=_text(root, "shortdesc"),
        longdesc=_text(root, "longdesc"),
        params=tuple(params),
        actions=actions,
    )


def escape(text: str) -> str:
    """Text as roff input: backslashes, minus signs and non-ASCII characters escaped."""
    out = []
    for ch in text.replace("\\", "\\e").replace("-", "\\-"):
        out.append(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]")
    return "".join(out)


def _line(text: str) -> str:
    """One input line; a leading . or ' would be read as a request: guard it."""
    text = text.strip()
    return "\\&" + text if text.startswith((".", "'")) else text


def paragraphs(text: str) -> list[list[str]]:
    """Paragraphs (split at blank lines) as lists of roff lines, leading blanks removed."""
    result = []
    for para in re.split(r"\n[ \t]*\n", text.strip()):
        lines = [_line(escape(line)) for line in para.splitlines() if line.strip()]
        if lines:
            result.append(lines)
    return result


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quoted(text: str) -> str:
    """A macro argument in double quotes."""
    return '"' + escape(text).replace('"', "\\(dq") + '"'


def _example_value(p: Param) -> str:
    return p.default if p.default is not None else p.type


def _op_args(action: Action) -> str:
    interval = action.attrs.get("interval", "0s")
    return f"timeout={action.attrs.get('timeout', '20s')} interval={interval}"


def _crm_example(md: MetaData, resource: str) -> list[str]:
    lines = [f"primitive p_{md.name} {resource} \\", "    params \\"]
    lines += [f"        {p.name}={_example_value(p)} \\" for p in md.params if p.required]
    ops = [a for a in md.actions if a.name in ("start", "stop", "monitor", "promote", "demote")]
    lines += [f"    op {a.name} {_op_args(a)} \\" for a in ops]
    lines[-1] = lines[-1].removesuffix(" \\")
    return lines


def _pcs_example(md: MetaData, resource: str) -> list[str]:
    lines = [f"pcs resource create p_{md.name} {resource} \\"]
    lines += [f"    {p.name}={_example_value(p)} \\" for p in md.params if p.required]
    ops = [a for a in md.actions if a.name in ("start", "stop", "monitor", "promote", "demote")]
    lines += [f"    op {a.name} {_op_args(a)} \\" for a in ops]
    lines[-1] = lines[-1].removesuffix(" \\")
    return lines


class _Page:
    """A man page under construction: one method per section, roff lines in ``out``."""

    def __init__(self, md: MetaData, provider: str, docdir: str) -> None:
        self.md = md
        self.provider = provider
        self.docdir = docdir
        self.page = f"ocf_{provider}_{md.name}"
        self.resource = f"ocf:{provider}:{md.name}"
        self.out: list[str] = []

    def section(self, title: str) -> None:
        self.out.append(f".SH {_quoted(title) if ' ' in title else title}")

    def body(self, text: str, sep: str = ".PP") -> None:
        for i, lines in enumerate(paragraphs(text)):
            if i:
                self.out.append(sep)
            self.out.extend(lines)

    def literal(self, lines: Iterable[str]) -> None:
        self.out += [".PP", ".RS 4", ".nf"]
        # No-fill mode keeps leading blanks; \& guards a line against being read as a request.
        self.out.extend("\\&" + escape(line) if line.strip() else "" for line in lines)
        self.out += [".fi", ".RE"]

    def header(self, package: str, version: str, date: str) -> None:
        self.out.append(
            f'.\\" Generated from the meta-data of {self.resource} by packaging/metadata2man.py.'
        )
        self.out.append(
            f".TH {_quoted(self.page.upper())} 7 {_quoted(date)} "
            f"{_quoted(f'{package} {version}')} {_quoted('OCF agents')}"
        )
        self.out += [".nh", ".ad l"]  # no hyphenation, no justification: names stay whole

    def name_synopsis_description(self) -> None:
        md = self.md
        self.section("NAME")
        self.out.append(f"{escape(self.page)} \\- {_line(escape(_one_line(md.shortdesc)))}")
        self.section("SYNOPSIS")
        verbs = " | ".join(escape(a.name) for a in _unique_actions(md.actions))
        self.out.append(f"\\fB{escape(md.name)}\\fR [{verbs}]")
        self.out.append(".PP")
        self.out.append(f"Pacemaker resource agent \\fB{escape(self.resource)}\\fR.")
        self.section("DESCRIPTION")
        self.body(md.longdesc)

    def parameters(self) -> None:
        self.section("SUPPORTED PARAMETERS")
        for p in self.md.params:
            flags = [f for f, on in (("required", p.required), ("unique", p.unique)) if on]
            self.out.append(".TP")
            self.out.append(f"\\fB{escape(p.name)}\\fR ({escape(', '.join([*flags, p.type]))})")
            self.out.append(_line(escape(_one_line(p.shortdesc))) + ("" if p.shortdesc else "\\&"))
            if p.longdesc.strip() and p.longdesc.strip() != p.shortdesc.strip():
                self.out.append(".IP")
                self.body(p.longdesc, ".IP")
            if p.default is not None:
                self.out.append(".IP")
                shown = f"\\fB{escape(p.default)}\\fR" if p.default else "the empty string"
                self.out.append(f"Default: {shown}")

    def actions(self) -> None:
        self.section("SUPPORTED ACTIONS")
        self.out.append(
            "Pacemaker runs the agent with the action as its only argument and the parameters"
        )
        self.out.append("in environment variables \\fBOCF_RESKEY_\\fR\\fIname\\fR.")
        self.out.append("The timeouts and intervals are the agent's recommended minimums.")
        for a in self.md.actions:
            details = ", ".join(f"{k} {v}" for k, v in a.attrs.items()) or "no recommendation"
            self.out += [".TP", f"\\fB{escape(a.name)}\\fR", _line(escape(details))]

    def exit_status(self) -> None:
        self.section("EXIT STATUS")
        self.out.append(
            "The OCF exit codes; with any error the last line the agent writes to standard"
        )
        self.out.append(
            "error is \\fBocf\\-exit\\-reason:\\fR\\fItext\\fR, which \\fBcrm_mon\\fR shows."
        )
        for code, meaning in _EXIT_CODES:
            self.out += [".TP", f"\\fB{code}\\fR", _line(escape(meaning))]

    def examples(self) -> None:
        self.section("EXAMPLE CRM SHELL")
        self.out.append(
            "The required parameters with placeholder values and the recommended operations;"
        )
        self.out.append(
            f"complete configurations are in \\fI{escape(self.docdir)}/crm\\-examples\\fR."
        )
        self.literal(_crm_example(self.md, self.resource))
        self.section("EXAMPLE PCS")
        self.literal(_pcs_example(self.md, self.resource))

    def files_see_also(self) -> None:
        self.section("FILES")
        agent = f"/usr/lib/ocf/resource.d/{self.provider}/{self.md.name}"
        self.out += [".TP", f"\\fI{escape(agent)}\\fR", "The agent."]
        self.out += [".TP", f"\\fI{escape(self.docdir)}/policies/\\fR"]
        self.out.append("IAM policies with the permissions the agents need.")
        self.section("SEE ALSO")
        self.out += [".BR crm (8),", ".BR pcs (8),", ".BR crm_resource (8),", ".BR crm_mon (8)"]


def render(
    md: MetaData,
    *,
    provider: str = PROVIDER,
    package: str = PACKAGE,
    version: str,
    date: str,
    docdir: str,
) -> str:
    """The complete man page."""
    page = _Page(md, provider, docdir)
    page.header(package, version, date)
    page.name_synopsis_description()
    page.parameters()
    page.actions()
    page.exit_status()
    page.examples()
    page.files_see_also()
    return "\n".join(page.out) + "\n"


def _unique_actions(actions: Sequence[Action]) -> list[Action]:
    seen: set[str] = set()
    result = []
    for a in actions:
        if a.name not in seen:
            seen.add(a.name)
            result.append(a)
    return result


def _default_date() -> str:
    """SOURCE_DATE_EPOCH (reproducible builds: rpmbuild sets it from %changelog) or today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        when = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    else:
        when = datetime.datetime.now(tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%d")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("metadata", help="meta-data XML file, or - for standard input")
    parser.add_argument("--version", required=True, help="package version shown in the footer")
    parser.add_argument("--provider", default=PROVIDER)
    parser.add_argument("--package", default=PACKAGE)
    parser.add_argument("--date", default=None, help="YYYY-MM-DD (default: SOURCE_DATE_EPOCH)")
    parser.add_argument("--docdir", default=f"/usr/share/doc/{PACKAGE}")
    parser.add_argument("--output", "-o", default="-", help="output file (default: stdout)")
    args = parser.parse_args(argv)

    if args.metadata == "-":
        xml = sys.stdin.read()
    else:
        with open(args.metadata, encoding="utf-8") as f:
            xml = f.read()
    try:
        md = parse(xml)
    except (ET.ParseError, ValueError) as e:
        print(f"metadata2man: {args.metadata}: {e}", file=sys.stderr)
        return 1
    page = render(
        md,
        provider=args.provider,
        package=args.package,
        version=args.version,
        date=args.date or _default_date(),
        docdir=args.docdir,
    )
    if args.output == "-":
        sys.stdout.write(page)
    else:
        with open(args.output, "w", encoding="ascii") as f:
            f.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
