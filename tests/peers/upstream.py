#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) standing in for the organisation's mail
server in bccguard's integration tests.

It listens on 127.0.0.1, port 0, prints "PORT <n>" on stdout, and stores
every accepted transaction in DIR as NNNNNN.json (envelope) and NNNNNN.eml
(the message bytes exactly as received, dot-unstuffed by aiosmtpd).

Failures are chosen by the addresses, so one server serves every test:
  MAIL FROM:<tempfail-mail@...>   -> 451 4.3.0 at MAIL
  MAIL FROM:<reject-mail@...>     -> 553 5.7.1 at MAIL
  RCPT TO:<reject-...@...>        -> 550 5.1.1 at RCPT
  RCPT TO:<tempfail-...@...>      -> 450 4.2.1 at RCPT
  RCPT TO:<data-reject...@...>    -> 554 5.6.0 after the final dot
  RCPT TO:<data-tempfail...@...>  -> 452 4.3.1 after the final dot
  RCPT TO:<data-drop...@...>      -> connection dropped after the final dot
  RCPT TO:<data-slow...@...>      -> final reply delayed by --slow seconds

Restarts and load, for the fault tests and scripts/reconcile:
  --port N          listen on port N instead of 0 (a restarted peer takes
                    over the port of the one it replaces); numbering of
                    stored messages continues after the files already in DIR
  --chaos SEED      fail at random (seeded), independently of the address,
                    at MAIL, RCPT and after the final dot: 4xx, 5xx,
                    "421 and close", a dropped connection, or a delay. A
                    message is stored only when 250 is about to be sent, so
                    "stored" and "answered 250" stay the same set (the
                    reconciliation checks the guard keeps them the same).
  --chaos-rate P    probability of a fault at each of those points (0.05)

TLS and AUTH, for the TLS tests:
  --tls-cert C --tls-key K --starttls   offer (and require) STARTTLS
  --tls-cert C --tls-key K --implicit   TLS from the first byte (RFC 8314)
  --auth USER:PASSWORD                  require AUTH (PLAIN/LOGIN) with these

With --pipelining it also advertises PIPELINING (RFC 2920) in its EHLO
reply; aiosmtpd reads commands from a stream, so pipelined batches work.
"""
import argparse
import asyncio
import glob
import json
import os
import random
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword


class Chaos:
    """Seeded random faults for the reconciliation run (scripts/reconcile).

    Each stage rolls once; a fault is one of: transient refusal, permanent
    refusal, 421 + close, connection dropped without a reply, or a delay
    (after which the stage succeeds)."""

    def __init__(self, seed, rate):
        self.rng = random.Random(seed)
        self.rate = rate

    async def roll(self, server, stage):
        """None to go on, or the reply to send (after closing, if needed)."""
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(["4xx", "5xx", "421", "drop", "delay"])
        if kind == "delay":
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            return None
        if kind == "4xx":
            return "451 4.3.0 chaos: %s temporarily refused" % stage
        if kind == "5xx":
            return "554 5.7.1 chaos: %s refused" % stage
        if kind == "421":
            server.transport.write(b"421 4.3.2 chaos: shutting down\r\n")
        server.transport.abort()
        return CLOSED


# Returned by a handler after the connection was aborted: nothing to send.
CLOSED = object()


class Recorder:
    def __init__(self, directory, slow, implicit=False, chaos=None):
        self.directory = directory
        self.slow = slow
        self.implicit = implicit
        self.chaos = chaos
        # Continue after what a previous peer on this directory stored.
        self.count = len(glob.glob(os.path.join(directory, "*.json")))
        self.logins = {}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.chaos is not None:
            reply = await self.chaos.roll(server, "MAIL")
            if reply is CLOSED:
                return None
            if reply:
                return reply
        local = address.split("@")[0].lower()
        if local == "tempfail-mail":
            return "451 4.3.0 Sender temporarily refused"
        if local == "reject-mail":
            return "553 5.7.1 Sender refused by policy"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.chaos is not None:
            reply = await self.chaos.roll(server, "RCPT")
            if reply is CLOSED:
                return None
            if reply:
                return reply
        local = address.split("@")[0].lower()
        if local.startswith("reject-"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("tempfail-"):
            return "450 4.2.1 <%s>: Mailbox temporarily unavailable" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 2.1.5 Recipient ok"

    async def handle_DATA(self, server, session, envelope):
        locals_ = [r.split("@")[0].lower() for r in envelope.rcpt_tos]
        if any(l.startswith("data-reject") for l in locals_):
            return "554 5.6.0 Message content rejected"
        if any(l.startswith("data-tempfail") for l in locals_):
            return "452 4.3.1 Insufficient system storage"
        if any(l.startswith("data-drop") for l in locals_):
            server.transport.abort()
            return None
        if any(l.startswith("data-slow") for l in locals_):
            await asyncio.sleep(self.slow)
        if self.chaos is not None:
            # After the final dot, before storing: a drop here loses the
            # message upstream, so the guard must not answer 250 for it.
            reply = await self.chaos.roll(server, "end of DATA")
            if reply is CLOSED:
                return None
            if reply:
                return reply
        self.count += 1
        base = os.path.join(self.directory, "%06d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "helo": session.host_name,
            "tls": session.ssl is not None or self.implicit,
            "auth": self.logins.get(id(session)),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        # The .json appears last: a reader that sees it sees a whole message.
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as UP%06d" % self.count


def authenticator_for(handler, expected):
    user, _, password = expected.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if ok:
            handler.logins[id(session)] = user
        return AuthResult(success=ok, handled=False)

    return authenticate


class PipeliningRecorder(Recorder):
    """A Recorder whose EHLO reply offers PIPELINING."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--slow", type=float, default=5.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--implicit", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chaos", type=int)
    parser.add_argument("--chaos-rate", type=float, default=0.05)
    parser.add_argument("--pipelining", action="store_true")
    # Advertise SIZE (RFC 1870) with this limit and enforce it.
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    chaos = Chaos(args.chaos, args.chaos_rate) if args.chaos is not None else None
    kind = PipeliningRecorder if args.pipelining else Recorder
    handler = kind(args.directory, args.slow, implicit=args.implicit, chaos=chaos)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    options = dict(
        decode_data=False,
        enable_SMTPUTF8=True,
        data_size_limit=args.size,
        hostname="upstream.test",
        ident="test upstream",
    )
    if args.starttls:
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        options.update(
            authenticator=authenticator_for(handler, args.auth),
            auth_required=True,
            # With implicit TLS aiosmtpd cannot see the encryption itself.
            auth_require_tls=not args.implicit,
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options),
        "127.0.0.1",
        args.port,
        reuse_address=True,
        ssl=context if args.implicit else None,
    )
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    # Exit when the test process goes away (stdin closes).
    try:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()
    except (OSError, ValueError):
        await asyncio.Event().wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
