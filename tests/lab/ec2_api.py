"""The lab server's EC2 endpoint: faults, EC2's throttling, the call log, IAM enforcement,
DryRun, and moto behind one lock (moto is not thread-safe: every call into it, and into the
fidelity World, holds LOCK; injected latency, late answers and black holes wait outside it).

The same listener answers STS: a request signed for the service ``sts`` (its credential scope)
is an AssumeRole of one of the roles a test declared (lab.sts decides, with the trust policy,
the external id and the caller's identity policy). IAM enforcement knows the principals: a
node's instance role (the policy set with POST /_lab/iam) and each role session the lab's STS
issued (that role's identity policy)."""

from __future__ import annotations

import io
import logging
import re
import select
import socket
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from . import iam, sts
from .faults import (
    DEFAULT_BLACKHOLE_SECONDS,
    CallLog,
    CallRecord,
    FaultTable,
    ec2_error_body,
    error_message,
)
from .listeners import DropConnection, Handler, LabHTTPServer, StartResponse, WSGIApp
from .throttle import Buckets

LOG = logging.getLogger("lab.server")
LOCK = threading.RLock()
# Calls after which the instances' power states are synchronised before the answer goes out
# (so that "stopped" in DescribeInstances means the node is already cut off).
POWER_ACTIONS = frozenset({"StopInstances", "StartInstances", "TerminateInstances"})
READ_ONLY_PREFIXES = ("Describe", "Get")
_CODE_RE = re.compile(rb"<Code>([^<]+)</Code>")
_CRED_RE = re.compile(r"Credential=([^/,\s]+)/(?:[^/,\s]*/){2}([^/,\s]+)/")


class Ec2Api:
    """EC2 requests (a part of LabServer, which sets these attributes)."""

    moto_app: WSGIApp
    world: Any  # lab.fidelity.World
    faults: FaultTable
    throttle: Buckets
    calls: CallLog
    imds: dict[str, Any]
    wake: threading.Event
    policy: tuple[dict[str, Any], iam.Policy] | None
    roles: dict[str, sts.LabRole]  # declared roles by ARN (guarded by LOCK)
    sessions: dict[str, sts.Session]  # issued role sessions by access key (guarded by LOCK)

    def sync_power(self) -> None:
        raise NotImplementedError  # LabServer's

    def ec2(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        node: str = environ["lab.node"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "?")
        cred = _CRED_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = cred.group(2) if cred else "ec2"
        record = CallRecord(
            time=time.time(),
            node=node,
            service="sts" if service == "sts" else "ec2",
            action=action,
            access_key=cred.group(1) if cred else None,
        )
        if service == "sts":
            return self.sts_request(environ, params, record, start_response)
        bypass = node == "host" and environ.get("HTTP_X_LAB_BYPASS") == "1"
        decision = self.faults.decide(action, node) if not bypass else None
        if decision is not None and decision.latency:
            record.fault = "latency"
            time.sleep(decision.latency)
        fault = decision.fault if decision is not None else None
        if fault is not None:
            record.fault = fault.kind
            self.calls.add(record)
            if fault.kind in ("throttle", "error"):
                code = fault.code or "InternalError"
                record.status, record.error_code = fault.status, code
                return self.xml_error(
                    start_response, fault.status or 500, code, error_message(code)
                )
            if fault.kind == "blackhole":
                self.hold(environ, fault.delay or DEFAULT_BLACKHOLE_SECONDS)
            self.drop(environ)
        if not bypass and not self.throttle.take(action, params):
            # EC2's own throttling (lab.throttle): 503 RequestLimitExceeded, no token taken.
            record.fault, record.status, record.error_code = "bucket", 503, "RequestLimitExceeded"
            self.calls.add(record)
            return self.xml_error(
                start_response, 503, "RequestLimitExceeded", error_message("RequestLimitExceeded")
            )
        status, headers, chunks = self.call_moto(action, params, environ, record.access_key)
        if status < 300 and action in POWER_ACTIONS:
            self.sync_power()
        if not action.startswith(READ_ONLY_PREFIXES):
            self.wake.set()  # the ticker follows the change now, not at its next beat
        if decision is not None and decision.late:
            record.fault = "late"  # carried out; the answer waits (outside the lock)
            time.sleep(decision.late)
        record.status = status
        if status >= 400:
            match = _CODE_RE.search(b"".join(chunks))
            record.error_code = match.group(1).decode() if match else None
        self.calls.add(record)
        start_response(f"{status} {_reason(status)}", headers)
        return chunks

    def call_moto(
        self,
        action: str,
        params: dict[str, str],
        environ: dict[str, Any],
        access_key: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        with LOCK:
            try:
                # IAM first: a denied DryRun gets UnauthorizedOperation, as on EC2.
                denied = self.authorize(action, params, access_key)
                if denied is not None:
                    return 403, _xml_headers(), [ec2_error_body("UnauthorizedOperation", denied)]
                if params.get("DryRun", "").lower() == "true":
                    err = self.world.dry_run(action, params)
                    code = 412 if err.code == "DryRunOperation" else 400
                    return code, _xml_headers(), [ec2_error_body(err.code, err.message)]
                result = self.moto_app(environ, capture)
                try:
                    chunks.extend(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except Exception as err:
                LOG.error("moto failed on %s: %s", action, traceback.format_exc())
                return 500, _xml_headers(), [ec2_error_body("InternalError", f"lab: {err}")]
        status = int(str(captured.get("status", "500")).split()[0])
        headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
        return status, headers, chunks

    def authorize(self, action: str, params: dict[str, str], access_key: str | None) -> str | None:
        """The UnauthorizedOperation message for a denied request, None to go on (holds LOCK).

        Requests signed with a node's instance role credentials are evaluated against the
        policy set with POST /_lab/iam; those signed with a role session of the lab's STS
        against that role's identity policy, with the resources in the role's account (a shared
        VPC's route tables are the owner's, where the routing role is). The test client
        (`lab.ec2()`), fence_aws and anything else with other keys are not evaluated.
        """
        if access_key is None:
            return None
        session = self.sessions.get(access_key)
        policy: iam.Policy | None
        if session is not None:  # a role session of the lab's STS: that role's policy
            policy, principal = session.role.policy, session.arn
        else:
            caller = next(
                (m for m in self.imds.values() if m.credentials["AccessKeyId"] == access_key), None
            )
            if caller is None:
                return None
            policy = self.policy[1] if self.policy is not None else None
            principal = iam.assumed_role_arn(caller.account_id, caller.role, caller.instance_id)
        if policy is None:
            return None
        try:
            resources = iam.request_resources(
                action,
                params,
                self.world.backend,
                region=self.world.region,
                account=session.role.account if session is not None else self.world.account_id,
            )
        except iam.Unresolvable:
            return None  # EC2 answers with its NotFound error (moto / World.dry_run do)
        except iam.UnknownAction as err:
            LOG.error("%s", err)
            return f"You are not authorized to perform this operation. {err}"
        decision = iam.evaluate(policy, f"ec2:{action}", resources)
        return None if decision.allowed else iam.denial_message(decision, principal)

    # ---- STS ---------------------------------------------------------------------------------

    def sts_request(
        self,
        environ: dict[str, Any],
        params: dict[str, str],
        record: CallRecord,
        start_response: StartResponse,
    ) -> list[bytes]:
        """An STS request: faults apply (EC2's throttling does not), then lab.sts decides."""
        decision = self.faults.decide(record.action, record.node)
        if decision is not None and decision.latency:
            record.fault = "latency"
            time.sleep(decision.latency)
        fault = decision.fault if decision is not None else None
        if fault is not None and fault.kind in ("throttle", "error"):
            record.fault = fault.kind
            code = fault.code or "InternalError"
            return self.sts_answer(
                start_response, record, fault.status or 500, sts.error_body(code, code)
            )
        if fault is not None:
            record.fault = fault.kind
            self.calls.add(record)
            if fault.kind == "blackhole":
                self.hold(environ, fault.delay or DEFAULT_BLACKHOLE_SECONDS)
            self.drop(environ)
        if record.action != "AssumeRole":
            body = sts.error_body("InvalidAction", "the lab's STS answers AssumeRole only")
            return self.sts_answer(start_response, record, 400, body)
        with LOCK:
            caller = self.sts_caller(record.access_key)
            try:
                session, credentials = sts.assume_role(self.roles, caller, params)
            except sts.StsError as err:
                body = sts.error_body(err.code, err.message)
                return self.sts_answer(start_response, record, err.status, body)
            self.sessions[session.access_key] = session
        return self.sts_answer(
            start_response, record, 200, sts.assume_role_body(session, credentials)
        )

    def sts_answer(
        self, start_response: StartResponse, record: CallRecord, status: int, body: bytes
    ) -> list[bytes]:
        record.status = status
        if status >= 400:
            match = _CODE_RE.search(body)
            record.error_code = match.group(1).decode() if match else None
        self.calls.add(record)
        start_response(f"{status} {_reason(status)}", _xml_headers(len(body)))
        return [body]

    def sts_caller(self, access_key: str | None) -> sts.Caller:
        """Who signed an STS request (holds LOCK): a role session, a node, or the lab's own
        clients (as the lab account's root: no identity policy)."""
        session = self.sessions.get(access_key or "")
        if session is not None:
            return sts.Caller(
                session.role.arn, session.arn, session.role.account, session.role.policy, True
            )
        node = next(
            (m for m in self.imds.values() if m.credentials["AccessKeyId"] == access_key), None
        )
        if node is not None:
            return sts.Caller(
                f"arn:aws:iam::{node.account_id}:role/{node.role}",
                iam.assumed_role_arn(node.account_id, node.role, node.instance_id),
                node.account_id,
                self.policy[1] if self.policy is not None else None,
                False,
            )
        account = self.world.account_id
        root = f"arn:aws:iam::{account}:root"
        return sts.Caller(root, root, account, None, False)

    def set_role(self, data: dict[str, Any]) -> dict[str, Any]:
        role = sts.LabRole.declare(data)  # a PolicyError is a ValueError: 400
        with LOCK:
            self.roles[role.arn] = role
        return {"arn": role.arn}

    def get_roles(self) -> dict[str, Any]:
        with LOCK:
            return {
                "roles": sorted(self.roles),
                "sessions": [s.to_json() for s in self.sessions.values()],
            }

    def forget_roles(self) -> dict[str, Any]:
        """Forget the declared roles and the sessions issued (their keys stop working)."""
        with LOCK:
            self.roles = {}
            self.sessions = {}
        return {"roles": []}

    def set_policy(self, data: dict[str, Any]) -> dict[str, Any]:
        document = data.get("policy")
        policy = iam.Policy.parse(document)  # a PolicyError is a ValueError: 400
        assert isinstance(document, dict)
        with LOCK:
            self.policy = (document, policy)
        return {"enforced": True, "statements": len(policy.statements)}

    def clear_policy(self) -> dict[str, Any]:
        with LOCK:
            self.policy = None
        return {"enforced": False}

    def get_policy(self) -> dict[str, Any]:
        with LOCK:
            enforced = self.policy
        return {"enforced": enforced is not None, "policy": enforced[0] if enforced else None}

    @staticmethod
    def xml_error(
        start_response: StartResponse, status: int, code: str, message: str
    ) -> list[bytes]:
        body = ec2_error_body(code, message)
        start_response(f"{status} {_reason(status)}", _xml_headers(len(body)))
        return [body]

    @staticmethod
    def drop(environ: dict[str, Any]) -> None:
        handler: Handler = environ["lab.handler"]
        handler.close_connection = True
        server: LabHTTPServer = handler.server  # type: ignore[assignment]
        server.mark_reset(environ["werkzeug.socket"])
        raise DropConnection("lab fault: connection reset")

    @staticmethod
    def hold(environ: dict[str, Any], seconds: float) -> None:
        """Keep the request unanswered until the client gives up or `seconds` have passed."""
        conn: socket.socket = environ["werkzeug.socket"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if not readable:
                continue
            try:
                if not conn.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return
            time.sleep(0.05)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _xml_headers(length: int | None = None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "text/xml")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers
