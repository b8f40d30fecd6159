# `pytest book/` alone: the same environment as the full suite (see kafnotes.settings.test_environment).
from kafnotes.settings import test_environment

test_environment()
