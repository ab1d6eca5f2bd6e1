"""Run MCP Chat with embedded defaults: `python main.py` is `mcpchat serve`."""

import sys

from backend.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
