"""``CommandHelpFormatter``: ``--help`` of the subcommands keeps their docstring's lines as written.

argparse re-flows a description into one paragraph, which runs the example commands of each
subcommand's docstring together; this keeps them, one per line.
"""

from __future__ import annotations

import argparse

from jsonargparse import DefaultHelpFormatter


class CommandHelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's formatter (types and defaults of each option), with the description kept raw."""
