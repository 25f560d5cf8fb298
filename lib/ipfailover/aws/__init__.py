"""The AWS side: the botocore client and its boundary, EC2 calls, retries, the trimmed model,
the metadata service (IMDS) and the facts it gives about this EC2 instance, partitions.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Packages botocore imports when they are installed though no client of ours uses them, and
# what they cost each action that imports botocore (Debian 12's python3, issue 16):
# - pyOpenSSL, through urllib3.contrib.pyopenssl, with cryptography: ~0.1 s of CPU. botocore
#   takes only ``orig_util_SSLContext`` from it, the standard library's SSLContext, which its
#   fallback (urllib3.util.ssl_) gives as well; nothing in an agent injects pyOpenSSL.
# - awscrt (a python3-awscrt the AWS CLI pulls in): its native library, ~0.1 s. botocore then
#   signs SigV4 with it instead of with its own Python signer: the same signatures. The one
#   use that needs it is a profile with ``login_session`` (``aws login``, botocore 1.41 and
#   later): then awscrt is imported as usual.
_UNUSED = ("urllib3.contrib.pyopenssl",)
_UNUSED_UNLESS_LOGIN = ("awscrt",)


def skip_unused_imports(environ: Mapping[str, str]) -> None:
    """Mark the packages above absent in this process (their import then fails, which botocore
    expects), before its first botocore import; a package already imported stays."""
    names = _UNUSED if _login_session_configured(environ) else _UNUSED + _UNUSED_UNLESS_LOGIN
    for name in names:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _login_session_configured(environ: Mapping[str, str]) -> bool:
    """Whether the AWS configuration file botocore reads mentions ``login_session``."""
    home = environ.get("HOME") or os.path.expanduser("~")
    path = os.path.expanduser(environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws/config"))
    try:
        with open(path, "rb") as stream:
            return b"login_session" in stream.read(16 << 20)
    except OSError:
        return False  # botocore finds no login profile there either (check_local reports it)
