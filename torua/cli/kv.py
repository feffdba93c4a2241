"""`torua kv get|put|delete|ls`, built on `torua.Client`."""

from __future__ import annotations

import sys

from torua.client import Client


async def run_kv(args) -> int:
    async with Client(args.nats_url, timeout=args.timeout) as db:
        if args.kv_command == "get":
            value = await db.get(args.key)
            if value is None:
                print(f"torua kv: {args.key!r} not found", file=sys.stderr)
                return 1
            sys.stdout.buffer.write(value)
            sys.stdout.flush()
        elif args.kv_command == "put":
            value = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
            await db.put(args.key, value, content_type=args.content_type)
        elif args.kv_command == "delete":
            await db.delete(args.key)
        else:
            cursor = None
            remaining = args.limit
            while remaining > 0:
                keys, cursor = await db.list(args.prefix, min(remaining, 1000), cursor)
                for key in keys:
                    print(key)
                remaining -= len(keys)
                if cursor is None:
                    break
    return 0
