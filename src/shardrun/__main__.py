from shardrun.cli import main

raise SystemExit(main())
