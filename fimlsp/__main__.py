from fimlsp.cli import main

raise SystemExit(main())
