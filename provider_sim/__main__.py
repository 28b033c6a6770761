"""`python -m provider_sim`: serve both simulated providers on 127.0.0.1:$SIM_PORT."""

from __future__ import annotations

import sys

import uvicorn

from provider_sim.config import SimConfig, SimConfigError
from provider_sim.server import create_app


def main() -> int:
    try:
        config = SimConfig.from_env()
    except SimConfigError as error:
        print(f"provider_sim: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(config), host="127.0.0.1", port=config.port, log_level="warning",
        access_log=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
