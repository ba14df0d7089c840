"""``python -m gcbridge``: the same as the ``gcbridge`` command."""

from gcbridge.cli import main

if __name__ == "__main__":
    main()
