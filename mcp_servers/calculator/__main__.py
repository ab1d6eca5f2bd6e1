"""`python -m mcp_servers.calculator [--http --port N]`."""

from mcp_servers.calculator.server import main

main()
