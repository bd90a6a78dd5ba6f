from streamae.cli import main

raise SystemExit(main())
