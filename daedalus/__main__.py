from daedalus.cli import main

main()
