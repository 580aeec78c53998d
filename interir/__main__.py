from interir.cli import main

raise SystemExit(main())
