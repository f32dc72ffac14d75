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

With --pipelining it also advertises PIPELINING (RFC 2920) in its EHLO
reply; aiosmtpd reads commands from a stream, so pipelined batches work.
"""
import argparse
import asyncio
import json
import os
import sys

from aiosmtpd.smtp import SMTP, Envelope


class Recorder:
    def __init__(self, directory, slow):
        self.directory = directory
        self.slow = slow
        self.count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        local = address.split("@")[0].lower()
        if local == "tempfail-mail":
            return "451 4.3.0 Sender temporarily refused"
        if local == "reject-mail":
            return "553 5.7.1 Sender refused by policy"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
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
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        # The .json appears last: a reader that sees it sees a whole message.
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as UP%06d" % self.count


class PipeliningRecorder(Recorder):
    """A Recorder whose EHLO reply offers PIPELINING."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--slow", type=float, default=5.0)
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args()
    kind = PipeliningRecorder if args.pipelining else Recorder
    handler = kind(args.directory, args.slow)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            decode_data=False,
            enable_SMTPUTF8=True,
            data_size_limit=None,
            hostname="upstream.test",
            ident="test upstream",
        ),
        "127.0.0.1",
        0,
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
