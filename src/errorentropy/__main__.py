"""``python -m errorentropy``: the command line."""

from errorentropy.cli import run

if __name__ == "__main__":  # importing this module (pytest --doctest-modules does) runs nothing
    run()
