import sys

from visionmon.cli import main

sys.exit(main())
