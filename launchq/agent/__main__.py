import sys

from launchq.agent.cli import main

sys.exit(main())
