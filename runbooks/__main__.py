from runbooks.drills import main

raise SystemExit(main())
