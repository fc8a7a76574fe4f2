from raydesk.loadtest.cli import main

main()
