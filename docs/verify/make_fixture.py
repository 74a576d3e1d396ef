"""Write deliveries signed by ``rest_hooks.security.signature_headers`` as JSON cases.

Other languages' verifiers check them (see ``node/verify.mjs``)::

    .venv/bin/python docs/verify/make_fixture.py > /tmp/cases.json
    node docs/verify/node/verify.mjs /tmp/cases.json

Each case names the key to verify with: ``secret`` (``whsec_``, for the Standard
Webhooks libraries) or ``public_key`` (``whpk_``, for an Ed25519 ``v1a`` check). The
keys are throwaway ones made for this run, and the timestamps are the current time,
so verify within five minutes.
"""

from __future__ import annotations

import json
import sys
import time

from rest_hooks.security import (
    generate_secret,
    generate_signing_key,
    public_key_for,
    signature_headers,
)


def main() -> None:
    secret, old_secret, other_secret = generate_secret(), generate_secret(), generate_secret()
    signing_key, other_signing_key = generate_signing_key(), generate_signing_key()
    public_key = public_key_for(signing_key)
    body = json.dumps(
        {"hook": "book.added", "data": {"id": 1, "title": "Caf\u00e9 \u2013 \u201cquoted\u201d"}},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    now = int(time.time())

    def case(
        name: str,
        expect: str,
        signed_with: str | list[str],
        *,
        secret: str | None = None,
        public_key: str | None = None,
        sent_body: str = body,
        timestamp: int = now,
    ) -> dict[str, object]:
        headers = signature_headers(signed_with, "msg_2Ka9", timestamp, body.encode())
        key = {"secret": secret} if secret else {"public_key": public_key}
        return {"name": name, "expect": expect, **key, "body": sent_body, "headers": headers}

    tampered = body.replace("1", "2")
    cases = [
        case("v1 only", "ok", secret, secret=secret),
        case(
            "v1: rotation old, new, + v1a", "ok", [old_secret, secret, signing_key], secret=secret
        ),
        case("v1: v1a entry first", "ok", [signing_key, secret], secret=secret),
        case("v1: tampered body", "reject", secret, secret=secret, sent_body=tampered),
        case("v1: wrong secret", "reject", secret, secret=other_secret),
        case("v1: stale timestamp", "reject", secret, secret=secret, timestamp=now - 600),
        case("v1: v1a only", "reject", signing_key, secret=secret),
        case("v1a only", "ok", signing_key, public_key=public_key),
        case("v1a: beside v1 entries", "ok", [secret, signing_key], public_key=public_key),
        case(
            "v1a: tampered body", "reject", signing_key, public_key=public_key, sent_body=tampered
        ),
        case("v1a: other key", "reject", other_signing_key, public_key=public_key),
        case(
            "v1a: stale timestamp",
            "reject",
            signing_key,
            public_key=public_key,
            timestamp=now - 600,
        ),
        case("v1a: v1 only", "reject", secret, public_key=public_key),
    ]
    json.dump({"cases": cases}, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
