"""The demo: the paper in miniature, offline. A ladder of Pythia-like models trained from scratch
on text every Python ships, swept over held-out prose and code, fitted and reported."""

from errorentropy.demo.pipeline import run_demo
from errorentropy.demo.settings import DemoSettings, tiny_settings

__all__ = ["DemoSettings", "run_demo", "tiny_settings"]
