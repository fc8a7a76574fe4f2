"""Bare uvicorn + Starlette WebSocket echo: the per-frame cost floor to compare with
(the app lives in raydesk/loadtest/echo.py, which the load test's baseline also runs).

Run: python benchmarks/echo_server.py PORT
"""

from __future__ import annotations

import sys

from raydesk.loadtest.echo import main

if __name__ == "__main__":
    main(int(sys.argv[1]))
