from torua.cli.main import main

raise SystemExit(main())
