"""``python -m pyro_lgm`` entry point (same as the ``pyro-lgm`` console script)."""

from pyro_lgm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
