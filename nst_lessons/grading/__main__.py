"""``python -m nst_lessons.grading {grade,release} ...``: the two subcommands on their own."""

import argparse
import sys

from nst_lessons.grading.cli import add_grade_parser, add_release_parser

parser = argparse.ArgumentParser(prog="python -m nst_lessons.grading", description="Autograded exercises.")
subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
add_grade_parser(subparsers)
add_release_parser(subparsers)
args = parser.parse_args()
sys.exit(args.func(args))
