"""A real MCP client (the official `mcp` package) for tests/suite/mcp.rs.

Usage: python mcp_client.py SERVER [ARGS...] < calls.json    (spawns SERVER, speaks stdio)
       python mcp_client.py --http URL TOKEN < calls.json     (connects over Streamable HTTP)
Lists the tools, then makes each call [name, arguments] in order; "$id" anywhere in the
arguments is the id the last sandbox_create returned. Prints one JSON object:
{"tools": [names], "results": [{"is_error", "text", "structured"}]}.
"""
import asyncio, json, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def transport():
    if sys.argv[1] == "--http":
        auth = {"Authorization": f"Bearer {sys.argv[3]}"}
        return streamable_http_client(sys.argv[2], http_client=create_mcp_http_client(headers=auth))
    return stdio_client(StdioServerParameters(command=sys.argv[1], args=sys.argv[2:]))


async def main():
    calls = json.load(sys.stdin)
    out, sandbox = {"tools": [], "results": []}, "$id"
    async with transport() as streams:
        async with ClientSession(streams[0], streams[1], read_timeout_seconds=900) as session:
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
