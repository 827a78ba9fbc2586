import sys

from athena.cli import main

sys.exit(main())
