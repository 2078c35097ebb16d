"""Starts serving at import (no ``if __name__ == "__main__":``): it never finishes."""

import time

time.sleep(120)
