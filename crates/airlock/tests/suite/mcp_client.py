"""A real MCP client (the official `mcp` package) for tests/suite/mcp.rs.

Usage: python mcp_client.py SERVER [ARGS...] < calls.json
Starts SERVER over stdio, lists its tools, then makes each call [name, arguments] in order;
"$id" anywhere in the arguments is the id the last sandbox_create returned. Prints one JSON
object: {"tools": [names], "results": [{"is_error", "text", "structured"}]}.
"""
import asyncio, json, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main():
    calls = json.load(sys.stdin)
    server = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:])
    out, sandbox = {"tools": [], "results": []}, "$id"
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=900) as session:
            await session.initialize()
            out["tools"] = [t.name for t in (await session.list_tools()).tools]
            for name, args in calls:
                args = json.loads(json.dumps(args).replace("$id", sandbox))
                r = await session.call_tool(name, args)
                text = "".join(c.text for c in r.content if c.type == "text")
                out["results"].append({"is_error": r.is_error, "text": text, "structured": r.structured_content})
                if name == "sandbox_create" and not r.is_error:
                    sandbox = r.structured_content["id"]
    print(json.dumps(out))


asyncio.run(main())
