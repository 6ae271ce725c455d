import sys

from nst_lessons.cli import main

sys.exit(main())
