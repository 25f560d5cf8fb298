"""Meta-data documents rendered at build time, so that ``meta-data`` costs little more than
starting Python.

Rendering meta-data means importing the agent's declaration and building the document with
ElementTree: about two and a half times the cost of a bare Python process.
``python3 -m ipfailover.prebuilt`` (run by ``make`` and by the RPM build) renders each agent's
document once and names the file after a checksum of the library's sources. An agent's
``meta-data`` prints that file only when the checksum of the sources installed next to it is the
same; after any change to them (or without the file) the document is rendered as before: slower,
never stale.

Only ``os`` and ``zlib`` are imported here, on purpose.
"""

from __future__ import annotations

import os
import sys
import zlib

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LIB_DIR = os.path.dirname(PACKAGE_DIR)
PREBUILT_DIR = os.path.join(PACKAGE_DIR, "_metadata")
# The packages whose sources the documents are made from (declarations, shim, renderer).
SOURCE_PACKAGES = ("ipfailover", "ocf_shim")
# agent name -> the module that declares it (its AGENT)
AGENT_MODULES = {
    "aws-overlayip": "ipfailover.overlayip_agent",
    "aws-secip": "ipfailover.secip_agent",
    "aws-eni": "ipfailover.eni_agent",
}


def sources_checksum(lib_dir: str = LIB_DIR) -> str:
    """CRC-32 over the names and contents of every .py file of the two packages, in order."""
    crc = 0
    for package in SOURCE_PACKAGES:
        directory = os.path.join(lib_dir, package)
        for name in sorted(os.listdir(directory)):
            if name.endswith(".py"):
                with open(os.path.join(directory, name), "rb") as source:
                    crc = zlib.crc32(f"{package}/{name}\0".encode(), crc)
                    crc = zlib.crc32(source.read(), crc)
    return f"{crc:08x}"


def path_of(agent: str, checksum: str, directory: str = PREBUILT_DIR) -> str:
    return os.path.join(directory, f"{agent}-{checksum}.xml")


def lookup(agent: str, directory: str = PREBUILT_DIR) -> str | None:
    """The prebuilt document of ``agent`` if it was made from exactly these sources."""
    try:
        with open(path_of(agent, sources_checksum(), directory), encoding="ascii") as document:
            return document.read()
    except (OSError, ValueError):
        return None


def serve_metadata(agent: str) -> None:
    """For an agent's launcher, on meta-data: print the prebuilt document and exit, if there is
    a current one (otherwise return, and the launcher renders it)."""
    text = lookup(agent)
    if text is None:
        return
    sys.stdout.write(text)
    sys.stdout.flush()
    sys.exit(0)


def generate(directory: str = PREBUILT_DIR) -> list[str]:
    """Render every agent's document for the sources as they are now; returns the files written.

    Documents of older sources in ``directory`` are removed.
    """
    import importlib

    os.makedirs(directory, exist_ok=True)
    checksum = sources_checksum()
    written = []
    for agent, module in AGENT_MODULES.items():
        text = importlib.import_module(module).AGENT.metadata_xml()
        path = path_of(agent, checksum, directory)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
    for name in os.listdir(directory):
        if os.path.join(directory, name) not in written:
            os.unlink(os.path.join(directory, name))
    return written


if __name__ == "__main__":
    for written_path in generate(sys.argv[1] if len(sys.argv) > 1 else PREBUILT_DIR):
        print(written_path)
